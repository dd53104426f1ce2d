/* Technical and Go-To-Market activations (R8, R9): the partner's request,
 * the operator's queue, completion and rejection. Support requests, which use
 * an active technical benefit, are in support.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mb_events.h"
#include "mb_http.h"
#include "mb_store.h"
#include "refund.h"
#include "technical.h"

const char mb_pmc_technical[] =
    "This partner's membership is still in Partner Membership Center (PMC): technical benefits "
    "are activated and used through Partner Frontline until you are invited to move to Partner "
    "Center.";

static bool is_technical(const mb_benefit *b)
{
    return strcmp(b->category, "technical") == 0;
}

static bool is_gtm(const mb_benefit *b)
{
    return strcmp(b->category, "go_to_market") == 0;
}

void mb_reply_benefit_closed(mb_ctx *c, const mb_benefit *b)
{
    mb_reply_problem(c, MB_E_BENEFIT_EXPIRED,
                     "This benefit is %s and can no longer be used; buy or renew a package to "
                     "get it again.",
                     b->status);
}

/* One document of a view by id; answers 404 when there is none. */
static bool reply_doc(mb_ctx *c, int status, const char *sql, const char *id, const char *what)
{
    const char *p[] = {id};
    return mb_reply_doc(c, status, sql, 1, p, what);
}

/* --- Go-To-Market eligibility (R9) ------------------------------------------------------ */

/* What a reason code of gtm_ineligibility() (sql/009_partner_reads.sql; its rules are in
 * gtm_ineligibility_of() since sql/014_fast_eligibility.sql) means. */
static const char *reason_text(const char *code)
{
    if (strcmp(code, "silver-competency-required") == 0)
        return "a silver (or gold) competency that has not expired";
    if (strcmp(code, "gold-competency-required") == 0)
        return "a gold competency that has not expired";
    if (strcmp(code, "co-sell-ready-required") == 0)
        return "ISV co-sell ready status";
    return code;
}

/* Answers 409/422 and returns false when the partner may not activate the
 * offer: a marketing contact first, then what the offer requires, decided by
 * the same SQL function the benefit's `eligibility` shows. */
static bool gtm_allowed(mb_ctx *c, const mb_benefit *b)
{
    const char *p[] = {c->param[0], b->offer_requirement};
    PGresult *r = NULL;
    mb_err e =
        mb_db_exec(&c->db, &r,
                   "SELECT EXISTS (SELECT 1 FROM marketing_contacts WHERE partner_id = $1::uuid), "
                   "array_to_json(gtm_ineligibility($1::uuid, $2))::text",
                   2, p);
    if (e != MB_OK || PQntuples(r) != 1) {
        mb_db_clear(&r);
        mb_reply_err(c, e != MB_OK ? e : MB_E_NOT_FOUND);
        return false;
    }
    bool contact = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
    json_t *reasons = json_loads(PQgetvalue(r, 0, 1), 0, NULL);
    mb_db_clear(&r);
    if (!json_is_array(reasons)) {
        json_decref(reasons);
        mb_reply_err(c, MB_E_INTERNAL);
        return false;
    }
    if (!contact) {
        json_decref(reasons);
        mb_reply_problem(c, MB_E_CONTACT_REQUIRED,
                         "Assign a company marketing contact first (PUT /v1/partners/%s/"
                         "marketing-contact), then activate the Go-To-Market offer.",
                         c->param[0]);
        return false;
    }
    if (json_array_size(reasons) == 0) {
        json_decref(reasons);
        return true;
    }
    char text[128];
    const char *first = json_string_value(json_array_get(reasons, 0));
    snprintf(text, sizeof(text), "%s", reason_text(first != NULL ? first : "a requirement"));
    /* `reasons` as the benefit's eligibility shows them; `missing` (the
     * requirement) as the first wave answered. */
    mb_reply_problem_x(
        c, MB_E_NOT_ELIGIBLE,
        json_pack("{s:o,s:[s]}", "reasons", reasons, "missing", b->offer_requirement),
        "This offer needs %s; the partner does not have it.", text);
    return false;
}

