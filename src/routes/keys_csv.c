/* Key pool import as text/csv (issue 14): one key a line, an optional first
 * line `key`, up to CSV_MAX_BODY_KB. The body is read once (the HTTP layer
 * holds it) and walked in place: keys go to PostgreSQL 1000 at a time, so
 * the service holds one chunk besides the body, never a second copy of it.
 *
 * Every line gets a result: imported lines are counted, the others listed
 * with their line number — `duplicate` (already in the pool, or earlier in the
 * file) or `invalid` (with the reason). Keys are encrypted and deduplicated
 * exactly like the JSON load (src/routes/keys.c); no key is ever logged or
 * answered. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mb_http.h"

#define CHUNK_KEYS 1000
#define KEY_MAX_CHARS 200

typedef struct {
    char *results; /* lines not imported: JSON objects, comma-separated */
    size_t rlen, rcap;
    long long imported, duplicates, invalid, lines;
    char *chunk; /* JSON [[line, key], ...] being built */
    size_t len, cap;
    int nchunk;
} import_state;

/* Valid UTF-8 without control characters, 1 to KEY_MAX_CHARS characters. */
static const char *key_problem(const unsigned char *s, size_t n)
{
    size_t chars = 0;
    for (size_t i = 0; i < n;) {
        unsigned char ch = s[i];
        size_t k = ch < 0x80             ? 1
                   : (ch & 0xE0) == 0xC0 ? 2
                   : (ch & 0xF0) == 0xE0 ? 3
                   : (ch & 0xF8) == 0xF0 ? 4
                                         : 0;
        if (k == 0 || i + k > n || (k == 2 && ch < 0xC2))
            return "is not valid UTF-8";
        for (size_t j = 1; j < k; j++)
            if ((s[i + j] & 0xC0) != 0x80)
                return "is not valid UTF-8";
        if (ch < 0x20 || ch == 0x7f)
            return "holds a control character";
        i += k;
        chars++;
    }
    if (chars < 1 || chars > KEY_MAX_CHARS)
        return "must be 1 to 200 characters";
    return NULL;
}

/* Appends a result as JSON text (a jansson object per line costs a few
 * hundred bytes: 100 000 duplicates took 90 MB that way). The statuses and
 * reasons are constants without characters to escape. */
static bool row_result(import_state *im, long long line, const char *status, const char *reason)
{
    size_t need = im->rlen + strlen(status) + strlen(reason) + 64;
    if (need > im->rcap) {
        size_t cap = need * 2 > 4096 ? need * 2 : 4096;
        char *p = realloc(im->results, cap);
        if (p == NULL)
            return false;
        im->results = p;
        im->rcap = cap;
    }
    im->rlen += (size_t)snprintf(im->results + im->rlen, im->rcap - im->rlen,
                                 "%s{\"line\":%lld,\"status\":\"%s\",\"reason\":\"%s\"}",
                                 im->rlen ? "," : "", line, status, reason);
    return true;
}

static bool chunk_add(import_state *im, long long line, const char *key, size_t n)
{
    /* worst case: every byte escaped as \u00XX, plus the line and brackets */
    size_t need = im->len + 6 * n + 48;
    if (need > im->cap) {
        size_t cap = need * 2;
        char *p = realloc(im->chunk, cap);
        if (p == NULL)
            return false;
        im->chunk = p;
        im->cap = cap;
    }
    im->len += (size_t)snprintf(im->chunk + im->len, im->cap - im->len, "%s[%lld,\"",
                                im->nchunk ? "," : "[", line);
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)key[i];
        if (ch == '"' || ch == '\\') {
            im->chunk[im->len++] = '\\';
            im->chunk[im->len++] = (char)ch;
        } else {
            im->chunk[im->len++] = (char)ch; /* no control characters got here */
        }
    }
    im->chunk[im->len++] = '"';
    im->chunk[im->len++] = ']';
    im->chunk[im->len] = '\0';
    im->nchunk++;
    return true;
}

