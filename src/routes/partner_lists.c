/* Issue 13, partner reads: the partner's activations (?status=&benefit_id=), its support
 * requests across benefits, and who its Global admins are (the names and emails every
 * employee may see: the seed's "check with your Global admin"). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mb_http.h"
#include "technical.h"

/* Answers 422 naming the query parameter. */
static void bad_query(mb_ctx *c, const char *name, const char *message)
{
    mb_reply_problem_x(c, MB_E_VALIDATION,
                       json_pack("{s:[{s:s,s:s}]}", "errors", "field", name, "message", message),
                       "Query '%s' %s.", name, message);
}

/* --- GET /v1/partners/{p}/activations ------------------------------------------------------ */

static const char *const activation_states[] = {"pending", "active", "rejected", NULL};

static void activations_list(mb_ctx *c)
{
    /* As GET .../activations/{id}: the roles that activate (technical and
     * Go-To-Market alike: GA, PA) and the operator, who reads every partner. */
    bool op = (c->who.roles & MB_ROLE_OPERATOR) != 0;
    if (!op && !mb_roles_allow(c->who.roles, MB_ACT_TECHNICAL) &&
        !mb_roles_allow(c->who.roles, MB_ACT_MARKETING)) {
        mb_reply_problem(c, MB_E_FORBIDDEN_ROLE,
                         "Activations are available to Global admin and MPN partner admin "
                         "only. Ask your Global admin.");
        return;
    }
    const char *status = mb_query(c, "status"), *benefit = mb_query(c, "benefit_id");
    bool known = status == NULL;
    for (size_t i = 0; !known && activation_states[i]; i++)
        known = strcmp(activation_states[i], status) == 0;
    if (!known) {
        bad_query(c, "status", "must be one of: pending, active, rejected");
        return;
    }
    if (benefit != NULL && !mb_is_uuid(benefit)) {
        bad_query(c, "benefit_id", "must be a benefit id (UUID)");
        return;
    }
    int limit;
    char after[64];
    if (!mb_page_args(c, &limit, after, sizeof(after), false))
        return;
    if (benefit != NULL) {
        /* A benefit of another partner (or none) is 404, as its own URL is. */
        if (!mb_partner_gate(c, c->param[0], true, NULL))
            return;
        const char *pb[] = {c->param[0], benefit};
        PGresult *r = NULL;
        mb_err e = mb_db_exec(
            &c->db, &r, "SELECT 1 FROM benefits WHERE id = $2::uuid AND partner_id = $1::uuid", 2,
            pb);
        if (e != MB_OK) {
            mb_reply_err(c, e);
            return;
        }
        bool found = PQntuples(r) == 1;
        mb_db_clear(&r);
        if (!found) {
            mb_reply_problem(c, MB_E_NOT_FOUND, "No such benefit.");
            return;
        }
    }
    const char *p[] = {c->param[0], after[0] ? after : NULL, status, benefit};
    mb_reply_gated_list(c, true, NULL,
                        "SELECT " MB_GATE_COLUMN ", d.doc, d.id::text FROM (SELECT v.doc, v.id "
                        "FROM activation_docs v JOIN activations a ON a.id = v.id "
                        "WHERE a.partner_id = $1::uuid AND ($2::uuid IS NULL OR a.id > $2::uuid) "
                        "AND ($3::text IS NULL OR a.status = $3) "
                        "AND ($4::uuid IS NULL OR a.benefit_id = $4::uuid) "
                        "ORDER BY a.id LIMIT $5::int) d ORDER BY d.id",
                        4, p, limit);
}

/* --- GET /v1/partners/{p}/support-requests ------------------------------------------------- */

static void support_requests_list(mb_ctx *c)
{
    /* The same callers as the list of one benefit (R8): GA, PA, and the
     * operator reading; technical benefits of a partner in PMC live in Partner
     * Frontline. */
    bool op = (c->who.roles & MB_ROLE_OPERATOR) != 0;
    if (!op && !mb_require(c, MB_ACT_TECHNICAL))
        return;
    int limit;
    char after[64];
    if (!mb_page_args(c, &limit, after, sizeof(after), false))
        return;
    const char *p[] = {c->param[0], after[0] ? after : NULL};
    mb_reply_gated_list(c, true, mb_pmc_technical,
                        "SELECT " MB_GATE_COLUMN ", d.doc, d.id::text FROM (SELECT v.doc, v.id "
                        "FROM support_request_docs v "
                        "WHERE v.partner_id = $1::uuid AND ($2::uuid IS NULL OR v.id > $2::uuid) "
                        "ORDER BY v.id LIMIT $3::int) d ORDER BY d.id",
                        2, p, limit);
}

/* --- GET /v1/partners/{p}/global-admins ---------------------------------------------------- */

static void global_admins_list(mb_ctx *c)
{
    /* Every token of the partner, an employee without any role included, and
     * the operator: only the names and emails of the Global admins, never a
     * user id or anything else about users. Not paged (a handful of people);
     * next_cursor is always null, as on the last page of any list. */
    const char *p[] = {c->param[0]};
    PGresult *r = mb_gated_query(
        c, false, NULL,
        "SELECT p.membership_location, COALESCE((SELECT json_agg(json_build_object("
        "'display_name', u.display_name, 'email', u.email) "
        "ORDER BY lower(u.display_name), lower(u.email)) "
        "FROM users u WHERE u.partner_id = p.id AND 'global_admin' = ANY (u.roles)), "
        "'[]')::text FROM partners p WHERE p.id = $1::uuid",
        1, p);
    if (r == NULL)
        return;
    size_t len = (size_t)PQgetlength(r, 0, 1);
    char *buf = malloc(len + 40);
    if (buf == NULL) {
        mb_db_clear(&r);
        mb_reply_err(c, MB_E_INTERNAL);
        return;
    }
    int n = snprintf(buf, len + 40, "{\"items\":%s,\"next_cursor\":null}", PQgetvalue(r, 0, 1));
    mb_db_clear(&r);
    mb_reply_json(c, 200, buf, (size_t)n);
    free(buf);
}

const mb_route mb_routes_partner_lists[] = {
    {"GET", "/v1/partners/:partnerId/activations", activations_list, 0},
    {"GET", "/v1/partners/:partnerId/support-requests", support_requests_list, 0},
    {"GET", "/v1/partners/:partnerId/global-admins", global_admins_list, 0},
    {NULL, NULL, NULL, 0},
};
