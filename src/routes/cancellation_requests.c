/* Cancellation as a service request (R10, DESIGN §4b "Partner workflows"):
 * a partner asks to cancel a purchase or a single benefit/offer of it; the
 * refund is decided by the R10 rules (refund.h) at the moment of the request;
 * while it is pending the purchase's keys, seats and activations answer 409
 * cancellation-pending; an operator completes or rejects it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mb_events.h"
#include "mb_http.h"
#include "refund.h"

#define DOC_SQL "SELECT doc FROM cancellation_request_docs WHERE id = $1::uuid"

/* The request's event: its data is the request as its GET shows it. */
static mb_err request_event(mb_ctx *c, const char *partner, const char *type, const char *id)
{
    const char *p[] = {partner, type, id, c->request_id};
    return mb_db_exec(&c->db, NULL,
                      "SELECT emit_event($1::uuid, $2, 'cancellation_request', $3::text, $4, "
                      "(SELECT doc::jsonb FROM cancellation_request_docs "
                      "WHERE id = $3::text::uuid))",
                      4, p);
}

static bool may_read(mb_ctx *c)
{
    return (c->who.roles & MB_ROLE_OPERATOR) || mb_require(c, MB_ACT_CANCEL);
}

static void reply_fields_problem(mb_ctx *c, const char *message)
{
    mb_reply_problem_x(c, MB_E_VALIDATION,
                       json_pack("{s:[{s:s,s:s},{s:s,s:s}]}", "errors", "field", "purchase_id",
                                 "message", message, "field", "benefit_id", "message", message),
                       "Name exactly one of purchase_id (the whole purchase) and benefit_id (a "
                       "single benefit or offer): %s.",
                       message);
}

/* The purchase of a benefit of the partner (and whether it is cancelled);
 * answers 404 and returns false. */
static bool benefit_purchase(mb_ctx *c, const char *benefit_id, char purchase[40])
{
    const char *p[] = {c->param[0], benefit_id};
    PGresult *r = NULL;
    mb_err e = mb_db_exec(&c->db, &r,
                          "SELECT purchase_id::text FROM benefits "
                          "WHERE partner_id = $1::uuid AND id = $2::uuid",
                          2, p);
    if (e != MB_OK) {
        mb_reply_err(c, e);
        return false;
    }
    if (PQntuples(r) != 1) {
        mb_db_clear(&r);
        mb_reply_problem(c, MB_E_NOT_FOUND, "No such benefit.");
        return false;
    }
    snprintf(purchase, 40, "%s", PQgetvalue(r, 0, 0));
    mb_db_clear(&r);
    return true;
}

/* After the locks: 409 when the purchase (or the benefit) is no longer there
 * to cancel. */
static bool still_cancellable(mb_ctx *c, const mb_refund_facts *f, const char *benefit_id)
{
    if (strcmp(f->status, "cancelled") == 0) {
        mb_reply_problem(c, MB_E_ALREADY_CANCELLED, "This purchase is already cancelled.");
        return false;
    }
    if (!f->active) {
        mb_reply_problem(c, MB_E_PURCHASE_NOT_ACTIVE,
                         "This purchase is no longer active (its term has ended): there is "
                         "nothing left to cancel.");
        return false;
    }
    if (benefit_id == NULL)
        return true;
    const char *p[] = {benefit_id};
    PGresult *r = NULL;
    mb_err e = mb_db_exec(&c->db, &r, "SELECT status FROM benefits WHERE id = $1::uuid", 1, p);
    if (e != MB_OK) {
        mb_reply_err(c, e);
        return false;
    }
    bool cancelled = PQntuples(r) == 1 && strcmp(PQgetvalue(r, 0, 0), "cancelled") == 0;
    mb_db_clear(&r);
    if (cancelled)
        mb_reply_problem(c, MB_E_ALREADY_CANCELLED, "This benefit is already cancelled.");
    return !cancelled;
}

