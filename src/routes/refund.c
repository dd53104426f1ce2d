/* Cancellation with refund (R10): within 30 days of purchase and while no
 * software benefit of the purchase has been activated (a key revealed). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mb_events.h"
#include "mb_http.h"
#include "refund.h"

/* What the refund rule reads of a purchase: its state, the seconds since
 * purchased_at, whether a software key of it was handed out, the end of the
 * window, the price. The benefits' row locks (when taken) make the key check
 * see every committed reveal and keep new reveals out until the transaction
 * ends. */
static const char facts_sql[] =
    "SELECT pu.status, pu.status = 'active' AND pu.term_end > now(), "
    "floor(extract(epoch FROM now() - pu.purchased_at))::bigint, "
    "EXISTS (SELECT 1 FROM license_keys lk JOIN benefits b ON b.id = lk.benefit_id "
    "        WHERE b.purchase_id = pu.id AND b.category = 'software') "
    "OR EXISTS (SELECT 1 FROM key_reveals kr JOIN benefits b ON b.id = kr.benefit_id "
    "        WHERE b.purchase_id = pu.id AND b.category = 'software'), "
    "to_json(pu.purchased_at + interval '30 days') #>> '{}', pk.price::text, pk.currency "
    "FROM purchases pu JOIN packages pk ON pk.id = pu.package_id "
    "WHERE pu.partner_id = $1::uuid AND pu.id = $2::uuid";

bool mb_refund_facts_read(mb_ctx *c, const char *partner_id, const char *purchase_id,
                          mb_refund_facts *f)
{
    memset(f, 0, sizeof(*f));
    if (!mb_is_uuid(purchase_id)) {
        mb_reply_problem(c, MB_E_NOT_FOUND, "No such purchase.");
        return false;
    }
    const char *p[] = {partner_id, purchase_id};
    PGresult *r = NULL;
    mb_err e = mb_db_exec(&c->db, &r, facts_sql, 2, p);
    if (e != MB_OK) {
        mb_reply_err(c, e);
        return false;
    }
    if (PQntuples(r) != 1) {
        mb_db_clear(&r);
        mb_reply_problem(c, MB_E_NOT_FOUND, "No such purchase.");
        return false;
    }
    snprintf(f->status, sizeof(f->status), "%s", PQgetvalue(r, 0, 0));
    f->active = strcmp(PQgetvalue(r, 0, 1), "t") == 0;
    f->age = strtoll(PQgetvalue(r, 0, 2), NULL, 10);
    f->software = strcmp(PQgetvalue(r, 0, 3), "t") == 0;
    snprintf(f->window_ends_at, sizeof(f->window_ends_at), "%s", PQgetvalue(r, 0, 4));
    snprintf(f->price, sizeof(f->price), "%s", PQgetvalue(r, 0, 5));
    snprintf(f->currency, sizeof(f->currency), "%s", PQgetvalue(r, 0, 6));
    mb_db_clear(&r);
    return true;
}

int mb_refund_facts_reasons(const mb_refund_facts *f, const char *reasons[3])
{
    return mb_refund_reasons(f->age, f->software, f->active, reasons);
}

static mb_err reason_err(const char *code)
{
    if (strcmp(code, "refund-window-expired") == 0)
        return MB_E_REFUND_WINDOW_EXPIRED;
    if (strcmp(code, "software-benefits-activated") == 0)
        return MB_E_SOFTWARE_ACTIVATED;
    return MB_E_PURCHASE_NOT_ACTIVE;
}

static const char *reason_text(const char *code)
{
    if (strcmp(code, "refund-window-expired") == 0)
        return "the purchase is more than 30 days old";
    if (strcmp(code, "software-benefits-activated") == 0)
        return "a software benefit of it has been activated (a key was revealed)";
    return "the purchase is not active";
}

void mb_reply_no_refund(mb_ctx *c, const char *const *reasons, int n, const char *window_ends_at,
                        const char *hint)
{
    json_t *list = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(list, json_string(reasons[i]));
    mb_reply_problem_x(c, reason_err(reasons[0]), json_pack("{s:o}", "reasons", list),
                       "No cancellation with refund: %s%s. A refund is possible within 30 "
                       "days of purchase (until %s) while no software benefit has been "
                       "activated.%s",
                       reason_text(reasons[0]), n > 1 ? " (and more: see reasons)" : "",
                       window_ends_at, hint ? hint : "");
}

