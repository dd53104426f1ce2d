/* The deliveries of a webhook, newest first, and a manual retry (DESIGN §4b). */
#include <stdio.h>
#include <string.h>

#include "mb_events.h"
#include "mb_http.h"
#include "webhooks.h"

static void deliveries_list(mb_ctx *c)
{
    if (!mb_webhook_gate(c))
        return;
    int limit;
    char after[64];
    if (!mb_page_args(c, &limit, after, sizeof(after), false))
        return;
    const char *wid = mb_is_uuid(c->param[1]) ? c->param[1] : NULL;
    const char *p0[] = {c->param[0], wid};
    PGresult *r = NULL;
    mb_err e = mb_db_exec(
        &c->db, &r, "SELECT 1 FROM webhooks WHERE partner_id = $1::uuid AND id = $2::uuid", 2, p0);
    bool found = e == MB_OK && PQntuples(r) == 1;
    mb_db_clear(&r);
    if (e != MB_OK) {
        mb_reply_err(c, e);
        return;
    }
    if (!found) {
        mb_reply_problem(c, MB_E_NOT_FOUND, "No such webhook.");
        return;
    }
    const char *p[] = {wid, after[0] ? after : NULL};
    mb_reply_list(c,
                  "SELECT d.doc, d.id::text FROM webhook_delivery_docs d "
                  "WHERE d.webhook_id = $1::uuid AND ($2::uuid IS NULL OR "
                  "(d.created_at, d.id) < (SELECT created_at, id FROM webhook_deliveries "
                  "WHERE id = $2::uuid)) ORDER BY d.created_at DESC, d.id DESC LIMIT $3::int",
                  2, p, limit);
}

static void delivery_retry(mb_ctx *c)
{
    if (!mb_webhook_gate(c))
        return;
    json_t *body = mb_body(c, true);
    if (body == NULL)
        return;
    json_decref(body);
    const char *p[] = {c->param[0], mb_is_uuid(c->param[1]) ? c->param[1] : NULL,
                       mb_is_uuid(c->param[2]) ? c->param[2] : NULL};
    PGresult *r = NULL;
    /* Due now, one more attempt; it goes on with the schedule from there. */
    mb_err e =
        mb_db_exec(&c->db, &r,
                   "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = now(), "
                   "claimed_until = NULL WHERE partner_id = $1::uuid AND webhook_id = $2::uuid "
                   "AND id = $3::uuid RETURNING event_id",
                   3, p);
    bool found = e == MB_OK && PQntuples(r) == 1;
    mb_db_clear(&r);
    if (e != MB_OK) {
        mb_reply_err(c, e);
        return;
    }
    if (!found) {
        mb_reply_problem(c, MB_E_NOT_FOUND, "No such delivery.");
        return;
    }
    e = mb_audit(c, c->param[0], "webhook.delivery_retried", "webhook", c->param[1], NULL);
    if (e != MB_OK) {
        mb_reply_err(c, e);
        return;
    }
    mb_reply_doc(c, 202, "SELECT doc FROM webhook_delivery_docs WHERE id = $1::uuid", 1, p + 2,
                 "delivery");
}

const mb_route mb_routes_webhook_deliveries[] = {
    {"GET", "/v1/partners/:partnerId/webhooks/:webhookId/deliveries", deliveries_list, 0},
    {"POST", "/v1/partners/:partnerId/webhooks/:webhookId/deliveries/:deliveryId/retry",
     delivery_retry, MB_R_TX | MB_R_BODY},
    {NULL, NULL, NULL, 0},
};