/* Sends the chunk: inserts its keys, lists its duplicates. */
static mb_err chunk_flush(mb_ctx *c, import_state *im, const char *product_id)
{
    if (im->nchunk == 0)
        return MB_OK;
    if (im->len + 2 > im->cap)
        return MB_E_INTERNAL; /* chunk_add always leaves room */
    im->chunk[im->len++] = ']';
    im->chunk[im->len] = '\0';
    const char *p[] = {product_id, c->cfg->kek, im->chunk};
    PGresult *r = NULL;
    mb_err e = mb_db_exec(
        &c->db, &r,
        "WITH t AS (SELECT (e->>0)::bigint AS line, e->>1 AS k, hmac(e->>1, $2, 'sha256') AS mac "
        "FROM json_array_elements($3::json) e), "
        "r AS (SELECT line, k, mac, row_number() OVER (PARTITION BY mac ORDER BY line) AS rn "
        "FROM t), "
        "ins AS (INSERT INTO license_keys (product_id, key_enc, key_mac) "
        "SELECT $1::uuid, pgp_sym_encrypt(k, $2), mac FROM r WHERE rn = 1 "
        "AND NOT EXISTS (SELECT 1 FROM license_keys l WHERE l.product_id = $1::uuid "
        "AND l.key_mac = r.mac) ORDER BY line "
        "ON CONFLICT (product_id, key_mac) DO NOTHING RETURNING key_mac) "
        "SELECT line::text FROM r WHERE rn > 1 OR mac NOT IN (SELECT key_mac FROM ins) "
        "ORDER BY line",
        3, p);
    if (e != MB_OK)
        return e;
    int dups = PQntuples(r);
    for (int i = 0; i < dups && e == MB_OK; i++)
        if (!row_result(im, atoll(PQgetvalue(r, i, 0)), "duplicate",
                        "already in the pool, or earlier in this file"))
            e = MB_E_INTERNAL;
    mb_db_clear(&r);
    if (e != MB_OK)
        return e;
    im->duplicates += dups;
    im->imported += im->nchunk - dups;
    im->len = 0;
    im->nchunk = 0;
    return MB_OK;
}

/* The next line of s[0..n) at *pos (LF, CRLF or CR ends it). */
static bool next_line(const char *s, size_t n, size_t *pos, const char **line, size_t *len)
{
    if (*pos >= n)
        return false;
    size_t a = *pos, b = a;
    while (b < n && s[b] != '\n' && s[b] != '\r')
        b++;
    *line = s + a;
    *len = b - a;
    if (b < n && s[b] == '\r') {
        b++;
        if (b < n && s[b] == '\n')
            b++;
    } else if (b < n && s[b] == '\n') {
        b++;
    }
    *pos = b;
    return true;
}

static bool blank(const char *l, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (l[i] != ' ' && l[i] != '\t')
            return false;
    return true;
}

/* One key from a line: trimmed, unquoted (RFC 4180). NULL reason when fine. */
static const char *parse_key(const char *l, size_t n, char *out, size_t outlen, size_t *klen)
{
    while (n > 0 && (l[0] == ' ' || l[0] == '\t')) {
        l++;
        n--;
    }
    while (n > 0 && (l[n - 1] == ' ' || l[n - 1] == '\t'))
        n--;
    size_t o = 0;
    if (n > 0 && l[0] == '"') {
        size_t i = 1;
        for (;; i++) {
            if (i >= n)
                return "has a quote that is never closed";
            if (l[i] == '"' && i + 1 < n && l[i + 1] == '"') {
                i++;
            } else if (l[i] == '"') {
                break;
            }
            if (o + 1 >= outlen)
                return "must be 1 to 200 characters";
            out[o++] = l[i];
        }
        if (i + 1 != n)
            return "holds text after the closing quote (one key a line)";
    } else {
        if (memchr(l, ',', n) != NULL || memchr(l, '"', n) != NULL)
            return "holds a comma or a quote: one key a line (quote a key that has them)";
        if (n + 1 > outlen)
            return "must be 1 to 200 characters";
        memcpy(out, l, n);
        o = n;
    }
    out[o] = '\0';
    *klen = o;
    return key_problem((const unsigned char *)out, o);
}

