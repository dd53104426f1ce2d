/* The company marketing contact (R9): one per partner, edited with ETag and
 * If-Match so two admins do not overwrite each other unknowingly. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mb_events.h"
#include "mb_http.h"

static bool contact_gate(mb_ctx *c)
{
    return mb_require(c, MB_ACT_MARKETING) && mb_partner_gate(c, c->param[0], true, NULL);
}

static void reply_contact(mb_ctx *c, PGresult *r)
{
    char etag[32];
    snprintf(etag, sizeof(etag), "\"%s\"", PQgetvalue(r, 0, 1));
    mb_reply_json(c, 200, PQgetvalue(r, 0, 0), (size_t)PQgetlength(r, 0, 0));
    mb_set_header(c, "ETag", etag);
}

static void contact_get(mb_ctx *c)
{
    if (!contact_gate(c))
        return;
    PGresult *r = NULL;
    mb_err e = mb_db_exec(&c->db, &r,
                          "SELECT doc, version FROM marketing_contact_docs "
                          "WHERE partner_id = $1::uuid",
                          1, c->param);
    if (e != MB_OK)
        mb_reply_err(c, e);
    else if (PQntuples(r) != 1)
        mb_reply_problem(c, MB_E_NOT_FOUND,
                         "No marketing contact is set; set one with PUT on this path.");
    else
        reply_contact(c, r);
    mb_db_clear(&r);
}

/* If-Match (RFC 9110 §13.1.1, strong comparison): true when one of the listed
 * entity tags is the current one, or the list is "*" and a contact exists. */
static bool if_match_ok(const char *header, const char *current)
{
    const char *p = header;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (*p == '\0')
            break;
        const char *e = p;
        while (*e && *e != ',')
            e++;
        const char *t = e;
        while (t > p && (t[-1] == ' ' || t[-1] == '\t'))
            t--;
        size_t n = (size_t)(t - p);
        if (current != NULL &&
            ((n == 1 && *p == '*') || (n == strlen(current) && strncmp(p, current, n) == 0)))
            return true;
        p = e;
    }
    return false;
}

