/* Account settings (users and their roles, R11) and the partner's audit
 * trail. The operator's onboarding and partner changes are in partners_admin.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "accounts.h"
#include "mb_events.h"
#include "mb_http.h"

/* The partner roles in the order they are stored and answered. */
static const unsigned partner_role_bits[] = {MB_ROLE_GLOBAL_ADMIN, MB_ROLE_USER_ADMIN,
                                             MB_ROLE_ADMIN_AGENT, MB_ROLE_MPN_PARTNER_ADMIN};
#define N_PARTNER_ROLES (sizeof(partner_role_bits) / sizeof(partner_role_bits[0]))

bool mb_accounts_verr(mb_verr *e, const char *field, const char *msg)
{
    snprintf(e->field, sizeof(e->field), "%s", field);
    snprintf(e->message, sizeof(e->message), "%s", msg);
    return false;
}

/* Puts prefix in front of the field an mb_v_* check named ("global_admin.email"). */
bool mb_accounts_nested(mb_verr *e, const char *prefix)
{
    char field[2 * sizeof(e->field) + 2];
    snprintf(field, sizeof(field), "%s.%s", prefix, e->field);
    size_t n = strlen(field);
    if (n >= sizeof(e->field))
        n = sizeof(e->field) - 1;
    memcpy(e->field, field, n);
    e->field[n] = '\0';
    return false;
}

static bool parse_roles(const json_t *body, unsigned *bits, bool *present, mb_verr *e)
{
    json_t *v = json_object_get(body, "roles");
    *bits = 0;
    *present = v != NULL && !json_is_null(v);
    if (!*present)
        return true;
    if (!json_is_array(v))
        return mb_accounts_verr(e, "roles", "must be an array");
    size_t i;
    json_t *item;
    json_array_foreach(v, i, item)
    {
        unsigned bit = json_is_string(item) ? mb_role_bit(json_string_value(item)) : 0;
        if (bit == 0 || !(bit & MB_ROLES_PARTNER))
            return mb_accounts_verr(
                e, "roles",
                "must hold only global_admin, user_admin, admin_agent, mpn_partner_admin");
        if (*bits & bit)
            return mb_accounts_verr(e, "roles", "must not list a role twice");
        *bits |= bit;
    }
    return true;
}

/* JSON array text of the roles in bits, in the canonical order. */
static void roles_json(unsigned bits, char *out, size_t outlen)
{
    size_t o = (size_t)snprintf(out, outlen, "[");
    for (size_t i = 0; i < N_PARTNER_ROLES && o < outlen; i++)
        if (bits & partner_role_bits[i])
            o += (size_t)snprintf(out + o, outlen - o, "%s\"%s\"", o > 1 ? "," : "",
                                  mb_role_name(partner_role_bits[i]));
    if (o < outlen)
        snprintf(out + o, outlen - o, "]");
}

static unsigned roles_from_pg(const char *arr)
{
    /* text[] output: {global_admin,user_admin}; partner role names need no quoting */
    unsigned bits = 0;
    for (size_t i = 0; i < N_PARTNER_ROLES; i++) {
        const char *name = mb_role_name(partner_role_bits[i]);
        size_t n = strlen(name);
        for (const char *p = strstr(arr, name); p != NULL; p = strstr(p + 1, name))
            if ((p[-1] == '{' || p[-1] == ',') && (p[n] == '}' || p[n] == ','))
                bits |= partner_role_bits[i];
    }
    return bits;
}

static char *dumps(json_t *doc)
{
    char *s = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    return s;
}

/* Writes the audit event; on failure answers and returns false. */
bool mb_accounts_audit(mb_ctx *c, const char *partner_id, const char *action, const char *type,
                       const char *id, json_t *details)
{
    char *d = dumps(details);
    mb_err e = d ? mb_audit(c, partner_id, action, type, id, d) : MB_E_INTERNAL;
    free(d);
    if (e != MB_OK)
        mb_reply_err(c, e);
    return e == MB_OK;
}

/* Writes the user event of the partner of the URL (extra: see mb_event);
 * on failure answers and returns false. */
static bool event(mb_ctx *c, const char *type, const char *user_id, json_t *extra)
{
    char *x = extra ? dumps(extra) : NULL;
    mb_err e = mb_event(&c->db, c->param[0], type, "user", user_id, c->request_id, x);
    free(x);
    if (e != MB_OK)
        mb_reply_err(c, e);
    return e == MB_OK;
}

void mb_accounts_reply_doc(mb_ctx *c, int status, const char *sql, int n, const char *const *p,
                           const char *location)
{
    if (mb_reply_doc(c, status, sql, n, p, "resource") && location != NULL)
        mb_set_header(c, "Location", location);
}