bool mb_lock_purchase(mb_ctx *c, const char *partner_id, const char *purchase_id)
{
    if (!mb_is_uuid(purchase_id)) {
        mb_reply_problem(c, MB_E_NOT_FOUND, "No such purchase.");
        return false;
    }
    const char *p[] = {partner_id, purchase_id};
    PGresult *r = NULL;
    mb_err e = mb_db_exec(&c->db, &r,
                          "SELECT 1 FROM purchases WHERE partner_id = $1::uuid AND id = $2::uuid "
                          "FOR UPDATE",
                          2, p);
    if (e != MB_OK) {
        mb_reply_err(c, e);
        return false;
    }
    bool found = PQntuples(r) == 1;
    mb_db_clear(&r);
    if (!found) {
        mb_reply_problem(c, MB_E_NOT_FOUND, "No such purchase.");
        return false;
    }
    e = mb_db_exec(&c->db, NULL,
                   "SELECT 1 FROM benefits WHERE purchase_id = $1::uuid ORDER BY id FOR UPDATE", 1,
                   p + 1);
    if (e != MB_OK) {
        mb_reply_err(c, e);
        return false;
    }
    return true;
}

const char MB_PENDING_CANCELLATION_OF_BENEFIT_SQL[] =
    "SELECT id::text FROM cancellation_requests WHERE purchase_id = "
    "(SELECT purchase_id FROM benefits WHERE id = $1::uuid) AND status = 'pending'";

bool mb_no_pending_cancellation_in(mb_ctx *c, const PGresult *r)
{
    if (PQntuples(r) == 0)
        return true;
    mb_reply_problem_x(c, MB_E_CANCELLATION_PENDING,
                       json_pack("{s:s}", "cancellation_request_id", PQgetvalue(r, 0, 0)),
                       "A cancellation of this purchase is pending (request %s): its keys, "
                       "seats and activations wait until an operator completes or rejects it.",
                       PQgetvalue(r, 0, 0));
    return false;
}

bool mb_no_pending_cancellation(mb_ctx *c, const char *purchase_id)
{
    const char *p[] = {purchase_id};
    PGresult *r = NULL;
    mb_err e = mb_db_exec(&c->db, &r,
                          "SELECT id::text FROM cancellation_requests "
                          "WHERE purchase_id = $1::uuid AND status = 'pending'",
                          1, p);
    if (e != MB_OK) {
        mb_reply_err(c, e);
        return false;
    }
    bool ok = mb_no_pending_cancellation_in(c, r);
    mb_db_clear(&r);
    return ok;
}

mb_err mb_cancel_apply(mb_ctx *c, const char *purchase_id, const char *benefit_id,
                       const char *amount, const char *currency, char *summary, size_t n)
{
    PGresult *r = NULL;
    mb_err e = MB_OK;
    if (benefit_id == NULL) {
        const char *pu[] = {purchase_id, amount, currency};
        e = mb_db_exec(&c->db, NULL,
                       "UPDATE purchases SET status = 'cancelled', cancelled_at = now(), "
                       "refund_amount = $2::numeric, refund_currency = $3 WHERE id = $1::uuid",
                       3, pu);
        if (e != MB_OK)
            return e;
    }
    /* $3: the benefits cancelled, the whole purchase's or the one named */
    const char *p[] = {purchase_id, mb_actor(c), benefit_id};
    e = mb_db_exec(&c->db, &r,
                   "WITH target AS (SELECT id FROM benefits WHERE purchase_id = $1::uuid "
                   "  AND ($3::uuid IS NULL OR id = $3::uuid)), "
                   "rejected AS ("
                   "  UPDATE activations SET status = 'rejected', reason = CASE WHEN $3::uuid "
                   "  IS NULL THEN 'purchase cancelled' ELSE 'benefit cancelled' END, "
                   "  processed_at = now(), processed_by = $2 WHERE status = 'pending' "
                   "  AND benefit_id IN (SELECT id FROM target) RETURNING 1), "
                   "released AS ("
                   "  DELETE FROM seat_assignments WHERE benefit_id IN "
                   "  (SELECT id FROM target) RETURNING 1), "
                   "cancelled AS ("
                   "  UPDATE benefits SET status = 'cancelled' WHERE id IN "
                   "  (SELECT id FROM target) RETURNING 1) "
                   "SELECT (SELECT count(*) FROM cancelled), (SELECT count(*) FROM released), "
                   "(SELECT count(*) FROM rejected)",
                   3, p);
    if (e != MB_OK)
        return e;
    snprintf(summary, n,
             "\"benefits_cancelled\":%s,\"seats_released\":%s,\"activations_rejected\":%s",
             PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 2));
    mb_db_clear(&r);
    return MB_OK;
}

