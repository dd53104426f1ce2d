/* License keys: the operator loads a product's key pool, and a partner's
 * Global admin or MPN partner admin reveals the keys of a software or
 * license-based cloud benefit (R4-R6).
 *
 * Keys are encrypted at rest with pgcrypto under KEY_ENCRYPTION_KEY (the KEK
 * goes to PostgreSQL as a query parameter only); key_mac, an HMAC under the
 * same key, finds duplicates without decrypting. No key is ever written to a
 * log, an audit event or an idempotency record (MB_R_SECRET). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mb_events.h"
#include "mb_http.h"
#include "mb_store.h"
#include "refund.h"

#define KEYS_MAX 1000
#define KEY_MAX_CHARS 200

/* A category whose benefits hand out keys. */
static bool has_keys(const char *category, const char *cloud_kind)
{
    return strcmp(category, "software") == 0 ||
           (strcmp(category, "cloud") == 0 && strcmp(cloud_kind, "license_based") == 0);
}

/* UTF-8 characters of s (jansson has already checked the encoding). */
static size_t utf8_chars(const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80)
            n++;
    return n;
}

/* Checks the body {keys: [1..1000 strings of 1..200 printable characters]}. */
static bool keys_valid(const json_t *body, mb_verr *e)
{
    static const char *const known[] = {"keys", NULL};
    if (!mb_v_known(body, known, e))
        return false;
    const json_t *keys = json_object_get(body, "keys");
    snprintf(e->field, sizeof(e->field), "keys");
    if (keys == NULL || json_is_null(keys)) {
        snprintf(e->message, sizeof(e->message), "is required");
        return false;
    }
    if (!json_is_array(keys) || json_array_size(keys) < 1 || json_array_size(keys) > KEYS_MAX) {
        snprintf(e->message, sizeof(e->message), "must be an array of 1 to %d keys", KEYS_MAX);
        return false;
    }
    size_t i;
    const json_t *k;
    json_array_foreach(keys, i, k)
    {
        snprintf(e->field, sizeof(e->field), "keys[%zu]", i);
        if (!json_is_string(k)) {
            snprintf(e->message, sizeof(e->message), "must be a string");
            return false;
        }
        const char *s = json_string_value(k);
        size_t len = json_string_length(k);
        size_t chars = utf8_chars(s, len);
        if (chars < 1 || chars > KEY_MAX_CHARS) {
            snprintf(e->message, sizeof(e->message), "must be 1 to %d characters", KEY_MAX_CHARS);
            return false;
        }
        for (size_t j = 0; j < len; j++) {
            unsigned char ch = (unsigned char)s[j];
            if (ch < 0x20 || ch == 0x7f) {
                snprintf(e->message, sizeof(e->message), "must not contain control characters");
                return false;
            }
        }
    }
    return true;
}