/* --- users (R11) ------------------------------------------------------------------------------ */

static void users_list(mb_ctx *c)
{
    mb_users_list(c); /* with the filters of issue 14: src/routes/lists.c */
}

static void user_get(mb_ctx *c)
{
    if (mb_require(c, MB_ACT_READ))
        mb_reply_partner_doc(c, false, NULL, MB_PARTNER_DOC_SQL("user_docs"), "user");
}

static const char only_ga_grants[] =
    "Only a Global admin can grant or remove the global_admin role. Ask your Global admin.";

/* Issue 11 (DESIGN §4b): a caller grants or removes only roles it holds
 * itself; a Global admin grants and removes any partner role. changed: the
 * roles granted or removed. Answers 403 and returns false otherwise. */
static bool role_grant_ok(mb_ctx *c, unsigned changed)
{
    unsigned foreign = changed & ~c->who.roles;
    if ((c->who.roles & MB_ROLE_GLOBAL_ADMIN) || foreign == 0)
        return true;
    char names[128];
    roles_json(foreign, names, sizeof(names));
    mb_reply_problem(c, MB_E_FORBIDDEN_ROLE,
                     "You can grant or remove only roles you hold yourself; not %s. Ask your "
                     "Global admin.",
                     names);
    return false;
}

static void user_create(mb_ctx *c)
{
    static const char *const known[] = {"email", "display_name", "roles", NULL};
    if (!mb_require(c, MB_ACT_MANAGE_USERS) || !mb_partner_gate(c, c->param[0], false, NULL))
        return;
    json_t *body = mb_body(c, false);
    if (body == NULL)
        return;
    mb_verr ve;
    const char *email, *name;
    unsigned roles = 0;
    bool roles_present;
    if (!mb_v_known(body, known, &ve) || !mb_v_email(body, "email", true, &email, &ve) ||
        !mb_v_str(body, "display_name", true, 1, 200, &name, &ve) ||
        !parse_roles(body, &roles, &roles_present, &ve)) {
        json_decref(body);
        mb_reply_verr(c, &ve);
        return;
    }
    if ((roles & MB_ROLE_GLOBAL_ADMIN) && !(c->who.roles & MB_ROLE_GLOBAL_ADMIN)) {
        json_decref(body);
        mb_reply_problem(c, MB_E_FORBIDDEN_ROLE, "%s", only_ga_grants);
        return;
    }
    if (!role_grant_ok(c, roles)) {
        json_decref(body);
        return;
    }
    char rj[128];
    roles_json(roles, rj, sizeof(rj));
    const char *p[] = {c->param[0], email, name, rj};
    PGresult *r = NULL;
    mb_err e =
        mb_db_exec(&c->db, &r,
                   "INSERT INTO users (partner_id, email, display_name, roles) "
                   "VALUES ($1::uuid, $2, $3, ARRAY(SELECT json_array_elements_text($4::json))) "
                   "RETURNING id",
                   4, p);
    if (e == MB_E_CONFLICT && strcmp(c->db.constraint, "users_partner_email_uq") == 0) {
        mb_reply_problem(c, MB_E_CONFLICT,
                         "A user with the email %s already exists in this partner's account.",
                         email);
        json_decref(body);
        return;
    }
    if (e != MB_OK) {
        json_decref(body);
        mb_reply_err(c, e);
        return;
    }
    char uid[40];
    snprintf(uid, sizeof(uid), "%s", PQgetvalue(r, 0, 0));
    mb_db_clear(&r);
    json_t *details = json_pack("{s:s, s:o}", "email", email, "roles", json_loads(rj, 0, NULL));
    json_decref(body);
    if (!mb_accounts_audit(c, c->param[0], "user.created", "user", uid, details) ||
        !event(c, "user.created", uid, NULL))
        return;
    char loc[128];
    snprintf(loc, sizeof(loc), "/v1/partners/%s/users/%s", c->param[0], uid);
    const char *pd[] = {uid};
    mb_accounts_reply_doc(c, 201, "SELECT doc FROM user_docs WHERE id = $1::uuid", 1, pd, loc);
}

/* Locks the partner (every change of its users' roles goes through this
 * lock, so two requests cannot each remove one of the last two Global admins)
 * and loads the user. Answers and returns false on failure. */