/* --- POST /v1/partners/{p}/benefits/{b}/activation ----------------------------------------- */

/* What an activation request is refused for, in the order of the answers, from the first round
 * trip (loc: the partner's membership location; x: the pending cancellation, the live
 * activation). */
static bool activation_allowed(mb_ctx *c, const mb_benefit *b, const char *loc, PGresult *const *x)
{
    if (is_technical(b)) {
        if (!mb_require(c, MB_ACT_TECHNICAL) || !mb_gate_pmc(c, loc, mb_pmc_technical))
            return false;
    } else if (is_gtm(b)) {
        if (!mb_require(c, MB_ACT_MARKETING) || !mb_gate_pmc(c, loc, NULL))
            return false;
    } else {
        if (!mb_require(c, MB_ACT_READ) || !mb_gate_pmc(c, loc, NULL))
            return false;
        mb_reply_problem_x(c, MB_E_VALIDATION,
                           json_pack("{s:[{s:s,s:s}]}", "errors", "field", "benefitId", "message",
                                     "not a technical or Go-To-Market benefit"),
                           "Activation applies to technical and Go-To-Market benefits; this is "
                           "a %s benefit.",
                           b->category);
        return false;
    }
    if (!mb_body_empty(c))
        return false;
    if (mb_benefit_closed(b)) {
        mb_reply_benefit_closed(c, b);
        return false;
    }
    if (!mb_no_pending_cancellation_in(c, x[0]))
        return false;
    if (PQntuples(x[1]) > 0) {
        mb_reply_problem(c, MB_E_ACTIVATION_EXISTS,
                         "This benefit already has a %s activation: "
                         "/v1/partners/%s/activations/%s.",
                         PQgetvalue(x[1], 0, 1), c->param[0], PQgetvalue(x[1], 0, 0));
        return false;
    }
    return true;
}

/* Round trips: the gate, the benefit locked (it serialises activation requests of the same
 * benefit), the pending cancellation and the live activation in one; a Go-To-Market offer's
 * eligibility; the activation; the benefit's status, the audit row and the event with the
 * answer's read; the COMMIT. */
static void activation_create(mb_ctx *c)
{
    /* Default deny first: only the roles that may activate something (R8,
     * R9) learn anything about the benefit, even that it exists. */
    if (!mb_roles_allow(c->who.roles, MB_ACT_TECHNICAL) &&
        !mb_roles_allow(c->who.roles, MB_ACT_MARKETING)) {
        mb_reply_problem(c, MB_E_FORBIDDEN_ROLE,
                         "Activating technical benefits and Go-To-Market offers needs Global "
                         "admin or MPN partner admin. Ask your Global admin.");
        return;
    }
    const char *bp[] = {c->param[1]};
    const mb_q checks[2] = {{MB_PENDING_CANCELLATION_OF_BENEFIT_SQL, 1, bp},
                            {"SELECT id::text, status FROM activations WHERE benefit_id = $1::uuid "
                             "AND status IN ('pending', 'active')",
                             1, bp}};
    PGresult *x[2] = {NULL, NULL};
    char membership[16] = "";
    mb_benefit b;
    bool ok = mb_gate_benefit_at(c, membership, true, &b, NULL, NULL, 2, checks, x) &&
              activation_allowed(c, &b, membership, x);
    PQclear(x[0]);
    PQclear(x[1]);
    if (!ok)
        return;
    if (is_gtm(&b) && !gtm_allowed(c, &b))
        return;

    PGresult *r = NULL;
    const char *pl[] = {b.id};
    const char *pi[] = {c->param[0], b.id, b.category, mb_actor(c)};
    mb_err e = mb_db_exec(&c->db, &r,
                          "INSERT INTO activations (partner_id, benefit_id, kind, requested_by) "
                          "VALUES ($1::uuid, $2::uuid, $3, $4) RETURNING id::text",
                          4, pi);
    if (e == MB_E_CONFLICT && strcmp(c->db.constraint, "activations_live_uq") == 0) {
        mb_reply_problem(c, MB_E_ACTIVATION_EXISTS,
                         "This benefit already has a pending or active activation.");
        return;
    }
    if (e != MB_OK) {
        mb_reply_err(c, e);
        return;
    }
    char id[40];
    snprintf(id, sizeof(id), "%s", PQgetvalue(r, 0, 0));
    mb_db_clear(&r);
    e = mb_db_defer(&c->db, /* with the audit row and the event, before the answer's read */
                    "UPDATE benefits SET status = 'pending' WHERE id = $1::uuid", 1, pl);
    char details[128];
    snprintf(details, sizeof(details), "{\"benefit_id\":\"%s\",\"kind\":\"%s\"}", b.id, b.category);
    if (e == MB_OK)
        e = mb_audit(c, c->param[0], "activation.requested", "activation", id, details);
    if (e == MB_OK)
        e = mb_event(&c->db, c->param[0], "activation.requested", "activation", id, c->request_id,
                     NULL);
    if (e != MB_OK) {
        mb_reply_err(c, e);
        return;
    }
    if (!reply_doc(c, 202, "SELECT doc FROM activation_docs WHERE id = $1::uuid", id, "activation"))
        return; /* the deferred statements failed with it: no Location */
    char loc[128];
    snprintf(loc, sizeof(loc), "/v1/partners/%s/activations/%s", c->param[0], id);
    mb_set_header(c, "Location", loc);
    /* Processing takes days: a day is a fair first poll. */
    mb_set_header(c, "Retry-After", "86400");
}