/* POST /v1/admin/products/{productId}/keys */
static void keys_load(mb_ctx *c)
{
    if (!mb_require(c, MB_ACT_OPERATE))
        return;
    const char *product_id = c->param[0];
    if (!mb_is_uuid(product_id)) {
        mb_reply_problem(c, MB_E_NOT_FOUND, "No such product.");
        return;
    }
    /* issue 14: a text/csv file (src/routes/keys_csv.c) may be larger than
     * MAX_BODY_KB (MB_R_CSV_BODY); a JSON body may not. */
    const char *ct = mb_header(c, "Content-Type");
    bool csv = ct != NULL && strncasecmp(ct, "text/csv", 8) == 0 &&
               (ct[8] == '\0' || ct[8] == ';' || ct[8] == ' ');
    if (!csv && c->req->binary_body_length > c->cfg->max_body) {
        mb_reply_problem(c, MB_E_PAYLOAD_TOO_LARGE, "The body is larger than %zu bytes.",
                         c->cfg->max_body);
        return;
    }
    size_t total = 0;
    char *keys_json = NULL;
    if (!csv) {
        json_t *body = mb_body(c, false);
        if (body == NULL)
            return;
        mb_verr verr;
        if (!keys_valid(body, &verr)) {
            json_decref(body);
            mb_reply_verr(c, &verr);
            return;
        }
        total = json_array_size(json_object_get(body, "keys"));
        keys_json = json_dumps(json_object_get(body, "keys"), JSON_COMPACT);
        json_decref(body);
        if (keys_json == NULL) {
            mb_reply_err(c, MB_E_INTERNAL);
            return;
        }
    }

    PGresult *r = NULL;
    const char *pp[] = {product_id};
    /* Lock the product row against concurrent catalog changes; FOR NO KEY
     * UPDATE leaves foreign-key checks (purchases, keys) unblocked. */
    mb_err e = mb_db_exec(&c->db, &r,
                          "SELECT category, COALESCE(cloud_kind, ''), name FROM products "
                          "WHERE id = $1::uuid FOR NO KEY UPDATE",
                          1, pp);
    if (e != MB_OK) {
        free(keys_json);
        mb_reply_err(c, e);
        return;
    }
    if (PQntuples(r) != 1) {
        mb_db_clear(&r);
        free(keys_json);
        mb_reply_problem(c, MB_E_NOT_FOUND, "No such product.");
        return;
    }
    bool ok = has_keys(PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1));
    mb_db_clear(&r);
    if (!ok) {
        free(keys_json);
        mb_reply_problem_x(c, MB_E_VALIDATION,
                           json_pack("{s:[{s:s,s:s}]}", "errors", "field", "productId", "message",
                                     "takes no keys"),
                           "Key pools exist for software and license-based cloud products only.");
        return;
    }
    if (csv) {
        mb_keys_import_csv(c, product_id);
        return;
    }

    /* Duplicates (already in the pool, or twice in this request) are skipped
     * by the unique (product_id, key_mac) index. */
    const char *ip[] = {product_id, c->cfg->kek, keys_json};
    e = mb_db_exec(&c->db, &r,
                   "WITH ins AS (INSERT INTO license_keys (product_id, key_enc, key_mac) "
                   "SELECT $1::uuid, pgp_sym_encrypt(t.k, $2), hmac(t.k, $2, 'sha256') "
                   "FROM json_array_elements_text($3::json) WITH ORDINALITY AS t (k, n) "
                   "ORDER BY t.n "
                   "ON CONFLICT (product_id, key_mac) DO NOTHING RETURNING 1) "
                   "SELECT count(*) FROM ins",
                   3, ip);
    free(keys_json);
    if (e != MB_OK) {
        mb_reply_err(c, e);
        return;
    }
    long long added = atoll(PQgetvalue(r, 0, 0));
    mb_db_clear(&r);
    e = mb_db_exec(&c->db, &r,
                   "SELECT count(*) FROM license_keys WHERE product_id = $1::uuid "
                   "AND benefit_id IS NULL",
                   1, pp);
    if (e != MB_OK) {
        mb_reply_err(c, e);
        return;
    }
    long long available = atoll(PQgetvalue(r, 0, 0));
    mb_db_clear(&r);
    long long duplicates = (long long)total - added;

    char details[128];
    snprintf(details, sizeof(details), "{\"added\":%lld,\"duplicates\":%lld,\"available\":%lld}",
             added, duplicates, available);
    e = mb_audit(c, NULL, "keys.loaded", "product", product_id, details);
    if (e != MB_OK) {
        mb_reply_err(c, e);
        return;
    }
    json_t *doc =
        json_pack("{s:s, s:I, s:I, s:I}", "product_id", product_id, "added", (json_int_t)added,
                  "duplicates", (json_int_t)duplicates, "available", (json_int_t)available);
    mb_reply_jansson(c, 200, doc);
}

/* Answers 422 naming field when value is not in the product's list (a JSON
 * array of text). Returns false after answering. */
static bool offered(mb_ctx *c, const char *field, const char *value, const char *list_json)
{
    json_t *allowed = json_loads(list_json, 0, NULL);
    if (allowed == NULL) {
        mb_reply_err(c, MB_E_INTERNAL);
        return false;
    }
    size_t i;
    json_t *v;
    char listed[320] = "";
    size_t o = 0;
    json_array_foreach(allowed, i, v)
    {
        if (strcmp(json_string_value(v), value) == 0) {
            json_decref(allowed);
            return true;
        }
        if (o < sizeof(listed))
            o += (size_t)snprintf(listed + o, sizeof(listed) - o, "%s%s", i ? ", " : "",
                                  json_string_value(v));
    }
    json_t *extra = json_pack("{s:o, s:[{s:s,s:s}]}", "allowed", allowed, "errors", "field", field,
                              "message", "is not offered for this product");
    mb_reply_problem_x(c, MB_E_VALIDATION, extra,
                       "Field '%s' must be one of the values this product offers: %s.", field,
                       listed[0] ? listed : "(none)");
    return false;
}

