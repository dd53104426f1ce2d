/* Support requests (R8): the partner's requests against an active technical
 * benefit, which use its incidents or hours. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mb_events.h"
#include "mb_http.h"
#include "mb_store.h"
#include "technical.h"

/* --- support requests (R8) ----------------------------------------------------------------- */

static const char *const request_types[] = {"cloud_on_behalf_of_customer", "on_premises",
                                            "presales_deployment", "advisory_hours", NULL};

/* The caller may use technical benefits of the partner, which is in Partner
 * Center; answers and returns false otherwise. Operators may read. */
static bool technical_gate(mb_ctx *c, bool read)
{
    bool op = read && (c->who.roles & MB_ROLE_OPERATOR) != 0;
    if (!op && !mb_require(c, MB_ACT_TECHNICAL))
        return false;
    return mb_partner_gate(c, c->param[0], true, mb_pmc_technical);
}

static bool require_technical(mb_ctx *c, const mb_benefit *b)
{
    if (strcmp(b->category, "technical") == 0)
        return true;
    mb_reply_problem_x(c, MB_E_VALIDATION,
                       json_pack("{s:[{s:s,s:s}]}", "errors", "field", "benefitId", "message",
                                 "not a technical benefit"),
                       "Support requests apply to technical benefits; this is a %s benefit.",
                       b->category);
    return false;
}

static void support_list(mb_ctx *c)
{
    if (!technical_gate(c, true))
        return;
    int limit;
    char after[64];
    if (!mb_page_args(c, &limit, after, sizeof(after), false))
        return;
    mb_benefit b;
    if (!mb_load_url_benefit(c, false, &b) || !require_technical(c, &b))
        return;
    const char *p[] = {b.id, after[0] ? after : NULL};
    mb_reply_list(c,
                  "SELECT doc, id::text AS cursor_key FROM support_request_docs "
                  "WHERE benefit_id = $1::uuid AND ($2::uuid IS NULL OR id > $2::uuid) "
                  "ORDER BY id LIMIT $3::int",
                  2, p, limit);
}

static void support_get(mb_ctx *c)
{
    if (!technical_gate(c, true))
        return;
    mb_benefit b;
    if (!mb_load_url_benefit(c, false, &b) || !require_technical(c, &b))
        return;
    if (!mb_is_uuid(c->param[2])) {
        mb_reply_problem(c, MB_E_NOT_FOUND, "No such support request.");
        return;
    }
    const char *p[] = {b.id, c->param[2]};
    mb_reply_doc(c, 200,
                 "SELECT doc FROM support_request_docs WHERE benefit_id = $1::uuid "
                 "AND id = $2::uuid",
                 2, p, "support request");
}