/* --- GET /v1/partners/{p}/activations/{id} ---------------------------------------------------- */

static void activation_get(mb_ctx *c)
{
    bool op = (c->who.roles & MB_ROLE_OPERATOR) != 0;
    if (!op && !mb_roles_allow(c->who.roles, MB_ACT_TECHNICAL) &&
        !mb_roles_allow(c->who.roles, MB_ACT_MARKETING)) {
        mb_reply_problem(c, MB_E_FORBIDDEN_ROLE,
                         "Activations are available to Global admin and MPN partner admin "
                         "only. Ask your Global admin.");
        return;
    }
    mb_reply_partner_doc(c, true, NULL, MB_PARTNER_DOC_SQL("activation_docs"), "activation");
}

/* --- operator: GET /v1/admin/activations ----------------------------------------------------- */

static const char *const activation_states[] = {"pending", "active", "rejected", NULL};

static void admin_activations_list(mb_ctx *c)
{
    if (!mb_require(c, MB_ACT_OPERATE))
        return;
    const char *status = mb_query(c, "status");
    bool known = status == NULL;
    for (size_t i = 0; !known && activation_states[i]; i++)
        known = strcmp(activation_states[i], status) == 0;
    if (!known) {
        mb_reply_problem_x(
            c, MB_E_VALIDATION,
            json_pack("{s:[{s:s,s:s}]}", "errors", "field", "status", "message", "unknown"),
            "Query 'status' must be one of: pending, active, rejected.");
        return;
    }
    /* issue 14: the queue of one partner, of one category */
    const char *partner = mb_query(c, "partner_id"), *category = mb_query(c, "category");
    if ((partner != NULL && !mb_is_uuid(partner)) ||
        (category != NULL && strcmp(category, "technical") != 0 &&
         strcmp(category, "go_to_market") != 0)) {
        const char *field = partner != NULL && !mb_is_uuid(partner) ? "partner_id" : "category";
        mb_reply_problem_x(
            c, MB_E_VALIDATION,
            json_pack("{s:[{s:s,s:s}]}", "errors", "field", field, "message", "invalid"),
            "Query '%s' must be %s.", field,
            strcmp(field, "partner_id") == 0 ? "a partner id" : "technical or go_to_market");
        return;
    }
    int limit;
    char after[64];
    if (!mb_page_args(c, &limit, after, sizeof(after), false))
        return;
    const char *p[] = {status, after[0] ? after : NULL, partner, category};
    mb_reply_list(c,
                  "SELECT a.doc, a.id::text AS cursor_key FROM activation_docs a "
                  "JOIN activations x ON x.id = a.id "
                  "WHERE ($1::text IS NULL OR a.status = $1) "
                  "AND ($2::uuid IS NULL OR a.id > $2::uuid) "
                  "AND ($3::uuid IS NULL OR a.partner_id = $3::uuid) "
                  "AND ($4::text IS NULL OR x.kind = $4) ORDER BY a.id LIMIT $5::int",
                  4, p, limit);
}