/* POST /v1/partners/{partnerId}/cancellation-requests */
static void request_create(mb_ctx *c)
{
    if (!mb_require(c, MB_ACT_CANCEL) || !mb_partner_gate(c, c->param[0], true, NULL))
        return;
    json_t *body = mb_body(c, false);
    if (body == NULL)
        return;
    static const char *const known[] = {"purchase_id", "benefit_id", "reason", "accept_no_refund",
                                        NULL};
    const char *purchase_id = NULL, *benefit_id = NULL, *reason = NULL;
    bool accept = false, present = false;
    mb_verr verr;
    if (!mb_v_known(body, known, &verr) ||
        !mb_v_uuid(body, "purchase_id", false, &purchase_id, &verr) ||
        !mb_v_uuid(body, "benefit_id", false, &benefit_id, &verr) ||
        !mb_v_str(body, "reason", true, 1, 2000, &reason, &verr) ||
        !mb_v_bool(body, "accept_no_refund", false, &accept, &present, &verr)) {
        json_decref(body);
        mb_reply_verr(c, &verr);
        return;
    }
    if ((purchase_id == NULL) == (benefit_id == NULL)) {
        json_decref(body);
        reply_fields_problem(c, purchase_id ? "both are given" : "neither is given");
        return;
    }
    char purchase[40], bid[40] = "";
    if (benefit_id != NULL) {
        snprintf(bid, sizeof(bid), "%s", benefit_id);
        if (!benefit_purchase(c, bid, purchase)) {
            json_decref(body);
            return;
        }
    } else {
        snprintf(purchase, sizeof(purchase), "%s", purchase_id);
    }
    char reason_buf[2048 * 4];
    snprintf(reason_buf, sizeof(reason_buf), "%s", reason);
    json_decref(body);

    /* The refund is decided now, under the purchase's and its benefits' locks:
     * a key reveal in flight counts, later ones see the pending request. */
    mb_refund_facts f;
    if (!mb_lock_purchase(c, c->param[0], purchase) ||
        !mb_refund_facts_read(c, c->param[0], purchase, &f) ||
        !still_cancellable(c, &f, bid[0] ? bid : NULL) || !mb_no_pending_cancellation(c, purchase))
        return;
    const char *reasons[3];
    int n = mb_refund_facts_reasons(&f, reasons);
    if (n > 0 && !accept) {
        mb_reply_no_refund(c, reasons, n, f.window_ends_at,
                           " To cancel without a refund, send the request again with "
                           "accept_no_refund: true.");
        return;
    }
    char list[96] = "{";
    for (int i = 0; i < n; i++)
        snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", i ? "," : "",
                 reasons[i]);
    strcat(list, "}");

    /* A purchase's refund is its price less what its benefits' requests
     * refunded already; a single benefit's, an even share of the price. */
    const char *p[] = {c->param[0],
                       purchase,
                       bid[0] ? bid : NULL,
                       reason_buf,
                       accept ? "true" : "false",
                       n == 0 ? "true" : "false",
                       list,
                       mb_actor(c)};
    PGresult *r = NULL;
    mb_err e = mb_db_exec(
        &c->db, &r,
        "INSERT INTO cancellation_requests (partner_id, purchase_id, benefit_id, reason, "
        "accept_no_refund, refund_amount, refund_currency, refund_reasons, requested_by) "
        "SELECT $1::uuid, pu.id, $3::uuid, $4, $5::boolean, "
        "CASE WHEN NOT $6::boolean THEN NULL WHEN $3::uuid IS NULL THEN GREATEST(pk.price - "
        "  COALESCE((SELECT sum(x.refund_amount) FROM cancellation_requests x WHERE "
        "  x.purchase_id = pu.id AND x.status = 'completed' AND x.benefit_id IS NOT NULL), 0), 0) "
        "ELSE trunc(pk.price / (SELECT count(*) FROM benefits b WHERE b.purchase_id = pu.id), 2) "
        "END, CASE WHEN $6::boolean THEN pk.currency END, $7::text[], $8 "
        "FROM purchases pu JOIN packages pk ON pk.id = pu.package_id WHERE pu.id = $2::uuid "
        "ON CONFLICT (purchase_id) WHERE status = 'pending' DO NOTHING RETURNING id::text",
        8, p);
    if (e != MB_OK) {
        mb_reply_err(c, e);
        return;
    }
    if (PQntuples(r) != 1) {
        mb_db_clear(&r);
        mb_reply_problem(c, MB_E_CANCELLATION_PENDING,
                         "A cancellation of this purchase is pending already.");
        return;
    }
    char id[40];
    snprintf(id, sizeof(id), "%s", PQgetvalue(r, 0, 0));
    mb_db_clear(&r);
    char details[256];
    snprintf(details, sizeof(details),
             "{\"purchase_id\":\"%s\",\"benefit_id\":%s%s%s,\"refund\":%s}", purchase,
             bid[0] ? "\"" : "", bid[0] ? bid : "null", bid[0] ? "\"" : "",
             n == 0 ? "true" : "false");
    e = mb_audit(c, c->param[0], "cancellation_request.created", "cancellation_request", id,
                 details);
    if (e == MB_OK)
        e = request_event(c, c->param[0], "cancellation_request.created", id);
    if (e != MB_OK) {
        mb_reply_err(c, e);
        return;
    }
    const char *pd[] = {id};
    if (mb_reply_doc(c, 202, DOC_SQL, 1, pd, "cancellation request")) {
        char loc[160];
        snprintf(loc, sizeof(loc), "/v1/partners/%s/cancellation-requests/%s", c->param[0], id);
        mb_set_header(c, "Location", loc);
    }
}

static const char *const request_states[] = {"pending", "completed", "rejected", NULL};