static void contact_put(mb_ctx *c)
{
    if (!contact_gate(c))
        return;
    json_t *body = mb_body(c, false);
    if (body == NULL)
        return;
    static const char *const fields[] = {"user_id", "email", "phone", "preferred_language", NULL};
    mb_verr verr;
    const char *user = NULL, *email = NULL, *phone = NULL, *lang = NULL;
    bool ok = mb_v_known(body, fields, &verr) && mb_v_uuid(body, "user_id", true, &user, &verr) &&
              mb_v_email(body, "email", true, &email, &verr) &&
              mb_v_str(body, "phone", true, 1, 32, &phone, &verr) &&
              mb_v_str(body, "preferred_language", true, 1, 35, &lang, &verr);
    if (ok && !mb_is_phone(phone)) {
        snprintf(verr.field, sizeof(verr.field), "phone");
        snprintf(verr.message, sizeof(verr.message),
                 "must be an international (E.164) number such as +14255550100");
        ok = false;
    }
    if (ok && !mb_is_lang_tag(lang)) {
        snprintf(verr.field, sizeof(verr.field), "preferred_language");
        snprintf(verr.message, sizeof(verr.message), "must be a language tag such as en-US");
        ok = false;
    }
    if (!ok) {
        json_decref(body);
        mb_reply_verr(c, &verr);
        return;
    }

    /* The user must be one of the partner's, and the email must not be the
     * partner's Partner Center account email. */
    const char *pc[] = {c->param[0], user, email};
    PGresult *r = NULL;
    mb_err e = mb_db_exec(&c->db, &r,
                          "SELECT EXISTS (SELECT 1 FROM users WHERE id = $2::uuid "
                          "AND partner_id = $1::uuid), lower(account_email) = lower($3) "
                          "FROM partners WHERE id = $1::uuid",
                          3, pc);
    if (e != MB_OK || PQntuples(r) != 1) {
        mb_db_clear(&r);
        json_decref(body);
        mb_reply_err(c, e != MB_OK ? e : MB_E_NOT_FOUND);
        return;
    }
    bool in_partner = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
    bool same_email = strcmp(PQgetvalue(r, 0, 1), "t") == 0;
    mb_db_clear(&r);
    if (!in_partner) {
        json_decref(body);
        mb_reply_problem(c, MB_E_USER_NOT_IN_PARTNER,
                         "The marketing contact must be a user of this partner; add the user in "
                         "Account settings first.");
        return;
    }
    if (same_email) {
        json_decref(body);
        mb_reply_problem(c, MB_E_CONTACT_EMAIL_CONFLICT,
                         "The marketing contact's email must differ from the company's Partner "
                         "Center account email.");
        return;
    }

    /* The row lock makes the If-Match check and the write one step. */
    const char *if_match = mb_header(c, "If-Match");
    if (if_match != NULL) {
        e = mb_db_exec(&c->db, &r,
                       "SELECT version FROM marketing_contacts WHERE partner_id = $1::uuid "
                       "FOR UPDATE",
                       1, c->param);
        if (e != MB_OK) {
            json_decref(body);
            mb_reply_err(c, e);
            return;
        }
        char current[32] = "";
        if (PQntuples(r) == 1)
            snprintf(current, sizeof(current), "\"%s\"", PQgetvalue(r, 0, 0));
        mb_db_clear(&r);
        if (!if_match_ok(if_match, current[0] ? current : NULL)) {
            json_decref(body);
            if (current[0])
                mb_reply_problem(c, MB_E_PRECONDITION_FAILED,
                                 "The marketing contact has changed (current ETag %s); fetch it "
                                 "again and retry with its ETag.",
                                 current);
            else
                mb_reply_problem(c, MB_E_PRECONDITION_FAILED,
                                 "No marketing contact is set; send no If-Match to create one.");
            return;
        }
    }
    const char *pu[] = {c->param[0], user, email, phone, lang};
    e = mb_db_exec(&c->db, &r,
                   "INSERT INTO marketing_contacts (partner_id, user_id, email, phone, "
                   "preferred_language) VALUES ($1::uuid, $2::uuid, $3, $4, $5) "
                   "ON CONFLICT (partner_id) DO UPDATE SET user_id = EXCLUDED.user_id, "
                   "email = EXCLUDED.email, phone = EXCLUDED.phone, "
                   "preferred_language = EXCLUDED.preferred_language, "
                   "version = marketing_contacts.version + 1, updated_at = now() "
                   "RETURNING version",
                   5, pu);
    if (e != MB_OK) {
        json_decref(body);
        mb_reply_err(c, e);
        return;
    }
    char details[96];
    snprintf(details, sizeof(details), "{\"user_id\":\"%s\",\"version\":%s}", user,
             PQgetvalue(r, 0, 0));
    json_decref(body);
    mb_db_clear(&r);
    e = mb_audit(c, c->param[0], "marketing_contact.set", "marketing_contact", c->param[0],
                 details);
    if (e == MB_OK)
        e = mb_event(&c->db, c->param[0], "marketing_contact.updated", "marketing_contact",
                     c->param[0], c->request_id, NULL);
    if (e == MB_OK)
        e = mb_db_exec(&c->db, &r,
                       "SELECT doc, version FROM marketing_contact_docs "
                       "WHERE partner_id = $1::uuid",
                       1, c->param);
    if (e != MB_OK) {
        mb_reply_err(c, e);
        return;
    }
    reply_contact(c, r);
    mb_db_clear(&r);
}

const mb_route mb_routes_marketing[] = {
    {"GET", "/v1/partners/:partnerId/marketing-contact", contact_get, 0},
    {"PUT", "/v1/partners/:partnerId/marketing-contact", contact_put, MB_R_TX | MB_R_BODY},
    {NULL, NULL, NULL, 0},
};