static bool lock_and_load_user(mb_ctx *c, unsigned *roles, char *email, size_t emaillen)
{
    if (!mb_is_uuid(c->param[1])) {
        mb_reply_problem(c, MB_E_NOT_FOUND, "No such user.");
        return false;
    }
    PGresult *r = NULL;
    mb_err e = mb_db_exec(
        &c->db, NULL, "SELECT 1 FROM partners WHERE id = $1::uuid FOR NO KEY UPDATE", 1, c->param);
    if (e == MB_OK)
        e = mb_db_exec(
            &c->db, &r,
            "SELECT roles, email FROM users WHERE partner_id = $1::uuid AND id = $2::uuid "
            "FOR UPDATE",
            2, c->param);
    if (e != MB_OK) {
        mb_reply_err(c, e);
        return false;
    }
    if (PQntuples(r) != 1) {
        mb_db_clear(&r);
        mb_reply_problem(c, MB_E_NOT_FOUND, "No such user.");
        return false;
    }
    *roles = roles_from_pg(PQgetvalue(r, 0, 0));
    snprintf(email, emaillen, "%s", PQgetvalue(r, 0, 1));
    mb_db_clear(&r);
    return true;
}

/* True when another user of the partner is a Global admin. */
static bool other_global_admin(mb_ctx *c, bool *yes)
{
    PGresult *r = NULL;
    mb_err e = mb_db_exec(&c->db, &r,
                          "SELECT EXISTS (SELECT 1 FROM users WHERE partner_id = $1::uuid "
                          "AND id <> $2::uuid AND 'global_admin' = ANY (roles))",
                          2, c->param);
    if (e != MB_OK) {
        mb_reply_err(c, e);
        return false;
    }
    *yes = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
    mb_db_clear(&r);
    return true;
}

static void user_update(mb_ctx *c)
{
    static const char *const known[] = {"display_name", "roles", NULL};
    static const char *const clearable[] = {"roles", NULL};
    if (!mb_require(c, MB_ACT_MANAGE_USERS) || !mb_partner_gate(c, c->param[0], false, NULL) ||
        !mb_if_match_wellformed(c))
        return;
    json_t *body = mb_body_patch(c, clearable);
    if (body == NULL)
        return;
    mb_verr ve;
    const char *name;
    unsigned roles = 0, old_roles = 0;
    bool roles_present;
    bool ok = mb_v_known(body, known, &ve) &&
              mb_v_str(body, "display_name", false, 1, 200, &name, &ve) &&
              parse_roles(body, &roles, &roles_present, &ve);
    if (ok && name == NULL && !roles_present)
        ok = mb_accounts_verr(&ve, "body", "must change display_name or roles");
    if (!ok) {
        json_decref(body);
        mb_reply_verr(c, &ve);
        return;
    }
    char email[256];
    /* Safe edits: the user's row is locked (lock_and_load_user), then its
     * document compared with If-Match in this transaction. */
    if (!lock_and_load_user(c, &old_roles, email, sizeof(email)) ||
        !mb_if_match_doc(c, "SELECT doc FROM user_docs WHERE id = $1::uuid", 1, c->param + 1,
                         "user")) {
        json_decref(body);
        return;
    }
    bool was_ga = old_roles & MB_ROLE_GLOBAL_ADMIN;
    bool is_ga = roles_present ? (roles & MB_ROLE_GLOBAL_ADMIN) : was_ga;
    if (was_ga != is_ga && !(c->who.roles & MB_ROLE_GLOBAL_ADMIN)) {
        json_decref(body);
        mb_reply_problem(c, MB_E_FORBIDDEN_ROLE, "%s", only_ga_grants);
        return;
    }
    if (roles_present && !role_grant_ok(c, roles ^ old_roles)) {
        json_decref(body);
        return;
    }
    bool others = true;
    if (was_ga && !is_ga && !other_global_admin(c, &others)) {
        json_decref(body);
        return;
    }
    if (!others) {
        json_decref(body);
        mb_reply_problem(c, MB_E_CONFLICT,
                         "This user is the partner's last Global admin: make another user Global "
                         "admin first.");
        return;
    }
    char rj[128], old_rj[128];
    roles_json(roles, rj, sizeof(rj));
    roles_json(old_roles, old_rj, sizeof(old_rj));
    const char *p[] = {c->param[0], c->param[1], name, roles_present ? rj : NULL};
    mb_err e = mb_db_exec(&c->db, NULL,
                          "UPDATE users SET display_name = COALESCE($3, display_name), "
                          "roles = CASE WHEN $4::json IS NULL THEN roles "
                          "ELSE ARRAY(SELECT json_array_elements_text($4::json)) END, "
                          "updated_at = now() WHERE partner_id = $1::uuid AND id = $2::uuid",
                          4, p);
    if (e != MB_OK) {
        json_decref(body);
        mb_reply_err(c, e);
        return;
    }
    json_t *changed = json_array();
    if (name)
        json_array_append_new(changed, json_string("display_name"));
    if (roles_present)
        json_array_append_new(changed, json_string("roles"));
    json_t *details = json_pack("{s:o}", "changed", changed);
    if (roles_present)
        json_object_set_new(details, "roles",
                            json_pack("{s:o, s:o}", "from", json_loads(old_rj, 0, NULL), "to",
                                      json_loads(rj, 0, NULL)));
    json_decref(body);
    if (mb_accounts_audit(c, c->param[0], "user.updated", "user", c->param[1], details) &&
        event(c, "user.updated", c->param[1], NULL)) {
        mb_accounts_reply_doc(c, 200, "SELECT doc FROM user_docs WHERE id = $1::uuid", 1,
                              c->param + 1, NULL);
        mb_set_body_etag(c);
    }
}

