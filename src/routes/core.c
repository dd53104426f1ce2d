/* Health, contract, metrics, the caller, the catalog, partners and benefit
 * reads. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mb_http.h"
#include "mb_identity.h"
#include "mb_metrics.h"

extern const unsigned char mb_openapi_yaml[];
extern const size_t mb_openapi_yaml_len;

static void healthz(mb_ctx *c)
{
    mb_reply_json(c, 200, "{\"status\":\"ok\"}", 15);
}

static void readyz(mb_ctx *c)
{
    if (!mb_jwks_ready()) /* JWKS mode: no signing key fetched yet */
        mb_reply_problem(c, MB_E_UNAVAILABLE, "No signing key fetched from JWT_JWKS_URL yet.");
    else if (mb_db_ready())
        mb_reply_json(c, 200, "{\"status\":\"ok\"}", 15);
    else
        mb_reply_err(c, MB_E_UNAVAILABLE);
}

/* The document is served as application/yaml (RFC 9512), or as text/yaml when
 * the Accept header names text/yaml and not application/yaml (older tools ask
 * for that); any other Accept, or none, gets application/yaml. */
static void openapi(mb_ctx *c)
{
    const char *accept = mb_header(c, "Accept");
    bool text = accept != NULL && strcasestr(accept, "text/yaml") != NULL &&
                strcasestr(accept, "application/yaml") == NULL;
    ulfius_set_binary_body_response(c->resp, 200, (const char *)mb_openapi_yaml,
                                    mb_openapi_yaml_len);
    mb_set_header(c, "Content-Type", text ? "text/yaml" : "application/yaml");
}