/* Hands the benefit its quantity of keys from the product's pool, all or
 * nothing. Answers and returns false on failure. */
static bool take_keys(mb_ctx *c, const mb_benefit *b)
{
    /* First reveals of one product take turns: with concurrent takers each
     * would otherwise lock part of the free keys and all could fall short. */
    const char *pp[] = {b->product_id};
    mb_err e = mb_db_exec(&c->db, NULL,
                          "SELECT 1 FROM products WHERE id = $1::uuid FOR NO KEY UPDATE", 1, pp);
    if (e != MB_OK) {
        mb_reply_err(c, e);
        return false;
    }
    char qty[16];
    snprintf(qty, sizeof(qty), "%d", b->quantity);
    const char *p[] = {b->id, b->product_id, qty};
    PGresult *r = NULL;
    e = mb_db_exec(&c->db, &r,
                   "UPDATE license_keys SET benefit_id = $1::uuid, assigned_at = now() "
                   "WHERE id IN (SELECT id FROM license_keys WHERE product_id = $2::uuid "
                   "AND benefit_id IS NULL ORDER BY id LIMIT $3::int FOR UPDATE SKIP LOCKED) "
                   "RETURNING id",
                   3, p);
    if (e != MB_OK) {
        mb_reply_err(c, e);
        return false;
    }
    int got = PQntuples(r);
    mb_db_clear(&r);
    if (got < b->quantity) {
        /* The transaction rolls back: nothing is taken. */
        mb_reply_problem(c, MB_E_KEY_POOL_EXHAUSTED,
                         "The key pool of this product holds %d of the %d keys this benefit "
                         "needs; nothing was taken. Try again later or contact the program "
                         "operator.",
                         got, b->quantity);
        return false;
    }
    e = mb_db_exec(&c->db, NULL,
                   "UPDATE benefits SET status = 'active', activated_at = now(), "
                   "used = quantity WHERE id = $1::uuid",
                   1, p);
    if (e != MB_OK) {
        mb_reply_err(c, e);
        return false;
    }
    return true;
}

/* The reveal's body, checked once the gate passed (mb_gate_benefit's between). */
typedef struct {
    json_t *body; /* kept: language and os point into it */
    const char *language, *os;
} reveal_body;

static bool read_reveal_body(mb_ctx *c, void *arg)
{
    reveal_body *a = arg;
    json_t *body = mb_body(c, false);
    if (body == NULL)
        return false;
    static const char *const known[] = {"language", "os", NULL};
    mb_verr verr;
    if (!mb_v_known(body, known, &verr) ||
        !mb_v_str(body, "language", true, 1, 50, &a->language, &verr) ||
        !mb_v_str(body, "os", true, 1, 50, &a->os, &verr)) {
        json_decref(body);
        mb_reply_verr(c, &verr);
        return false;
    }
    a->body = body;
    return true;
}

/* What a reveal is refused for, in the order of the answers, from the first
 * round trip (x: the pending cancellation, the catalog the benefit was bought
 * with, whether it holds keys already); *first: it does not. */
static bool reveal_allowed(mb_ctx *c, const mb_benefit *b, const reveal_body *rb,
                           PGresult *const *x, bool *first)
{
    if (!has_keys(b->category, b->cloud_kind)) {
        mb_reply_problem_x(
            c, MB_E_VALIDATION,
            json_pack("{s:[{s:s,s:s}]}", "errors", "field", "benefitId", "message", "has no keys"),
            "Keys apply to software and license-based cloud benefits only; this "
            "benefit is %s%s%s.",
            b->category, b->cloud_kind[0] ? " " : "", b->cloud_kind);
        return false;
    }
    if (mb_benefit_closed(b)) {
        mb_reply_problem(c, MB_E_BENEFIT_EXPIRED,
                         "This benefit is %s; renew the package to get keys again.", b->status);
        return false;
    }
    if (!mb_no_pending_cancellation_in(c, x[0]))
        return false;
    /* What the benefit was bought with (sql/005_catalog.sql), not today's catalog. */
    if (PQntuples(x[1]) != 1) {
        mb_reply_err(c, MB_E_INTERNAL);
        return false;
    }
    if (!offered(c, "language", rb->language, PQgetvalue(x[1], 0, 0)) ||
        !offered(c, "os", rb->os, PQgetvalue(x[1], 0, 1)))
        return false;
    *first = strcmp(PQgetvalue(x[2], 0, 0), "f") == 0;
    return true;
}