/* Locks the activation; answers 404 or 409 not-pending and returns false. */
static bool lock_pending(mb_ctx *c, char partner[40], char benefit[40])
{
    if (!mb_is_uuid(c->param[0])) {
        mb_reply_problem(c, MB_E_NOT_FOUND, "No such activation.");
        return false;
    }
    PGresult *r = NULL;
    mb_err e = mb_db_exec(&c->db, &r,
                          "SELECT status, partner_id::text, benefit_id::text FROM activations "
                          "WHERE id = $1::uuid FOR UPDATE",
                          1, c->param);
    if (e != MB_OK) {
        mb_reply_err(c, e);
        return false;
    }
    if (PQntuples(r) != 1) {
        mb_db_clear(&r);
        mb_reply_problem(c, MB_E_NOT_FOUND, "No such activation.");
        return false;
    }
    if (strcmp(PQgetvalue(r, 0, 0), "pending") != 0) {
        mb_reply_problem(c, MB_E_NOT_PENDING, "This activation is already %s.",
                         PQgetvalue(r, 0, 0));
        mb_db_clear(&r);
        return false;
    }
    snprintf(partner, 40, "%s", PQgetvalue(r, 0, 1));
    snprintf(benefit, 40, "%s", PQgetvalue(r, 0, 2));
    mb_db_clear(&r);
    return true;
}

/* --- operator: POST /v1/admin/activations/{id}/complete -------------------------------------- */

static void admin_activation_complete(mb_ctx *c)
{
    if (!mb_require(c, MB_ACT_OPERATE) || !mb_body_empty(c))
        return;
    char partner[40], benefit_id[40];
    if (!lock_pending(c, partner, benefit_id))
        return;
    mb_benefit b;
    mb_err e = mb_benefit_load(&c->db, partner, benefit_id, true, &b);
    if (e != MB_OK) {
        mb_reply_err(c, e == MB_E_NOT_FOUND ? MB_E_INTERNAL : e);
        return;
    }
    if (mb_benefit_closed(&b)) {
        mb_reply_problem(c, MB_E_BENEFIT_EXPIRED,
                         "The benefit of this activation is %s; reject the activation instead.",
                         b.status);
        return;
    }
    /* Technical: an Access ID and a Contract ID from 64 random bits each (not
     * guessable, unique columns on benefits). Go-To-Market: the offer's
     * duration from the catalog, never past the purchase's term. */
    const char *p[] = {c->param[0], mb_actor(c)};
    PGresult *r = NULL;
    e = mb_db_exec(
        &c->db, &r,
        "UPDATE activations a SET status = 'active', processed_by = $2, processed_at = now(), "
        "access_id = CASE WHEN a.kind = 'technical' "
        "  THEN 'AID-' || upper(encode(gen_random_bytes(8), 'hex')) END, "
        "contract_id = CASE WHEN a.kind = 'technical' "
        "  THEN 'CTR-' || upper(encode(gen_random_bytes(8), 'hex')) END, "
        "expires_at = CASE WHEN a.kind = 'go_to_market' AND p.offer_duration_days IS NOT NULL "
        "  THEN LEAST(now() + make_interval(days => p.offer_duration_days), pu.term_end) END "
        "FROM benefits b JOIN products p ON p.id = b.product_id "
        "JOIN purchases pu ON pu.id = b.purchase_id "
        "WHERE a.id = $1::uuid AND b.id = a.benefit_id "
        "RETURNING a.benefit_id::text, a.access_id, a.contract_id, a.expires_at::text",
        2, p);
    if (e != MB_OK || PQntuples(r) != 1) {
        mb_db_clear(&r);
        mb_reply_err(c, e != MB_OK ? e : MB_E_INTERNAL);
        return;
    }
    const char *pb[] = {PQgetvalue(r, 0, 0), PQgetisnull(r, 0, 1) ? NULL : PQgetvalue(r, 0, 1),
                        PQgetisnull(r, 0, 2) ? NULL : PQgetvalue(r, 0, 2),
                        PQgetisnull(r, 0, 3) ? NULL : PQgetvalue(r, 0, 3)};
    e = mb_db_exec(&c->db, NULL,
                   "UPDATE benefits SET status = 'active', activated_at = now(), access_id = $2, "
                   "contract_id = $3, expires_at = $4::timestamptz WHERE id = $1::uuid",
                   4, pb);
    mb_db_clear(&r);
    if (e == MB_E_CONFLICT) {
        /* 64 random bits collided: let the operator retry. */
        mb_reply_problem(c, MB_E_CONFLICT, "Could not issue unique identifiers; retry.");
        return;
    }
    char details[128];
    snprintf(details, sizeof(details), "{\"benefit_id\":\"%s\",\"kind\":\"%s\"}", benefit_id,
             b.category);
    if (e == MB_OK)
        e = mb_audit(c, partner, "activation.completed", "activation", c->param[0], details);
    if (e == MB_OK)
        e = mb_event(&c->db, partner, "activation.completed", "activation", c->param[0],
                     c->request_id, NULL);
    if (e != MB_OK) {
        mb_reply_err(c, e);
        return;
    }
    reply_doc(c, 200, "SELECT doc FROM activation_docs WHERE id = $1::uuid", c->param[0],
              "activation");
}