/* ?status= of the lists: NULL or one of request_states; answers 422. */
static bool status_ok(mb_ctx *c, const char *status)
{
    for (size_t i = 0; status != NULL && request_states[i]; i++)
        if (strcmp(request_states[i], status) == 0)
            return true;
    if (status == NULL)
        return true;
    mb_reply_problem_x(
        c, MB_E_VALIDATION,
        json_pack("{s:[{s:s,s:s}]}", "errors", "field", "status", "message", "invalid"),
        "Query 'status' must be one of: pending, completed, rejected.");
    return false;
}

/* GET /v1/partners/{partnerId}/cancellation-requests?status= */
static void requests_list(mb_ctx *c)
{
    const char *status = mb_query(c, "status");
    int limit;
    char after[64];
    if (!may_read(c) || !status_ok(c, status) ||
        !mb_page_args(c, &limit, after, sizeof(after), false))
        return;
    const char *p[] = {c->param[0], after[0] ? after : NULL, status};
    mb_reply_gated_list(c, true, NULL,
                        "SELECT " MB_GATE_COLUMN ", d.doc, d.id::text FROM (SELECT doc, id "
                        "FROM cancellation_request_docs "
                        "WHERE partner_id = $1::uuid AND ($2::uuid IS NULL OR id > $2::uuid) "
                        "AND ($3::text IS NULL OR status = $3) ORDER BY id LIMIT $4::int) d "
                        "ORDER BY d.id",
                        3, p, limit);
}

/* GET /v1/partners/{partnerId}/cancellation-requests/{requestId} */
static void request_get(mb_ctx *c)
{
    if (may_read(c))
        mb_reply_partner_doc(c, true, NULL, MB_PARTNER_DOC_SQL("cancellation_request_docs"),
                             "cancellation request");
}

/* --- the operator's queue --------------------------------------------------------------------- */

/* GET /v1/admin/cancellation-requests?status=&partner_id= */
static void admin_list(mb_ctx *c)
{
    if (!mb_require(c, MB_ACT_OPERATE))
        return;
    const char *status = mb_query(c, "status"), *partner = mb_query(c, "partner_id");
    if (!status_ok(c, status))
        return;
    if (partner != NULL && !mb_is_uuid(partner)) {
        mb_reply_problem_x(
            c, MB_E_VALIDATION,
            json_pack("{s:[{s:s,s:s}]}", "errors", "field", "partner_id", "message", "invalid"),
            "Query 'partner_id' must be a partner id.");
        return;
    }
    int limit;
    char after[64];
    if (!mb_page_args(c, &limit, after, sizeof(after), false))
        return;
    const char *p[] = {status, after[0] ? after : NULL, partner};
    mb_reply_list(c,
                  "SELECT doc, id::text AS cursor_key FROM cancellation_request_docs "
                  "WHERE ($1::text IS NULL OR status = $1) "
                  "AND ($2::uuid IS NULL OR id > $2::uuid) "
                  "AND ($3::uuid IS NULL OR partner_id = $3::uuid) ORDER BY id LIMIT $4::int",
                  3, p, limit);
}

typedef struct {
    char partner[40];
    char purchase[40];
    char benefit[40]; /* "" for a whole purchase */
    char amount[32];  /* "" for no refund */
    char currency[8];
} pending_request;

/* Locks the request of the URL (after its purchase and benefits, the order
 * every writer takes); answers 404 / 409 when it is not pending. */
static bool lock_pending(mb_ctx *c, bool lock_purchase, pending_request *q)
{
    if (!mb_is_uuid(c->param[0])) {
        mb_reply_problem(c, MB_E_NOT_FOUND, "No such cancellation request.");
        return false;
    }
    static const char sql[] =
        "SELECT partner_id::text, purchase_id::text, benefit_id::text, refund_amount::text, "
        "refund_currency, status FROM cancellation_requests WHERE id = $1::uuid";
    static const char sql_lock[] =
        "SELECT partner_id::text, purchase_id::text, benefit_id::text, refund_amount::text, "
        "refund_currency, status FROM cancellation_requests WHERE id = $1::uuid FOR UPDATE";
    PGresult *r = NULL;
    mb_err e = mb_db_exec(&c->db, &r, sql, 1, c->param);
    if (e == MB_OK && PQntuples(r) == 1 && lock_purchase) {
        char partner[40], purchase[40];
        snprintf(partner, sizeof(partner), "%s", PQgetvalue(r, 0, 0));
        snprintf(purchase, sizeof(purchase), "%s", PQgetvalue(r, 0, 1));
        mb_db_clear(&r);
        if (!mb_lock_purchase(c, partner, purchase))
            return false;
    }
    if (e == MB_OK && (r == NULL || PQntuples(r) == 1)) {
        mb_db_clear(&r);
        e = mb_db_exec(&c->db, &r, sql_lock, 1, c->param);
    }
    if (e != MB_OK) {
        mb_reply_err(c, e);
        return false;
    }
    if (PQntuples(r) != 1) {
        mb_db_clear(&r);
        mb_reply_problem(c, MB_E_NOT_FOUND, "No such cancellation request.");
        return false;
    }
    if (strcmp(PQgetvalue(r, 0, 5), "pending") != 0) {
        mb_reply_problem(c, MB_E_CONFLICT, "This cancellation request is already %s.",
                         PQgetvalue(r, 0, 5));
        mb_db_clear(&r);
        return false;
    }
    snprintf(q->partner, sizeof(q->partner), "%s", PQgetvalue(r, 0, 0));
    snprintf(q->purchase, sizeof(q->purchase), "%s", PQgetvalue(r, 0, 1));
    snprintf(q->benefit, sizeof(q->benefit), "%s", PQgetvalue(r, 0, 2));
    snprintf(q->amount, sizeof(q->amount), "%s", PQgetvalue(r, 0, 3));
    snprintf(q->currency, sizeof(q->currency), "%s", PQgetvalue(r, 0, 4));
    mb_db_clear(&r);
    return true;
}