void mb_keys_import_csv(mb_ctx *c, const char *product_id)
{
    const char *s = c->req->binary_body;
    size_t n = c->req->binary_body_length, pos = 0;
    if (n >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0)
        pos = 3;
    import_state im = {0};
    mb_err e = MB_OK;
    const char *l;
    size_t len;
    long long line = 0;
    bool first = true;
    while (e == MB_OK && next_line(s, n, &pos, &l, &len)) {
        line++;
        if (blank(l, len))
            continue; /* an empty line */
        char key[4 * KEY_MAX_CHARS + 8];
        size_t klen = 0;
        const char *bad = parse_key(l, len, key, sizeof(key), &klen);
        if (first && bad == NULL && strcasecmp(key, "key") == 0) {
            first = false;
            continue; /* the header */
        }
        first = false;
        im.lines++;
        if (bad != NULL) {
            im.invalid++;
            if (!row_result(&im, line, "invalid", bad))
                e = MB_E_INTERNAL;
            continue;
        }
        if (!chunk_add(&im, line, key, klen))
            e = MB_E_INTERNAL;
        else if (im.nchunk == CHUNK_KEYS)
            e = chunk_flush(c, &im, product_id);
    }
    if (e == MB_OK)
        e = chunk_flush(c, &im, product_id);
    free(im.chunk);
    if (e == MB_OK && im.lines == 0) {
        free(im.results);
        mb_reply_problem_x(
            c, MB_E_VALIDATION,
            json_pack("{s:[{s:s,s:s}]}", "errors", "field", "body", "message", "holds no key"),
            "The file holds no key: one key a line, optionally after a first "
            "line 'key'.");
        return;
    }
    PGresult *r = NULL;
    const char *pp[] = {product_id};
    if (e == MB_OK)
        e = mb_db_exec(&c->db, &r,
                       "SELECT count(*) FROM license_keys WHERE product_id = $1::uuid "
                       "AND benefit_id IS NULL",
                       1, pp);
    long long available = e == MB_OK ? atoll(PQgetvalue(r, 0, 0)) : 0;
    mb_db_clear(&r);
    if (e == MB_OK) {
        char details[192];
        snprintf(details, sizeof(details),
                 "{\"added\":%lld,\"duplicates\":%lld,\"invalid\":%lld,\"available\":%lld,"
                 "\"csv\":true}",
                 im.imported, im.duplicates, im.invalid, available);
        e = mb_audit(c, NULL, "keys.loaded", "product", product_id, details);
    }
    char head[320];
    int hl = snprintf(head, sizeof(head),
                      "{\"product_id\":\"%s\",\"added\":%lld,\"imported\":%lld,"
                      "\"duplicates\":%lld,\"invalid\":%lld,\"available\":%lld,"
                      "\"below_low_watermark\":%s,\"results\":[",
                      product_id, im.imported, im.imported, im.duplicates, im.invalid, available,
                      available < c->cfg->key_pool_low_watermark ? "true" : "false");
    char *out = e == MB_OK ? malloc((size_t)hl + im.rlen + 3) : NULL;
    if (out == NULL) {
        free(im.results);
        mb_reply_err(c, e != MB_OK ? e : MB_E_INTERNAL);
        return;
    }
    memcpy(out, head, (size_t)hl);
    if (im.rlen > 0)
        memcpy(out + hl, im.results, im.rlen);
    memcpy(out + (size_t)hl + im.rlen, "]}", 2);
    free(im.results);
    mb_reply_json(c, 200, out, (size_t)hl + im.rlen + 2);
    free(out);
}
