/* Cancellation with refund (R10): within 30 days of purchase and while no
 * software benefit of the purchase has been activated (a key revealed). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mb_events.h"
#include "mb_http.h"

/* What the refund rule reads of a purchase: its state, the seconds since
 * purchased_at, whether a software key of it was handed out, the end of the
 * window. The benefits' row locks (when taken) make the key check see every
 * committed reveal and keep new reveals out until the transaction ends. */
static const char facts_sql[] =
    "SELECT pu.status, pu.status = 'active' AND pu.term_end > now(), "
    "floor(extract(epoch FROM now() - pu.purchased_at))::bigint, "
    "EXISTS (SELECT 1 FROM license_keys lk JOIN benefits b ON b.id = lk.benefit_id "
    "        WHERE b.purchase_id = pu.id AND b.category = 'software') "
    "OR EXISTS (SELECT 1 FROM key_reveals kr JOIN benefits b ON b.id = kr.benefit_id "
    "        WHERE b.purchase_id = pu.id AND b.category = 'software'), "
    "to_json(pu.purchased_at + interval '30 days') #>> '{}' "
    "FROM purchases pu WHERE pu.partner_id = $1::uuid AND pu.id = $2::uuid";

typedef struct {
    char status[16];
    bool active;
    long long age;
    bool software;
    char window_ends_at[48];
} facts;

/* Reads the facts; answers 404 (or the store error) and returns false. */
static bool read_facts(mb_ctx *c, facts *f)
{
    PGresult *r = NULL;
    mb_err e = mb_db_exec(&c->db, &r, facts_sql, 2, c->param);
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
    mb_db_clear(&r);
    return true;
}

static bool ids_ok(mb_ctx *c)
{
    if (mb_is_uuid(c->param[1]))
        return true;
    mb_reply_problem(c, MB_E_NOT_FOUND, "No such purchase.");
    return false;
}