static void finish(mb_ctx *c, const pending_request *q, const char *type, const char *details)
{
    mb_err e = mb_audit(c, q->partner, type, "cancellation_request", c->param[0], details);
    if (e == MB_OK)
        e = request_event(c, q->partner, type, c->param[0]);
    if (e != MB_OK) {
        mb_reply_err(c, e);
        return;
    }
    mb_reply_doc(c, 200, DOC_SQL, 1, c->param, "cancellation request");
}

/* POST /v1/admin/cancellation-requests/{requestId}/complete */
static void admin_complete(mb_ctx *c)
{
    if (!mb_require(c, MB_ACT_OPERATE))
        return;
    if (!mb_body_empty(c))
        return;
    pending_request q;
    if (!lock_pending(c, true, &q))
        return;
    char summary[160];
    mb_err e = mb_cancel_apply(c, q.purchase, q.benefit[0] ? q.benefit : NULL,
                               q.amount[0] ? q.amount : NULL, q.amount[0] ? q.currency : NULL,
                               summary, sizeof(summary));
    const char *p[] = {c->param[0], mb_actor(c)};
    if (e == MB_OK)
        e = mb_db_exec(&c->db, NULL,
                       "UPDATE cancellation_requests SET status = 'completed', "
                       "processed_by = $2, processed_at = now() WHERE id = $1::uuid",
                       2, p);
    if (e != MB_OK) {
        mb_reply_err(c, e);
        return;
    }
    char details[320];
    if (q.amount[0])
        snprintf(details, sizeof(details),
                 "{\"purchase_id\":\"%s\",\"refund\":{\"amount\":%s,\"currency\":\"%s\"},%s}",
                 q.purchase, q.amount, q.currency, summary);
    else
        snprintf(details, sizeof(details), "{\"purchase_id\":\"%s\",\"refund\":null,%s}",
                 q.purchase, summary);
    finish(c, &q, "cancellation_request.completed", details);
}

/* POST /v1/admin/cancellation-requests/{requestId}/reject */
static void admin_reject(mb_ctx *c)
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
    pending_request q;
    if (!lock_pending(c, false, &q)) {
        json_decref(body);
        return;
    }
    const char *p[] = {c->param[0], mb_actor(c), reason};
    mb_err e = mb_db_exec(&c->db, NULL,
                          "UPDATE cancellation_requests SET status = 'rejected', "
                          "processed_by = $2, processed_at = now(), rejection_reason = $3 "
                          "WHERE id = $1::uuid",
                          3, p);
    json_decref(body);
    if (e != MB_OK) {
        mb_reply_err(c, e);
        return;
    }
    char details[96];
    snprintf(details, sizeof(details), "{\"purchase_id\":\"%s\"}", q.purchase);
    finish(c, &q, "cancellation_request.rejected", details);
}

const mb_route mb_routes_cancellation_requests[] = {
    {"GET", "/v1/partners/:partnerId/cancellation-requests", requests_list, 0},
    {"POST", "/v1/partners/:partnerId/cancellation-requests", request_create, MB_R_TX | MB_R_BODY},
    {"GET", "/v1/partners/:partnerId/cancellation-requests/:requestId", request_get, 0},
    {"GET", "/v1/admin/cancellation-requests", admin_list, 0},
    {"POST", "/v1/admin/cancellation-requests/:requestId/complete", admin_complete,
     MB_R_TX | MB_R_BODY},
    {"POST", "/v1/admin/cancellation-requests/:requestId/reject", admin_reject,
     MB_R_TX | MB_R_BODY},
    {NULL, NULL, NULL, 0},
};