/* --- operator: POST /v1/admin/activations/{id}/reject ---------------------------------------- */

static void admin_activation_reject(mb_ctx *c)
{
    if (!mb_require(c, MB_ACT_OPERATE))
        return;
    json_t *body = mb_body(c, false);
    if (body == NULL)
        return;
    static const char *const fields[] = {"reason", NULL};
    mb_verr verr;
    const char *reason = NULL;
    if (!mb_v_known(body, fields, &verr) ||
        !mb_v_str(body, "reason", true, 1, 500, &reason, &verr)) {
        json_decref(body);
        mb_reply_verr(c, &verr);
        return;
    }
    char partner[40], benefit_id[40];
    if (!lock_pending(c, partner, benefit_id)) {
        json_decref(body);
        return;
    }
    const char *p[] = {c->param[0], mb_actor(c), reason, benefit_id};
    mb_err e = mb_db_exec(&c->db, NULL,
                          "UPDATE activations SET status = 'rejected', processed_by = $2, "
                          "processed_at = now(), reason = $3 WHERE id = $1::uuid",
                          3, p);
    json_decref(body);
    /* The benefit can be activated again. */
    if (e == MB_OK)
        e = mb_db_exec(&c->db, NULL,
                       "UPDATE benefits SET status = 'available' WHERE id = $1::uuid "
                       "AND status = 'pending'",
                       1, p + 3);
    char details[96];
    snprintf(details, sizeof(details), "{\"benefit_id\":\"%s\"}", benefit_id);
    if (e == MB_OK)
        e = mb_audit(c, partner, "activation.rejected", "activation", c->param[0], details);
    if (e == MB_OK)
        e = mb_event(&c->db, partner, "activation.rejected", "activation", c->param[0],
                     c->request_id, NULL);
    if (e != MB_OK) {
        mb_reply_err(c, e);
        return;
    }
    reply_doc(c, 200, "SELECT doc FROM activation_docs WHERE id = $1::uuid", c->param[0],
              "activation");
}

const mb_route mb_routes_activation[] = {
    {"POST", "/v1/partners/:partnerId/benefits/:benefitId/activation", activation_create,
     MB_R_TX | MB_R_BODY},
    {"GET", "/v1/partners/:partnerId/activations/:activationId", activation_get, 0},
    {"GET", "/v1/admin/activations", admin_activations_list, 0},
    {"POST", "/v1/admin/activations/:activationId/complete", admin_activation_complete,
     MB_R_TX | MB_R_BODY},
    {"POST", "/v1/admin/activations/:activationId/reject", admin_activation_reject,
     MB_R_TX | MB_R_BODY},
    {NULL, NULL, NULL, 0},
};