static void support_create(mb_ctx *c)
{
    if (!technical_gate(c, false))
        return;
    json_t *body = mb_body(c, false);
    if (body == NULL)
        return;
    static const char *const fields[] = {"type", "customer_tenant_id", "hours", "description",
                                         NULL};
    mb_verr verr;
    const char *type = NULL, *tenant = NULL, *desc = NULL;
    long long hours = 0;
    bool has_hours = false;
    bool ok = mb_v_known(body, fields, &verr) &&
              mb_v_enum(body, "type", true, request_types, &type, &verr) &&
              mb_v_uuid(body, "customer_tenant_id", false, &tenant, &verr) &&
              mb_v_int(body, "hours", false, 1, 1000, &hours, &has_hours, &verr) &&
              mb_v_str(body, "description", false, 0, 2000, &desc, &verr);
    if (ok && strcmp(type, "cloud_on_behalf_of_customer") == 0 && tenant == NULL) {
        snprintf(verr.field, sizeof(verr.field), "customer_tenant_id");
        snprintf(verr.message, sizeof(verr.message),
                 "is required for a cloud product on behalf of a customer");
        ok = false;
    }
    if (ok && strcmp(type, "advisory_hours") == 0 && !has_hours) {
        snprintf(verr.field, sizeof(verr.field), "hours");
        snprintf(verr.message, sizeof(verr.message), "is required for advisory hours");
        ok = false;
    }
    if (!ok) {
        json_decref(body);
        mb_reply_verr(c, &verr);
        return;
    }
    char type_s[32];
    snprintf(type_s, sizeof(type_s), "%s", type);
    mb_benefit b;
    /* The lock serialises every use of the benefit; the CHECK on benefits.used
     * is the last word. */
    if (!mb_load_url_benefit(c, true, &b) || !require_technical(c, &b)) {
        json_decref(body);
        return;
    }
    if (mb_benefit_closed(&b)) {
        json_decref(body);
        mb_reply_benefit_closed(c, &b);
        return;
    }
    if (strcmp(b.status, "active") != 0) {
        json_decref(body);
        mb_reply_problem(c, MB_E_BENEFIT_NOT_ACTIVE,
                         "This benefit is %s: activate it (POST /v1/partners/%s/benefits/%s/"
                         "activation) and wait until the activation is active.",
                         b.status, c->param[0], b.id);
        return;
    }
    bool by_hours = strcmp(b.unit, "hours") == 0;
    /* R8: presales/deployment and advisory hours are counted in hours, cloud
     * and on-premises product incidents in incidents; a request of the other
     * kind would silently use the wrong unit. */
    bool hours_type = strcmp(type_s, "presales_deployment") == 0 ||
                      strcmp(type_s, "advisory_hours") == 0;
    if (hours_type != by_hours) {
        json_decref(body);
        mb_reply_problem_x(
            c, MB_E_VALIDATION,
            json_pack("{s:[{s:s,s:s}],s:[s,s]}", "errors", "field", "type", "message",
                      by_hours ? "this benefit is counted in hours"
                               : "this benefit is counted in incidents",
                      "allowed", by_hours ? "presales_deployment" : "cloud_on_behalf_of_customer",
                      by_hours ? "advisory_hours" : "on_premises"),
            "A %s request does not fit this benefit, which is counted in %s: use %s.", type_s,
            by_hours ? "hours" : "incidents",
            by_hours ? "presales_deployment or advisory_hours"
                     : "cloud_on_behalf_of_customer or on_premises");
        return;
    }
    if (by_hours && !has_hours) {
        json_decref(body);
        snprintf(verr.field, sizeof(verr.field), "hours");
        snprintf(verr.message, sizeof(verr.message),
                 "is required: this benefit is counted in hours");
        mb_reply_verr(c, &verr);
        return;
    }
    long long units = by_hours ? hours : 1;
    char units_s[24], hours_s[24];
    snprintf(units_s, sizeof(units_s), "%lld", units);
    snprintf(hours_s, sizeof(hours_s), "%lld", hours);
    const char *p[] = {c->param[0], b.id,    type,       tenant, has_hours ? hours_s : NULL,
                       desc,        units_s, mb_actor(c)};
    PGresult *r = NULL;
    mb_err e = mb_db_exec(&c->db, &r,
                          "INSERT INTO support_requests (partner_id, benefit_id, type, "
                          "customer_tenant_id, hours, description, units, created_by) "
                          "VALUES ($1::uuid, $2::uuid, $3, $4::uuid, $5::int, $6, $7::int, $8) "
                          "RETURNING id::text",
                          8, p);
    json_decref(body);
    if (e == MB_E_VALIDATION && strcmp(c->db.constraint, "benefits_used_within_quantity") == 0) {
        int left = b.quantity - b.used;
        mb_reply_problem(c, MB_E_BENEFIT_EXHAUSTED, "This request needs %lld %s; %d of %d left.",
                         units, by_hours ? "hours" : "incident(s)", left < 0 ? 0 : left,
                         b.quantity);
        return;
    }
    if (e != MB_OK) {
        mb_reply_err(c, e);
        return;
    }
    char id[40];
    snprintf(id, sizeof(id), "%s", PQgetvalue(r, 0, 0));
    mb_db_clear(&r);
    char details[160];
    snprintf(details, sizeof(details), "{\"benefit_id\":\"%s\",\"type\":\"%s\",\"units\":%lld}",
             b.id, type_s, units);
    e = mb_audit(c, c->param[0], "support_request.created", "support_request", id, details);
    if (e == MB_OK)
        e = mb_event(&c->db, c->param[0], "support_request.created", "support_request", id,
                     c->request_id, NULL);
    if (e != MB_OK) {
        mb_reply_err(c, e);
        return;
    }
    const char *ip[] = {id};
    mb_reply_doc(c, 201, "SELECT doc FROM support_request_docs WHERE id = $1::uuid", 1, ip,
                 "support request");
    char loc[192];
    snprintf(loc, sizeof(loc), "/v1/partners/%s/benefits/%s/support-requests/%s", c->param[0], b.id,
             id);
    mb_set_header(c, "Location", loc);
}

const mb_route mb_routes_support[] = {
    {"GET", "/v1/partners/:partnerId/benefits/:benefitId/support-requests", support_list, 0},
    {"POST", "/v1/partners/:partnerId/benefits/:benefitId/support-requests", support_create,
     MB_R_TX | MB_R_BODY},
    {"GET", "/v1/partners/:partnerId/benefits/:benefitId/support-requests/:requestId", support_get,
     0},
    {NULL, NULL, NULL, 0},
};
