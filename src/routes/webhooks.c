/* Webhooks of a partner (DESIGN §4b): create (the secret shown once), read,
 * change, delete, rotate the secret (the old one signs for 24 h more) and
 * ping. Deliveries are in webhook_deliveries.c; sending them is the worker's
 * (src/events/worker.c). Global admin and MPN partner admin. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mb_events.h"
#include "mb_http.h"
#include "webhooks.h"

static const char denied[] = "Webhooks are managed by the Global admin and the MPN partner admin. "
                             "Ask your Global admin.";

bool mb_webhook_gate(mb_ctx *c)
{
    if (!(c->who.roles & (MB_ROLE_GLOBAL_ADMIN | MB_ROLE_MPN_PARTNER_ADMIN))) {
        mb_reply_problem(c, MB_E_FORBIDDEN_ROLE, "%s", denied);
        return false;
    }
    return mb_partner_gate(c, c->param[0], false, NULL);
}

/* event_types → a text[] literal of known types ("{}" for all). */
static bool types_literal(const json_t *body, char *out, size_t outlen, mb_verr *ve)
{
    const json_t *a = json_object_get(body, "event_types");
    snprintf(out, outlen, "{}");
    if (a == NULL)
        return true;
    if (!json_is_array(a) || json_array_size(a) > 32)
        goto bad;
    size_t o = 0, i;
    const json_t *v;
    json_array_foreach(a, i, v)
    {
        const char *t = json_string_value(v);
        if (t == NULL || !mb_event_type_known(t) || o + strlen(t) + 3 >= outlen)
            goto bad;
        o += (size_t)snprintf(out + o, outlen - o, "%c%s", o ? ',' : '{', t);
    }
    if (o > 0)
        snprintf(out + o, outlen - o, "}");
    return true;
bad:
    snprintf(ve->field, sizeof(ve->field), "event_types");
    snprintf(ve->message, sizeof(ve->message), "must be an array of event types (empty: all)");
    return false;
}

static bool url_field(const json_t *body, bool required, const char **url, mb_verr *ve)
{
    if (!mb_v_str(body, "url", required, 8, 4096, url, ve))
        return false;
    char why[128];
    if (*url != NULL && !mb_webhook_url_ok(*url, why, sizeof(why))) {
        snprintf(ve->field, sizeof(ve->field), "url");
        snprintf(ve->message, sizeof(ve->message), "%s", why);
        return false;
    }
    return true;
}

static bool audit(mb_ctx *c, const char *action, const char *id, const char *url)
{
    json_t *d = json_pack("{s:s?}", "url", url);
    char *s = d ? json_dumps(d, JSON_COMPACT) : NULL;
    json_decref(d);
    mb_err e = s ? mb_audit(c, c->param[0], action, "webhook", id, s) : MB_E_INTERNAL;
    free(s);
    if (e != MB_OK)
        mb_reply_err(c, e);
    return e == MB_OK;
}

/* Answers the webhook's document, with "secret" added when secret is set. */
static void reply_webhook(mb_ctx *c, int status, const char *id, const char *secret)
{
    const char *p[] = {id};
    PGresult *r = NULL;
    mb_err e = mb_db_exec(&c->db, &r, "SELECT doc FROM webhook_docs WHERE id = $1::uuid", 1, p);
    if (e != MB_OK || PQntuples(r) != 1) {
        mb_db_clear(&r);
        mb_reply_err(c, e != MB_OK ? e : MB_E_INTERNAL);
        return;
    }
    json_t *doc = json_loads(PQgetvalue(r, 0, 0), 0, NULL);
    mb_db_clear(&r);
    if (doc != NULL && secret != NULL)
        json_object_set_new(doc, "secret", json_string(secret));
    if (doc == NULL) {
        mb_reply_err(c, MB_E_INTERNAL);
        return;
    }
    mb_reply_jansson(c, status, doc);
    if (status == 201) {
        char loc[160];
        snprintf(loc, sizeof(loc), "/v1/partners/%s/webhooks/%s", c->param[0], id);
        mb_set_header(c, "Location", loc);
    }
    mb_set_header(c, "Cache-Control", "no-store");
}

