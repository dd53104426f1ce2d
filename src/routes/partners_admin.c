/* The operator's back office for partners: onboarding a partner with its
 * first Global admin, and changes (PMC migration, level, competencies). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "accounts.h"
#include "mb_events.h"
#include "mb_http.h"

static const char *const locations[] = {"partner_center", "pmc", NULL};
static const char *const levels[] = {"member", "action_pack", "silver", "gold", NULL};
static const char *const competency_levels[] = {"silver", "gold", NULL};

static bool digits(const char *s, int n, int min, int max)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    return v >= min && v <= max;
}

/* RFC 3339 date-time: 2025-01-31T12:00:00(.fff)(Z|+hh:mm). PostgreSQL checks
 * the calendar (February 30th) afterwards. */
static bool is_date_time(const char *s)
{
    size_t n = strlen(s);
    if (n < 20 || n > 35 || !digits(s, 4, 1, 9999) || s[4] != '-' || !digits(s + 5, 2, 1, 12) ||
        s[7] != '-' || !digits(s + 8, 2, 1, 31) || (s[10] != 'T' && s[10] != 't') ||
        !digits(s + 11, 2, 0, 23) || s[13] != ':' || !digits(s + 14, 2, 0, 59) || s[16] != ':' ||
        !digits(s + 17, 2, 0, 60))
        return false;
    const char *p = s + 19;
    if (*p == '.') {
        p++;
        const char *f = p;
        while (*p >= '0' && *p <= '9')
            p++;
        if (p == f || p - f > 9)
            return false;
    }
    if ((*p == 'Z' || *p == 'z') && p[1] == '\0')
        return true;
    return (*p == '+' || *p == '-') && strlen(p) == 6 && digits(p + 1, 2, 0, 23) && p[3] == ':' &&
           digits(p + 4, 2, 0, 59);
}

bool mb_is_date_time(const char *s)
{
    return is_date_time(s);
}

/* competencies: [{area, level, expires_at?}], areas unique. *out receives the
 * array as JSON text for json_to_recordset (free it). */
static bool parse_competencies(const json_t *body, char **out, bool *present, mb_verr *e)
{
    static const char *const known[] = {"area", "level", "expires_at", NULL};
    json_t *v = json_object_get(body, "competencies");
    *out = NULL;
    *present = v != NULL && !json_is_null(v);
    if (!*present) {
        *out = strdup("[]");
        return *out != NULL || mb_accounts_verr(e, "competencies", "could not be read");
    }
    if (!json_is_array(v))
        return mb_accounts_verr(e, "competencies", "must be an array");
    if (json_array_size(v) > 50)
        return mb_accounts_verr(e, "competencies", "must have at most 50 items");
    json_t *norm = json_array();
    size_t i;
    json_t *item;
    json_array_foreach(v, i, item)
    {
        char prefix[48];
        snprintf(prefix, sizeof(prefix), "competencies[%zu]", i);
        const char *area, *level, *expires;
        if (!json_is_object(item)) {
            json_decref(norm);
            return mb_accounts_verr(e, prefix, "must be an object");
        }
        if (!mb_v_known(item, known, e) || !mb_v_str(item, "area", true, 1, 100, &area, e) ||
            !mb_v_enum(item, "level", true, competency_levels, &level, e) ||
            !mb_v_str(item, "expires_at", false, 20, 35, &expires, e)) {
            json_decref(norm);
            return mb_accounts_nested(e, prefix);
        }
        if (expires != NULL && !is_date_time(expires)) {
            json_decref(norm);
            mb_accounts_verr(e, "expires_at", "must be an RFC 3339 date-time");
            return mb_accounts_nested(e, prefix);
        }
        for (size_t k = 0; k < i; k++)
            if (strcmp(json_string_value(json_object_get(json_array_get(norm, k), "area")), area) ==
                0) {
                json_decref(norm);
                mb_accounts_verr(e, "area", "is listed twice");
                return mb_accounts_nested(e, prefix);
            }
        json_array_append_new(norm, json_pack("{s:s, s:s, s:o}", "area", area, "level", level,
                                              "expires_at",
                                              expires ? json_string(expires) : json_null()));
    }
    *out = json_dumps(norm, JSON_COMPACT);
    json_decref(norm);
    return *out != NULL || mb_accounts_verr(e, "competencies", "could not be read");
}