static void metrics(mb_ctx *c)
{
    size_t len = 0;
    char *text = mb_metrics_text(&len);
    if (text == NULL) {
        mb_reply_err(c, MB_E_INTERNAL);
        return;
    }
    ulfius_set_binary_body_response(c->resp, 200, text, len);
    mb_set_header(c, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    free(text);
}

/* Paging parameters: answers 422 and returns false when they are bad. The
 * cursor must decode to a key of the expected form (a UUID unless
 * numeric). */
static bool page_args(mb_ctx *c, int *limit, char *after, size_t afterlen, bool numeric)
{
    if (!mb_parse_limit(mb_query(c, "limit"), limit)) {
        mb_reply_problem_x(
            c, MB_E_VALIDATION,
            json_pack("{s:[{s:s,s:s}]}", "errors", "field", "limit", "message", "1 to 200"),
            "Query 'limit' must be an integer from 1 to 200.");
        return false;
    }
    after[0] = '\0';
    const char *cur = mb_query(c, "cursor");
    if (cur == NULL)
        return true;
    bool ok = mb_cursor_decode(cur, after, afterlen);
    if (ok && numeric) {
        for (const char *p = after; *p; p++)
            ok = ok && *p >= '0' && *p <= '9';
        ok = ok && strlen(after) > 0 && strlen(after) < 19;
    } else if (ok) {
        ok = mb_is_uuid(after);
    }
    if (!ok) {
        mb_reply_problem_x(
            c, MB_E_VALIDATION,
            json_pack("{s:[{s:s,s:s}]}", "errors", "field", "cursor", "message", "invalid"),
            "Query 'cursor' is not a cursor this API gave out.");
        return false;
    }
    return true;
}

bool mb_page_args(mb_ctx *c, int *limit, char *after, size_t afterlen, bool numeric)
{
    return page_args(c, limit, after, afterlen, numeric);
}

static void me(mb_ctx *c)
{
    json_t *roles = json_array();
    for (unsigned bit = 1; bit <= MB_ROLE_OPERATOR; bit <<= 1)
        if (c->who.roles & bit)
            json_array_append_new(roles, json_string(mb_role_name(bit)));
    json_t *assignments = NULL;
    if (c->who.tid[0] != '\0' && mb_is_uuid(c->who.sub)) {
        PGresult *r = NULL;
        const char *p[] = {c->who.sub, c->who.tid};
        mb_err e = mb_db_exec(&c->db, &r,
                              "SELECT COALESCE(json_agg(doc ORDER BY benefit_id), '[]') "
                              "FROM assignment_docs WHERE user_id = $1 AND partner_id = $2",
                              2, p);
        if (e != MB_OK) {
            json_decref(roles);
            mb_reply_err(c, e);
            return;
        }
        assignments = json_loads(PQgetvalue(r, 0, 0), 0, NULL);
        mb_db_clear(&r);
    }
    json_t *doc = json_pack("{s:s, s:o, s:o, s:o}", "user_id", c->who.sub, "partner_id",
                            c->who.tid[0] ? json_string(c->who.tid) : json_null(), "roles", roles,
                            "assignments", assignments ? assignments : json_array());
    mb_reply_jansson(c, 200, doc);
}

static void packages_list(mb_ctx *c)
{
    int limit;
    char after[64];
    if (!page_args(c, &limit, after, sizeof(after), false))
        return;
    const char *p[] = {after[0] ? after : NULL};
    mb_reply_list(c,
                  "SELECT doc, id::text AS cursor_key FROM package_docs "
                  "WHERE ($1::uuid IS NULL OR id > $1::uuid) ORDER BY id LIMIT $2::int",
                  1, p, limit);
}

static void package_get(mb_ctx *c)
{
    if (!mb_is_uuid(c->param[0])) {
        mb_reply_problem(c, MB_E_NOT_FOUND, "No such package.");
        return;
    }
    mb_reply_doc(c, 200, "SELECT doc FROM package_docs WHERE id = $1::uuid", 1, c->param,
                 "package");
}

static void partner_get(mb_ctx *c)
{
    if (!mb_require(c, MB_ACT_READ))
        return;
    /* partner_docs carries the membership location: the gate and the document
     * in one query. */
    mb_reply_gated_doc(c, false, NULL,
                       "SELECT membership_location, doc FROM partner_docs WHERE id = $1::uuid", 1,
                       c->param, "partner");
}

static const char *const categories[] = {"software",  "cloud",        "visual_studio",
                                         "technical", "go_to_market", NULL};
static const char *const benefit_states[] = {"available", "pending",   "active",
                                             "expired",   "cancelled", NULL};

static bool in_list(const char *v, const char *const *list)
{
    for (size_t i = 0; list[i]; i++)
        if (strcmp(list[i], v) == 0)
            return true;
    return false;
}

static void benefits_list(mb_ctx *c)
{
    if (!mb_require(c, MB_ACT_READ))
        return;
    const char *category = mb_query(c, "category");
    const char *status = mb_query(c, "status");
    if (category != NULL && !in_list(category, categories)) {
        mb_reply_problem_x(
            c, MB_E_VALIDATION,
            json_pack("{s:[{s:s,s:s}]}", "errors", "field", "category", "message", "unknown"),
            "Query 'category' must be one of: software, cloud, visual_studio, "
            "technical, go_to_market.");
        return;
    }
    if (status != NULL && !in_list(status, benefit_states)) {
        mb_reply_problem_x(
            c, MB_E_VALIDATION,
            json_pack("{s:[{s:s,s:s}]}", "errors", "field", "status", "message", "unknown"),
            "Query 'status' must be one of: available, pending, active, "
            "expired, cancelled.");
        return;
    }
    /* R8: technical benefits are visible only to the right roles. */
    bool technical = mb_sees_technical(c);
    if (category != NULL && strcmp(category, "technical") == 0 && !technical) {
        mb_reply_problem(c, MB_E_FORBIDDEN_ROLE, "%s", mb_action_denied_detail(MB_ACT_TECHNICAL));
        return;
    }
    /* issue 14: benefits that stop being usable before a moment */
    const char *expiring_before = mb_query(c, "expiring_before");
    if (expiring_before != NULL && !mb_is_date_time(expiring_before)) {
        mb_reply_problem_x(c, MB_E_VALIDATION,
                           json_pack("{s:[{s:s,s:s}]}", "errors", "field", "expiring_before",
                                     "message", "RFC 3339 date-time"),
                           "Query 'expiring_before' must be an RFC 3339 date-time.");
        return;
    }
    if (mb_wants_csv(c)) {
        mb_export_benefits(c, category, status, technical, expiring_before);
        return;
    }
    int limit;
    char after[64];
    if (!page_args(c, &limit, after, sizeof(after), false))
        return;
    const char *p[] = {
        c->param[0],    category, status, after[0] ? after : NULL, technical ? "true" : "false",
        expiring_before};
    /* The partner gate and the page in one round trip (mb_reply_gated_list). */
    mb_reply_gated_list(c, true, NULL,
                        "SELECT " MB_GATE_COLUMN ", d.doc, d.id::text FROM (SELECT doc, id "
                        "FROM benefit_docs_fast WHERE partner_id = $1::uuid "
                        "AND ($2::text IS NULL OR category = $2) "
                        "AND ($3::text IS NULL OR status = $3) "
                        "AND ($4::uuid IS NULL OR id > $4::uuid) "
                        "AND (category <> 'technical' OR $5::boolean) "
                        "AND ($6::timestamptz IS NULL OR expires_on < $6::timestamptz) "
                        "ORDER BY id LIMIT $7::int) d ORDER BY d.id",
                        6, p, limit);
}

static void benefit_get(mb_ctx *c)
{
    if (!mb_require(c, MB_ACT_READ))
        return;
    /* Not a UUID: still through the gate (an unknown partner is 404 "No such
     * partner." first), with a benefit id that matches nothing. */
    const char *p[] = {c->param[0], mb_is_uuid(c->param[1]) ? c->param[1] : NULL};
    PGresult *r = mb_gated_query(c, true, NULL,
                                 "SELECT p.membership_location, d.doc, d.category "
                                 "FROM partners p LEFT JOIN benefit_docs_fast d "
                                 "ON d.partner_id = p.id AND d.id = $2::uuid "
                                 "WHERE p.id = $1::uuid",
                                 2, p);
    if (r == NULL)
        return;
    if (PQgetisnull(r, 0, 1))
        mb_reply_problem(c, MB_E_NOT_FOUND, "No such benefit.");
    else if (strcmp(PQgetvalue(r, 0, 2), "technical") == 0 && !mb_sees_technical(c))
        mb_reply_problem(c, MB_E_FORBIDDEN_ROLE, "%s", mb_action_denied_detail(MB_ACT_TECHNICAL));
    else
        mb_reply_json(c, 200, PQgetvalue(r, 0, 1), (size_t)PQgetlength(r, 0, 1));
    mb_db_clear(&r);
}

static void admin_partners_list(mb_ctx *c)
{
    if (!mb_require(c, MB_ACT_OPERATE))
        return;
    int limit;
    char after[64];
    if (!page_args(c, &limit, after, sizeof(after), false))
        return;
    const char *p[] = {after[0] ? after : NULL};
    mb_reply_list(c,
                  "SELECT doc, id::text AS cursor_key FROM partner_docs "
                  "WHERE ($1::uuid IS NULL OR id > $1::uuid) ORDER BY id LIMIT $2::int",
                  1, p, limit);
}

const mb_route mb_routes_core[] = {
    {"GET", "/healthz", healthz, MB_R_PUBLIC},
    {"GET", "/readyz", readyz, MB_R_PUBLIC},
    {"GET", "/openapi.yaml", openapi, MB_R_PUBLIC},
    {"GET", "/metrics", metrics, MB_R_PUBLIC},
    {"GET", "/v1/me", me, 0},
    {"GET", "/v1/packages", packages_list, 0},
    {"GET", "/v1/packages/:packageId", package_get, 0},
    {"GET", "/v1/partners/:partnerId", partner_get, 0},
    {"GET", "/v1/partners/:partnerId/benefits", benefits_list, 0},
    {"GET", "/v1/partners/:partnerId/benefits/:benefitId", benefit_get, 0},
    {"GET", "/v1/admin/partners", admin_partners_list, 0},
    {NULL, NULL, NULL, 0},
};