/* A new secret: whsec_ + base64 of 32 random bytes. */
static bool new_secret(mb_ctx *c, char *out, size_t outlen)
{
    PGresult *r = NULL;
    mb_err e = mb_db_exec(&c->db, &r, "SELECT 'whsec_' || encode(gen_random_bytes(32), 'base64')",
                          0, NULL);
    if (e == MB_OK)
        snprintf(out, outlen, "%s", PQgetvalue(r, 0, 0));
    mb_db_clear(&r);
    if (e != MB_OK)
        mb_reply_err(c, e);
    return e == MB_OK;
}

static void webhooks_list(mb_ctx *c)
{
    if (!(c->who.roles & (MB_ROLE_GLOBAL_ADMIN | MB_ROLE_MPN_PARTNER_ADMIN))) {
        mb_reply_problem(c, MB_E_FORBIDDEN_ROLE, "%s", denied);
        return;
    }
    mb_reply_partner_page(c, false, NULL, MB_PARTNER_PAGE_SQL("webhook_docs"));
}

static void webhook_get(mb_ctx *c)
{
    if (!(c->who.roles & (MB_ROLE_GLOBAL_ADMIN | MB_ROLE_MPN_PARTNER_ADMIN))) {
        mb_reply_problem(c, MB_E_FORBIDDEN_ROLE, "%s", denied);
        return;
    }
    mb_reply_partner_doc(c, false, NULL, MB_PARTNER_DOC_SQL("webhook_docs"), "webhook");
}

static void webhook_create(mb_ctx *c)
{
    static const char *const known[] = {"url", "event_types", "description", "enabled", NULL};
    if (!mb_webhook_gate(c))
        return;
    const char *key = mb_header(c, "Idempotency-Key");
    if (key != NULL) {
        /* A retry of the request that created it: the same answer, secret
         * included (the idempotency record keeps no secret). */
        const char *p[] = {c->param[0], key, c->cfg->kek};
        PGresult *r = NULL;
        mb_err e = mb_db_exec(&c->db, &r,
                              "SELECT id::text, pgp_sym_decrypt(secret_enc, $3) FROM webhooks "
                              "WHERE partner_id = $1::uuid AND create_key = $2",
                              3, p);
        if (e != MB_OK) {
            mb_reply_err(c, e);
            return;
        }
        if (PQntuples(r) == 1) {
            char id[40], secret[80];
            snprintf(id, sizeof(id), "%s", PQgetvalue(r, 0, 0));
            snprintf(secret, sizeof(secret), "%s", PQgetvalue(r, 0, 1));
            mb_db_clear(&r);
            reply_webhook(c, 201, id, secret);
            return;
        }
        mb_db_clear(&r);
    }
    json_t *body = mb_body(c, false);
    if (body == NULL)
        return;
    mb_verr ve;
    const char *url, *desc = NULL;
    bool enabled = true, present;
    char types[1024];
    if (!mb_v_known(body, known, &ve) || !url_field(body, true, &url, &ve) ||
        !types_literal(body, types, sizeof(types), &ve) ||
        !mb_v_str(body, "description", false, 0, 500, &desc, &ve) ||
        !mb_v_bool(body, "enabled", false, &enabled, &present, &ve)) {
        json_decref(body);
        mb_reply_verr(c, &ve);
        return;
    }
    char secret[80];
    if (!new_secret(c, secret, sizeof(secret))) {
        json_decref(body);
        return;
    }
    const char *p[] = {
        c->param[0], url,         types, desc ? desc : "", enabled ? "true" : "false",
        secret,      c->cfg->kek, key};
    PGresult *r = NULL;
    mb_err e =
        mb_db_exec(&c->db, &r,
                   "INSERT INTO webhooks (partner_id, url, event_types, description, enabled, "
                   "secret_enc, create_key) VALUES ($1::uuid, $2, $3::text[], $4, "
                   "$5::boolean, pgp_sym_encrypt($6, $7), $8) RETURNING id::text",
                   8, p);
    char id[40] = "";
    if (e == MB_OK)
        snprintf(id, sizeof(id), "%s", PQgetvalue(r, 0, 0));
    mb_db_clear(&r);
    if (e != MB_OK) {
        json_decref(body);
        mb_reply_err(c, e);
        return;
    }
    bool ok = audit(c, "webhook.created", id, url);
    json_decref(body);
    if (ok)
        reply_webhook(c, 201, id, secret);
}