static void eligibility(mb_ctx *c)
{
    if (!(c->who.roles & MB_ROLE_OPERATOR) && !mb_require(c, MB_ACT_CANCEL))
        return;
    if (!mb_partner_gate(c, c->param[0], true, NULL) || !ids_ok(c))
        return;
    facts f;
    if (!read_facts(c, &f))
        return;
    const char *reasons[3];
    int n = mb_refund_reasons(f.age, f.software, f.active, reasons);
    json_t *list = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(list, json_string(reasons[i]));
    mb_reply_jansson(c, 200,
                     json_pack("{s:s, s:b, s:o, s:s}", "purchase_id", c->param[1], "eligible",
                               n == 0, "reasons", list, "window_ends_at", f.window_ends_at));
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

static void cancellation(mb_ctx *c)
{
    if (!mb_require(c, MB_ACT_CANCEL) || !mb_partner_gate(c, c->param[0], true, NULL) || !ids_ok(c))
        return;
    json_t *body = mb_body(c, true);
    if (body == NULL)
        return;
    static const char *const no_fields[] = {NULL};
    mb_verr verr;
    bool ok = mb_v_known(body, no_fields, &verr);
    json_decref(body);
    if (!ok) {
        mb_reply_verr(c, &verr);
        return;
    }
    /* Lock the purchase, then its benefits (in id order, as everyone does):
     * a key reveal or a seat assignment in flight finishes first, and later
     * ones find the benefit cancelled. */
    PGresult *r = NULL;
    mb_err e = mb_db_exec(&c->db, &r,
                          "SELECT 1 FROM purchases WHERE partner_id = $1::uuid AND id = $2::uuid "
                          "FOR UPDATE",
                          2, c->param);
    if (e != MB_OK) {
        mb_reply_err(c, e);
        return;
    }
    bool found = PQntuples(r) == 1;
    mb_db_clear(&r);
    if (!found) {
        mb_reply_problem(c, MB_E_NOT_FOUND, "No such purchase.");
        return;
    }
    e = mb_db_exec(&c->db, NULL,
                   "SELECT 1 FROM benefits WHERE purchase_id = $1::uuid ORDER BY id FOR UPDATE", 1,
                   c->param + 1);
    if (e != MB_OK) {
        mb_reply_err(c, e);
        return;
    }
    facts f;
    if (!read_facts(c, &f))
        return;
    if (strcmp(f.status, "cancelled") == 0) {
        mb_reply_problem(c, MB_E_ALREADY_CANCELLED, "This purchase is already cancelled.");
        return;
    }
    const char *reasons[3];
    int n = mb_refund_reasons(f.age, f.software, f.active, reasons);
    if (n > 0) {
        json_t *list = json_array();
        for (int i = 0; i < n; i++)
            json_array_append_new(list, json_string(reasons[i]));
        mb_reply_problem_x(c, reason_err(reasons[0]), json_pack("{s:o}", "reasons", list),
                           "No cancellation with refund: %s%s. A refund is possible within 30 "
                           "days of purchase (until %s) while no software benefit has been "
                           "activated.",
                           reason_text(reasons[0]), n > 1 ? " (and more: see reasons)" : "",
                           f.window_ends_at);
        return;
    }

    e = mb_db_exec(&c->db, &r,
                   "UPDATE purchases pu SET status = 'cancelled', cancelled_at = now(), "
                   "refund_amount = pk.price, refund_currency = pk.currency FROM packages pk "
                   "WHERE pu.id = $2::uuid AND pu.partner_id = $1::uuid AND pk.id = pu.package_id "
                   "RETURNING pk.price::text, pk.currency",
                   2, c->param);
    if (e != MB_OK || PQntuples(r) != 1) {
        mb_db_clear(&r);
        mb_reply_err(c, e != MB_OK ? e : MB_E_INTERNAL);
        return;
    }
    char amount[32], currency[8];
    snprintf(amount, sizeof(amount), "%s", PQgetvalue(r, 0, 0));
    snprintf(currency, sizeof(currency), "%s", PQgetvalue(r, 0, 1));
    mb_db_clear(&r);

    const char *p[] = {c->param[1], mb_actor(c)};
    e = mb_db_exec(&c->db, &r,
                   "WITH rejected AS ("
                   "  UPDATE activations SET status = 'rejected', reason = 'purchase cancelled', "
                   "  processed_at = now(), processed_by = $2 WHERE status = 'pending' "
                   "  AND benefit_id IN (SELECT id FROM benefits WHERE purchase_id = $1::uuid) "
                   "  RETURNING 1), "
                   "released AS ("
                   "  DELETE FROM seat_assignments WHERE benefit_id IN "
                   "  (SELECT id FROM benefits WHERE purchase_id = $1::uuid) RETURNING 1) "
                   "SELECT (SELECT count(*) FROM rejected), (SELECT count(*) FROM released)",
                   2, p);
    if (e != MB_OK) {
        mb_reply_err(c, e);
        return;
    }
    char rejected[24], released[24];
    snprintf(rejected, sizeof(rejected), "%s", PQgetvalue(r, 0, 0));
    snprintf(released, sizeof(released), "%s", PQgetvalue(r, 0, 1));
    mb_db_clear(&r);
    e = mb_db_exec(&c->db, &r,
                   "UPDATE benefits SET status = 'cancelled' WHERE purchase_id = $1::uuid "
                   "RETURNING 1",
                   1, p);
    if (e != MB_OK) {
        mb_reply_err(c, e);
        return;
    }
    int benefits = PQntuples(r);
    mb_db_clear(&r);

    char details[256];
    snprintf(details, sizeof(details),
             "{\"refund\":{\"amount\":%s,\"currency\":\"%s\"},\"benefits_cancelled\":%d,"
             "\"seats_released\":%s,\"activations_rejected\":%s}",
             amount, currency, benefits, released, rejected);
    e = mb_audit(c, c->param[0], "purchase.cancelled", "purchase", c->param[1], details);
    if (e == MB_OK)
        e = mb_event(&c->db, c->param[0], "purchase.cancelled", "purchase", c->param[1],
                     c->request_id, NULL);
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