/* roles: an array of distinct partner role names. */

/* --- operator: onboarding and changes ------------------------------------------------------ */

static void partner_onboard(mb_ctx *c)
{
    static const char *const known[] = {
        "mpn_id", "name",         "account_email", "membership_location",
        "level",  "competencies", "co_sell_ready", "global_admin",
        NULL};
    static const char *const ga_known[] = {"email", "display_name", NULL};
    if (!mb_require(c, MB_ACT_OPERATE))
        return;
    json_t *body = mb_body(c, false);
    if (body == NULL)
        return;
    mb_verr ve;
    long long mpn_id = 0;
    const char *name, *email, *location, *level, *ga_email = NULL, *ga_name = NULL;
    bool co_sell = false, cs_present, comp_present;
    char *comps = NULL;
    json_t *ga = json_object_get(body, "global_admin");
    bool ok = mb_v_known(body, known, &ve) &&
              mb_v_int(body, "mpn_id", true, 1, 999999999999LL, &mpn_id, NULL, &ve) &&
              mb_v_str(body, "name", true, 1, 200, &name, &ve) &&
              mb_v_email(body, "account_email", true, &email, &ve) &&
              mb_v_enum(body, "membership_location", true, locations, &location, &ve) &&
              mb_v_enum(body, "level", true, levels, &level, &ve) &&
              parse_competencies(body, &comps, &comp_present, &ve) &&
              mb_v_bool(body, "co_sell_ready", false, &co_sell, &cs_present, &ve);
    if (ok && !json_is_object(ga))
        ok = mb_accounts_verr(&ve, "global_admin", ga ? "must be an object" : "is required");
    if (ok && !(mb_v_known(ga, ga_known, &ve) && mb_v_email(ga, "email", true, &ga_email, &ve) &&
                mb_v_str(ga, "display_name", true, 1, 200, &ga_name, &ve)))
        ok = mb_accounts_nested(&ve, "global_admin");
    if (!ok) {
        free(comps);
        json_decref(body);
        mb_reply_verr(c, &ve);
        return;
    }

    char mpn[24], pid[40] = "", uid[40] = "";
    snprintf(mpn, sizeof(mpn), "%lld", mpn_id);
    const char *p[] = {mpn, name, email, location, level, co_sell ? "true" : "false"};
    PGresult *r = NULL;
    mb_err e = mb_db_exec(&c->db, &r,
                          "INSERT INTO partners (mpn_id, name, account_email, membership_location, "
                          "level, co_sell_ready) VALUES ($1::bigint, $2, $3, $4, $5, $6::boolean) "
                          "RETURNING id",
                          6, p);
    if (e == MB_OK) {
        snprintf(pid, sizeof(pid), "%s", PQgetvalue(r, 0, 0));
        mb_db_clear(&r);
        const char *pc[] = {pid, comps};
        e = mb_db_exec(&c->db, NULL,
                       "INSERT INTO partner_competencies (partner_id, area, level, expires_at) "
                       "SELECT $1::uuid, x.area, x.level, x.expires_at "
                       "FROM json_to_recordset($2::json) AS x (area text, level text, "
                       "expires_at timestamptz)",
                       2, pc);
    }
    if (e == MB_OK) {
        const char *pu[] = {pid, ga_email, ga_name};
        e = mb_db_exec(&c->db, &r,
                       "INSERT INTO users (partner_id, email, display_name, roles) "
                       "VALUES ($1::uuid, $2, $3, '{global_admin}') RETURNING id",
                       3, pu);
        if (e == MB_OK) {
            snprintf(uid, sizeof(uid), "%s", PQgetvalue(r, 0, 0));
            mb_db_clear(&r);
        }
    }
    free(comps);
    if (e == MB_E_CONFLICT && strcmp(c->db.constraint, "partners_mpn_id_key") == 0) {
        mb_reply_problem(c, MB_E_CONFLICT, "A partner with MPN id %lld is already onboarded.",
                         mpn_id);
    } else if (e == MB_E_VALIDATION && strncmp(c->db.sqlstate, "22", 2) == 0) {
        json_decref(body);
        mb_reply_verr(c, &(mb_verr){.field = "competencies",
                                    .message = "holds a date-time that does not exist"});
        return;
    } else if (e != MB_OK) {
        mb_reply_err(c, e);
    } else if (mb_accounts_audit(c, pid, "partner.onboarded", "partner", pid,
                                 json_pack("{s:I, s:s, s:s, s:s, s:s}", "mpn_id",
                                           (json_int_t)mpn_id, "name", name, "membership_location",
                                           location, "level", level, "global_admin_user_id",
                                           uid))) {
        char loc[80];
        snprintf(loc, sizeof(loc), "/v1/partners/%s", pid);
        const char *pd[] = {pid, uid};
        mb_accounts_reply_doc(
            c, 201,
            "SELECT (p.doc::jsonb || jsonb_build_object('global_admin', u.doc::jsonb))::text "
            "FROM partner_docs p, user_docs u WHERE p.id = $1::uuid AND u.id = $2::uuid",
            2, pd, loc);
    }
    json_decref(body);
}