static void user_delete(mb_ctx *c)
{
    if (!mb_require(c, MB_ACT_MANAGE_USERS) || !mb_partner_gate(c, c->param[0], false, NULL))
        return;
    unsigned roles = 0;
    char email[256];
    if (!lock_and_load_user(c, &roles, email, sizeof(email)))
        return;
    if (roles & MB_ROLE_GLOBAL_ADMIN) {
        bool others = true;
        if (!(c->who.roles & MB_ROLE_GLOBAL_ADMIN)) {
            mb_reply_problem(c, MB_E_FORBIDDEN_ROLE, "%s", only_ga_grants);
            return;
        }
        if (!other_global_admin(c, &others))
            return;
        if (!others) {
            mb_reply_problem(c, MB_E_CONFLICT,
                             "This user is the partner's last Global admin and cannot be removed: "
                             "make another user Global admin first.");
            return;
        }
    }
    static const char contact_detail[] =
        "This user is the company marketing contact: change the marketing contact first, then "
        "remove the user.";
    PGresult *r = NULL;
    mb_err e = mb_db_exec(&c->db, &r,
                          "SELECT 1 FROM marketing_contacts WHERE partner_id = $1::uuid "
                          "AND user_id = $2::uuid",
                          2, c->param);
    if (e != MB_OK) {
        mb_reply_err(c, e);
        return;
    }
    bool contact = PQntuples(r) > 0;
    mb_db_clear(&r);
    if (contact) {
        mb_reply_problem(c, MB_E_CONFLICT, "%s", contact_detail);
        return;
    }
    /* Release the seats first (the trigger gives them back to their
     * benefits), so the audit event can say which. */
    e = mb_db_exec(&c->db, &r,
                   "WITH s AS (DELETE FROM seat_assignments WHERE user_id = $1::uuid "
                   "RETURNING benefit_id) "
                   "SELECT COALESCE(json_agg(benefit_id ORDER BY benefit_id), '[]')::text FROM s",
                   1, c->param + 1);
    json_t *released = NULL;
    if (e == MB_OK) {
        released = json_loads(PQgetvalue(r, 0, 0), 0, NULL);
        mb_db_clear(&r);
        e = mb_db_exec(&c->db, NULL,
                       "DELETE FROM users WHERE partner_id = $1::uuid AND id = $2::uuid", 2,
                       c->param);
    }
    if (e == MB_E_VALIDATION && strcmp(c->db.constraint, "marketing_contacts_user_id_fkey") == 0) {
        /* made the marketing contact meanwhile */
        json_decref(released);
        mb_reply_problem(c, MB_E_CONFLICT, "%s", contact_detail);
        return;
    }
    if (e != MB_OK) {
        json_decref(released);
        mb_reply_err(c, e);
        return;
    }
    if (mb_accounts_audit(c, c->param[0], "user.deleted", "user", c->param[1],
                          json_pack("{s:s, s:o}", "email", email, "released_seats",
                                    released ? released : json_array())) &&
        event(c, "user.deleted", c->param[1], json_pack("{s:s}", "email", email)))
        mb_reply_empty(c, 204);
}

/* --- audit trail --------------------------------------------------------------------------- */

static void audit_list(mb_ctx *c)
{
    mb_audit_list(c); /* with the filters of issue 14: src/routes/lists.c */
}

const mb_route mb_routes_accounts[] = {
    {"GET", "/v1/partners/:partnerId/users", users_list, 0},
    {"POST", "/v1/partners/:partnerId/users", user_create, MB_R_TX | MB_R_BODY},
    {"GET", "/v1/partners/:partnerId/users/:userId", user_get, 0},
    {"PATCH", "/v1/partners/:partnerId/users/:userId", user_update, MB_R_TX | MB_R_BODY},
    {"DELETE", "/v1/partners/:partnerId/users/:userId", user_delete, MB_R_TX},
    {"GET", "/v1/partners/:partnerId/audit-events", audit_list, 0},
    {NULL, NULL, NULL, 0},
};