static void webhook_update(mb_ctx *c)
{
    static const char *const known[] = {"url", "event_types", "description", "enabled", NULL};
    if (!mb_webhook_gate(c))
        return;
    json_t *body = mb_body(c, false);
    if (body == NULL)
        return;
    mb_verr ve;
    const char *url = NULL, *desc = NULL;
    bool enabled = true, en_present = false;
    char types[1024];
    if (!mb_v_known(body, known, &ve) || !url_field(body, false, &url, &ve) ||
        !types_literal(body, types, sizeof(types), &ve) ||
        !mb_v_str(body, "description", false, 0, 500, &desc, &ve) ||
        !mb_v_bool(body, "enabled", false, &enabled, &en_present, &ve)) {
        json_decref(body);
        mb_reply_verr(c, &ve);
        return;
    }
    bool has_types = json_object_get(body, "event_types") != NULL;
    const char *p[] = {c->param[0], mb_is_uuid(c->param[1]) ? c->param[1] : NULL,
                       url,         has_types ? types : NULL,
                       desc,        en_present ? (enabled ? "true" : "false") : NULL};
    PGresult *r = NULL;
    /* Enabling again starts afresh: no failure streak, no reason. */
    mb_err e = mb_db_exec(&c->db, &r,
                          "UPDATE webhooks SET url = COALESCE($3, url), "
                          "event_types = COALESCE($4::text[], event_types), "
                          "description = COALESCE($5, description), "
                          "enabled = COALESCE($6::boolean, enabled), "
                          "disabled_reason = CASE WHEN $6::boolean THEN NULL "
                          "ELSE disabled_reason END, "
                          "failing_since = CASE WHEN $6::boolean THEN NULL ELSE failing_since END, "
                          "updated_at = now() "
                          "WHERE partner_id = $1::uuid AND id = $2::uuid RETURNING url",
                          6, p);
    bool found = e == MB_OK && PQntuples(r) == 1;
    char cur[MB_WEBHOOK_URL_MAX + 1] = "";
    if (found)
        snprintf(cur, sizeof(cur), "%s", PQgetvalue(r, 0, 0));
    mb_db_clear(&r);
    json_decref(body);
    if (e != MB_OK)
        mb_reply_err(c, e);
    else if (!found)
        mb_reply_problem(c, MB_E_NOT_FOUND, "No such webhook.");
    else if (audit(c, "webhook.updated", c->param[1], cur))
        reply_webhook(c, 200, c->param[1], NULL);
}

static void webhook_delete(mb_ctx *c)
{
    if (!mb_webhook_gate(c))
        return;
    const char *p[] = {c->param[0], mb_is_uuid(c->param[1]) ? c->param[1] : NULL};
    PGresult *r = NULL;
    mb_err e = mb_db_exec(&c->db, &r,
                          "DELETE FROM webhooks WHERE partner_id = $1::uuid AND id = $2::uuid "
                          "RETURNING url",
                          2, p);
    bool found = e == MB_OK && PQntuples(r) == 1;
    char url[MB_WEBHOOK_URL_MAX + 1] = "";
    if (found)
        snprintf(url, sizeof(url), "%s", PQgetvalue(r, 0, 0));
    mb_db_clear(&r);
    if (e != MB_OK)
        mb_reply_err(c, e);
    else if (!found)
        mb_reply_problem(c, MB_E_NOT_FOUND, "No such webhook.");
    else if (audit(c, "webhook.deleted", c->param[1], url))
        mb_reply_empty(c, 204);
}