static void partner_update(mb_ctx *c)
{
    static const char *const known[] = {"name",  "account_email", "membership_location",
                                        "level", "competencies",  "co_sell_ready",
                                        NULL};
    if (!mb_require(c, MB_ACT_OPERATE))
        return;
    static const char *const clearable[] = {"competencies", NULL};
    if (!mb_is_uuid(c->param[0])) {
        mb_reply_problem(c, MB_E_NOT_FOUND, "No such partner.");
        return;
    }
    if (!mb_if_match_wellformed(c))
        return;
    json_t *body = mb_body_patch(c, clearable);
    if (body == NULL)
        return;
    mb_verr ve;
    const char *name, *email, *location, *level;
    bool co_sell = false, cs_present = false, comp_present = false;
    char *comps = NULL;
    bool ok = mb_v_known(body, known, &ve) && mb_v_str(body, "name", false, 1, 200, &name, &ve) &&
              mb_v_email(body, "account_email", false, &email, &ve) &&
              mb_v_enum(body, "membership_location", false, locations, &location, &ve) &&
              mb_v_enum(body, "level", false, levels, &level, &ve) &&
              parse_competencies(body, &comps, &comp_present, &ve) &&
              mb_v_bool(body, "co_sell_ready", false, &co_sell, &cs_present, &ve);
    if (ok && !name && !email && !location && !level && !comp_present && !cs_present)
        ok = mb_accounts_verr(&ve, "body", "must change at least one field");
    if (!ok) {
        free(comps);
        json_decref(body);
        mb_reply_verr(c, &ve);
        return;
    }

    /* The row lock serialises changes of the partner with user changes. */
    PGresult *r = NULL;
    mb_err e = mb_db_exec(&c->db, &r,
                          "SELECT membership_location, level FROM partners WHERE id = $1::uuid "
                          "FOR NO KEY UPDATE",
                          1, c->param);
    if (e != MB_OK || PQntuples(r) != 1) {
        mb_db_clear(&r);
        free(comps);
        json_decref(body);
        if (e != MB_OK)
            mb_reply_err(c, e);
        else
            mb_reply_problem(c, MB_E_NOT_FOUND, "No such partner.");
        return;
    }
    char old_location[16], old_level[16];
    snprintf(old_location, sizeof(old_location), "%s", PQgetvalue(r, 0, 0));
    snprintf(old_level, sizeof(old_level), "%s", PQgetvalue(r, 0, 1));
    mb_db_clear(&r);
    /* Safe edits: the partner's row is locked; its document (as GET
     * /v1/partners/{partnerId} answers it) is compared with If-Match now. */
    if (!mb_if_match_doc(c, "SELECT doc FROM partner_docs WHERE id = $1::uuid", 1, c->param,
                         "partner")) {
        free(comps);
        json_decref(body);
        return;
    }
    /* Moving to Partner Center is one way: the data left PMC. */
    if (location && strcmp(location, "pmc") == 0 && strcmp(old_location, "partner_center") == 0) {
        free(comps);
        json_decref(body);
        mb_reply_problem(c, MB_E_CONFLICT,
                         "This partner's membership has moved to Partner Center; it cannot move "
                         "back to PMC.");
        return;
    }

    /* R9: the marketing contact's email must stay different from the
     * account email, whichever of the two changes. */
    if (email != NULL) {
        const char *pm[] = {c->param[0], email};
        e = mb_db_exec(&c->db, &r,
                       "SELECT 1 FROM marketing_contacts WHERE partner_id = $1::uuid "
                       "AND lower(email) = lower($2)",
                       2, pm);
        bool clash = e == MB_OK && PQntuples(r) > 0;
        mb_db_clear(&r);
        if (e != MB_OK || clash) {
            free(comps);
            json_decref(body);
            if (e != MB_OK)
                mb_reply_err(c, e);
            else
                mb_reply_problem(c, MB_E_CONTACT_EMAIL_CONFLICT,
                                 "The account email must differ from the marketing contact's "
                                 "email: change the marketing contact first.");
            return;
        }
    }

    const char *p[] = {c->param[0], name,  email,
                       location,    level, cs_present ? (co_sell ? "true" : "false") : NULL};
    e = mb_db_exec(&c->db, NULL,
                   "UPDATE partners SET name = COALESCE($2, name), "
                   "account_email = COALESCE($3, account_email), "
                   "membership_location = COALESCE($4, membership_location), "
                   "level = COALESCE($5, level), "
                   "co_sell_ready = COALESCE($6::boolean, co_sell_ready), updated_at = now() "
                   "WHERE id = $1::uuid",
                   6, p);
    if (e == MB_OK && comp_present) {
        const char *pc[] = {c->param[0], comps};
        e = mb_db_exec(&c->db, NULL, "DELETE FROM partner_competencies WHERE partner_id = $1::uuid",
                       1, pc);
        if (e == MB_OK)
            e = mb_db_exec(&c->db, NULL,
                           "INSERT INTO partner_competencies (partner_id, area, level, expires_at) "
                           "SELECT $1::uuid, x.area, x.level, x.expires_at "
                           "FROM json_to_recordset($2::json) AS x (area text, level text, "
                           "expires_at timestamptz)",
                           2, pc);
    }
    free(comps);
    if (e == MB_E_VALIDATION && strncmp(c->db.sqlstate, "22", 2) == 0) {
        json_decref(body);
        mb_reply_verr(c, &(mb_verr){.field = "competencies",
                                    .message = "holds a date-time that does not exist"});
        return;
    }
    if (e != MB_OK) {
        json_decref(body);
        mb_reply_err(c, e);
        return;
    }

    /* What changed: the fields sent; from/to of the location and the level. */
    json_t *changed = json_array();
    for (size_t i = 0; known[i] != NULL; i++)
        if (json_object_get(body, known[i]) != NULL &&
            !json_is_null(json_object_get(body, known[i])))
            json_array_append_new(changed, json_string(known[i]));
    json_t *details = json_pack("{s:o}", "changed", changed);
    if (location)
        json_object_set_new(details, "membership_location",
                            json_pack("{s:s, s:s}", "from", old_location, "to", location));
    if (level)
        json_object_set_new(details, "level",
                            json_pack("{s:s, s:s}", "from", old_level, "to", level));
    json_decref(body);
    if (mb_accounts_audit(c, c->param[0], "partner.updated", "partner", c->param[0], details)) {
        mb_accounts_reply_doc(c, 200, "SELECT doc FROM partner_docs WHERE id = $1::uuid", 1,
                              c->param, NULL);
        mb_set_body_etag(c);
    }
}

const mb_route mb_routes_partners_admin[] = {
    {"POST", "/v1/admin/partners", partner_onboard, MB_R_TX | MB_R_BODY},
    {"PATCH", "/v1/admin/partners/:partnerId", partner_update, MB_R_TX | MB_R_BODY},
    {NULL, NULL, NULL, 0},
};