static void eligibility(mb_ctx *c)
{
    if (!(c->who.roles & MB_ROLE_OPERATOR) && !mb_require(c, MB_ACT_CANCEL))
        return;
    if (!mb_partner_gate(c, c->param[0], true, NULL))
        return;
    mb_refund_facts f;
    if (!mb_refund_facts_read(c, c->param[0], c->param[1], &f))
        return;
    const char *reasons[3];
    int n = mb_refund_facts_reasons(&f, reasons);
    json_t *list = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(list, json_string(reasons[i]));
    mb_reply_jansson(c, 200,
                     json_pack("{s:s, s:b, s:o, s:s}", "purchase_id", c->param[1], "eligible",
                               n == 0, "reasons", list, "window_ends_at", f.window_ends_at));
}

/* POST .../purchases/{purchaseId}/cancellation: the self-service shortcut for
 * a whole purchase that is refundable now (cancellation_requests.c for the
 * rest). */
static void cancellation(mb_ctx *c)
{
    if (!mb_require(c, MB_ACT_CANCEL) || !mb_partner_gate(c, c->param[0], true, NULL))
        return;
    if (!mb_is_uuid(c->param[1])) {
        mb_reply_problem(c, MB_E_NOT_FOUND, "No such purchase.");
        return;
    }
    if (!mb_body_empty(c))
        return;
    mb_refund_facts f;
    if (!mb_lock_purchase(c, c->param[0], c->param[1]) ||
        !mb_refund_facts_read(c, c->param[0], c->param[1], &f))
        return;
    if (strcmp(f.status, "cancelled") == 0) {
        mb_reply_problem(c, MB_E_ALREADY_CANCELLED, "This purchase is already cancelled.");
        return;
    }
    if (!mb_no_pending_cancellation(c, c->param[1]))
        return;
    const char *reasons[3];
    int n = mb_refund_facts_reasons(&f, reasons);
    if (n > 0) {
        mb_reply_no_refund(c, reasons, n, f.window_ends_at, NULL);
        return;
    }
    char summary[160], details[256];
    mb_err e = mb_cancel_apply(c, c->param[1], NULL, f.price, f.currency, summary, sizeof(summary));
    snprintf(details, sizeof(details), "{\"refund\":{\"amount\":%s,\"currency\":\"%s\"},%s}",
             f.price, f.currency, summary);
    if (e == MB_OK)
        e = mb_audit(c, c->param[0], "purchase.cancelled", "purchase", c->param[1], details);
    if (e == MB_OK)
        e = mb_event(&c->db, c->param[0], "purchase.cancelled", "purchase", c->param[1],
                     c->request_id, NULL);
    const char *p[] = {c->param[1]};
    PGresult *r = NULL;
    if (e == MB_OK)
        e = mb_db_exec(&c->db, &r, "SELECT doc FROM purchase_docs WHERE id = $1::uuid", 1, p);
    if (e != MB_OK) {
        mb_reply_err(c, e);
        return;
    }
    mb_reply_json(c, 200, PQgetvalue(r, 0, 0), (size_t)PQgetlength(r, 0, 0));
    mb_db_clear(&r);
}

const mb_route mb_routes_refund[] = {
    {"GET", "/v1/partners/:partnerId/purchases/:purchaseId/refund-eligibility", eligibility, 0},
    {"POST", "/v1/partners/:partnerId/purchases/:purchaseId/cancellation", cancellation,
     MB_R_TX | MB_R_BODY},
    {NULL, NULL, NULL, 0},
};