/* POST /v1/partners/{partnerId}/benefits/{benefitId}/keys. Round trips: the
 * gate, the benefit locked (it serialises reveals of the same benefit) and
 * the checks in one; the first reveal takes its keys; the reveal's row, audit
 * row and event with the answer's read; the COMMIT. */
static void keys_reveal(mb_ctx *c)
{
    if (!mb_require(c, MB_ACT_KEYS))
        return;
    const char *bp[] = {c->param[1]};
    const mb_q checks[3] = {
        {MB_PENDING_CANCELLATION_OF_BENEFIT_SQL, 1, bp},
        {"SELECT to_json(languages), to_json(os_types) FROM benefit_catalog "
         "WHERE benefit_id = $1::uuid",
         1, bp},
        {"SELECT EXISTS (SELECT 1 FROM license_keys WHERE benefit_id = $1::uuid)", 1, bp}};
    PGresult *x[3] = {NULL, NULL, NULL};
    reveal_body rb = {NULL, NULL, NULL};
    mb_benefit b;
    bool first = false;
    bool ok = mb_gate_benefit(c, true, &b, read_reveal_body, &rb, 3, checks, x) &&
              reveal_allowed(c, &b, &rb, x, &first);
    for (int i = 0; i < 3; i++)
        PQclear(x[i]);
    json_t *body = rb.body;
    const char *language = rb.language, *os = rb.os;
    if (!ok) {
        json_decref(body);
        return;
    }
    PGresult *r = NULL;
    mb_err e;
    if (first && !take_keys(c, &b)) {
        json_decref(body);
        return;
    }

    const char *rp[] = {b.id, language, os, mb_actor(c)};
    e = mb_db_defer(&c->db, /* with the answer's read below */
                    "INSERT INTO key_reveals (benefit_id, language, os, revealed_by) "
                    "VALUES ($1::uuid, $2, $3, $4)",
                    4, rp);
    if (e == MB_OK) {
        json_t *d = json_pack("{s:s, s:s, s:b}", "language", language, "os", os, "first", first);
        char *details = d ? json_dumps(d, JSON_COMPACT) : NULL;
        json_decref(d);
        e = details ? mb_audit(c, c->param[0], "keys.revealed", "benefit", b.id, details)
                    : MB_E_INTERNAL;
        free(details);
    }
    if (e == MB_OK)
        e = mb_event(&c->db, c->param[0], "benefit.keys_revealed", "benefit", b.id, c->request_id,
                     NULL);
    if (e != MB_OK) {
        json_decref(body);
        mb_reply_err(c, e);
        return;
    }

    const char *dp[] = {b.id, c->cfg->kek, language, os, b.product_id};
    e = mb_db_exec(
        &c->db, &r,
        "SELECT json_build_object("
        "'benefit_id', $1::uuid, 'product_id', p.id, 'language', $3::text, 'os', $4::text, "
        "'keys', COALESCE((SELECT json_agg(pgp_sym_decrypt(k.key_enc, $2) ORDER BY k.id) "
        "FROM license_keys k WHERE k.benefit_id = $1::uuid), '[]'), "
        "'download_links', COALESCE((SELECT json_agg(d ORDER BY d->>'url') "
        "FROM jsonb_array_elements(bc.downloads) d "
        "WHERE d->>'language' = $3 AND d->>'os' = $4), '[]'), "
        "'instructions', bc.instructions) "
        "FROM products p JOIN benefit_catalog bc ON bc.benefit_id = $1::uuid "
        "WHERE p.id = $5::uuid",
        5, dp);
    json_decref(body);
    if (e != MB_OK || PQntuples(r) != 1) {
        mb_db_clear(&r);
        mb_reply_err(c, e != MB_OK ? e : MB_E_INTERNAL);
        return;
    }
    mb_reply_json(c, 200, PQgetvalue(r, 0, 0), (size_t)PQgetlength(r, 0, 0));
    mb_db_clear(&r);
    /* Keys must not stay in browser or proxy caches. */
    mb_set_header(c, "Cache-Control", "no-store");
}

const mb_route mb_routes_keys[] = {
    {"POST", "/v1/partners/:partnerId/benefits/:benefitId/keys", keys_reveal,
     MB_R_TX | MB_R_BODY | MB_R_SECRET},
    {"POST", "/v1/admin/products/:productId/keys", keys_load, MB_R_TX | MB_R_BODY | MB_R_CSV_BODY},
    {NULL, NULL, NULL, 0},
};