static void webhook_rotate(mb_ctx *c)
{
    if (!mb_webhook_gate(c))
        return;
    json_t *body = mb_body(c, true);
    if (body == NULL)
        return;
    bool empty = json_object_size(body) == 0;
    json_decref(body);
    if (!empty) {
        mb_reply_problem(c, MB_E_VALIDATION, "This request takes no fields.");
        return;
    }
    const char *key = mb_header(c, "Idempotency-Key");
    const char *id = mb_is_uuid(c->param[1]) ? c->param[1] : NULL;
    char secret[80];
    if (!new_secret(c, secret, sizeof(secret)))
        return;
    /* A retry of the rotation that made the current secret answers it again;
     * otherwise the current secret becomes the previous one for 24 h. */
    const char *p[] = {c->param[0], id, secret, c->cfg->kek, key};
    PGresult *r = NULL;
    mb_err e =
        mb_db_exec(&c->db, &r,
                   "WITH w AS (SELECT id, rotate_key, secret_enc FROM webhooks "
                   "WHERE partner_id = $1::uuid AND id = $2::uuid FOR UPDATE), "
                   "u AS (UPDATE webhooks x SET old_secret_enc = w.secret_enc, "
                   "old_until = now() + interval '24 hours', secret_enc = pgp_sym_encrypt($3, $4), "
                   "rotate_key = $5, updated_at = now() FROM w WHERE x.id = w.id "
                   "AND ($5::text IS NULL OR w.rotate_key IS DISTINCT FROM $5) RETURNING x.id) "
                   "SELECT CASE WHEN EXISTS (SELECT 1 FROM u) THEN $3 "
                   "ELSE pgp_sym_decrypt(w.secret_enc, $4) END, EXISTS (SELECT 1 FROM u) FROM w",
                   5, p);
    bool found = e == MB_OK && PQntuples(r) == 1;
    bool rotated = found && PQgetvalue(r, 0, 1)[0] == 't';
    if (found)
        snprintf(secret, sizeof(secret), "%s", PQgetvalue(r, 0, 0));
    mb_db_clear(&r);
    if (e != MB_OK)
        mb_reply_err(c, e);
    else if (!found)
        mb_reply_problem(c, MB_E_NOT_FOUND, "No such webhook.");
    else if (!rotated || audit(c, "webhook.secret_rotated", c->param[1], NULL))
        reply_webhook(c, 200, c->param[1], secret);
}

static void webhook_ping(mb_ctx *c)
{
    if (!mb_webhook_gate(c))
        return;
    json_t *body = mb_body(c, true);
    if (body == NULL)
        return;
    json_decref(body);
    const char *p[] = {c->param[0], mb_is_uuid(c->param[1]) ? c->param[1] : NULL, c->request_id};
    PGresult *r = NULL;
    mb_err e = mb_db_exec(
        &c->db, &r,
        "WITH n AS (SELECT 'ping_' || replace(gen_random_uuid()::text, '-', '') AS eid) "
        "INSERT INTO webhook_deliveries (webhook_id, partner_id, event_id, event_type, payload) "
        "SELECT w.id, w.partner_id, n.eid, 'webhook.ping', "
        "jsonb_build_object('id', n.eid, 'type', 'webhook.ping', 'occurred_at', now(), "
        "'partner_id', w.partner_id, 'subject', jsonb_build_object('type', 'webhook', 'id', w.id), "
        "'data', jsonb_build_object('webhook_id', w.id, 'url', w.url), 'request_id', $3::text) "
        "FROM webhooks w, n WHERE w.partner_id = $1::uuid AND w.id = $2::uuid "
        "RETURNING id::text",
        3, p);
    bool found = e == MB_OK && PQntuples(r) == 1;
    char did[40] = "";
    if (found)
        snprintf(did, sizeof(did), "%s", PQgetvalue(r, 0, 0));
    mb_db_clear(&r);
    if (e != MB_OK) {
        mb_reply_err(c, e);
        return;
    }
    if (!found) {
        mb_reply_problem(c, MB_E_NOT_FOUND, "No such webhook.");
        return;
    }
    if (!audit(c, "webhook.pinged", c->param[1], NULL))
        return;
    const char *dp[] = {did};
    mb_reply_doc(c, 202, "SELECT doc FROM webhook_delivery_docs WHERE id = $1::uuid", 1, dp,
                 "delivery");
}

const mb_route mb_routes_webhooks[] = {
    {"GET", "/v1/partners/:partnerId/webhooks", webhooks_list, 0},
    {"POST", "/v1/partners/:partnerId/webhooks", webhook_create, MB_R_TX | MB_R_BODY | MB_R_SECRET},
    {"GET", "/v1/partners/:partnerId/webhooks/:webhookId", webhook_get, 0},
    {"PATCH", "/v1/partners/:partnerId/webhooks/:webhookId", webhook_update, MB_R_TX | MB_R_BODY},
    {"DELETE", "/v1/partners/:partnerId/webhooks/:webhookId", webhook_delete, MB_R_TX},
    {"POST", "/v1/partners/:partnerId/webhooks/:webhookId/rotate-secret", webhook_rotate,
     MB_R_TX | MB_R_BODY | MB_R_SECRET},
    {"POST", "/v1/partners/:partnerId/webhooks/:webhookId/ping", webhook_ping, MB_R_TX | MB_R_BODY},
    {NULL, NULL, NULL, 0},
};
