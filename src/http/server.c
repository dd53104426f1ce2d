/* The server: one routing table, one dispatcher. Every request goes through
 * the same steps: request id, CORS, body limit, route match (404/405), token,
 * then the handler, inside one transaction with Idempotency-Key handling
 * when the route changes state. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <yder.h>

#include "mb_http.h"
#include "mb_metrics.h"

#define MAX_ROUTES 96
#define MAX_SEGMENTS 10
/* All request headers together: room for an 8 KB token (and a refused 16 KB
 * one, which must still answer 401) and ordinary headers, not for 64 KB. */
#define MAX_HEADER_BYTES (32 * 1024)

static const mb_route *routes[MAX_ROUTES];
static int nroutes;
static const mb_config *g_cfg;
/* Requests from their first line to the end of sending their answer (MHD's
 * URI and completion callbacks, around Ulfius' own): the drain on SIGTERM
 * waits for this, so no answer is cut off by the server stopping between the
 * handler's return and the last byte sent. */
static atomic_int in_flight;

static void *uri_started(void *cls, const char *uri)
{
    atomic_fetch_add(&in_flight, 1);
    return ulfius_uri_logger(cls, uri);
}

static void request_completed(void *cls, struct MHD_Connection *connection, void **con_cls,
                              enum MHD_RequestTerminationCode toe)
{
    mhd_request_completed(cls, connection, con_cls, toe);
    atomic_fetch_sub(&in_flight, 1);
}
static atomic_bool draining; /* SIGTERM received: finishing what is in flight */

static const mb_route *const *route_tables[] = {(const mb_route *const[]){
    mb_routes_core, mb_routes_accounts, mb_routes_purchases, mb_routes_keys, mb_routes_seats,
    mb_routes_activation, mb_routes_marketing, mb_routes_refund, NULL}};

static void collect_routes(void)
{
    const mb_route *const *tables = route_tables[0];
    for (int t = 0; tables[t] != NULL; t++)
        for (const mb_route *r = tables[t]; r->method != NULL && nroutes < MAX_ROUTES; r++)
            routes[nroutes++] = r;
}

int mb_http_in_flight(void)
{
    return atomic_load(&in_flight);
}

int mb_route_count(void)
{
    return nroutes;
}

const mb_route *mb_route_at(int i)
{
    return (i >= 0 && i < nroutes) ? routes[i] : NULL;
}

/* Matches path against pattern; fills parameters. */
static bool match(const char *pattern, const char *path, mb_ctx *c)
{
    int np = 0;
    const char *p = pattern, *u = path;
    while (*p == '/' && *u == '/') {
        p++;
        u++;
        const char *pe = strchr(p, '/');
        const char *ue = strchr(u, '/');
        size_t pl = pe ? (size_t)(pe - p) : strlen(p);
        size_t ul = ue ? (size_t)(ue - u) : strlen(u);
        if (ul == 0)
            return false;
        if (*p == ':') {
            if (np >= MB_MAX_PARAMS || ul >= sizeof(c->param_buf[0]))
                return false;
            memcpy(c->param_buf[np], u, ul);
            c->param_buf[np][ul] = '\0';
            c->param[np] = c->param_buf[np];
            np++;
        } else if (pl != ul || memcmp(p, u, ul) != 0) {
            return false;
        }
        p += pl;
        u += ul;
    }
    if (*p != '\0' || *u != '\0')
        return false;
    c->nparam = np;
    return true;
}

static size_t header_bytes(const struct _u_request *req)
{
    const struct _u_map *h = req->map_header;
    size_t n = 0;
    for (int i = 0; h != NULL && i < h->nb_values; i++)
        n += strlen(h->keys[i]) + h->lengths[i] + 4;
    return n;
}

static void new_request_id(const struct _u_request *req, char out[64])
{
    const char *given = u_map_get_case(req->map_header, "X-Request-Id");
    if (given != NULL) {
        size_t n = strlen(given);
        bool ok = n >= 1 && n <= 63;
        for (size_t i = 0; ok && i < n; i++) {
            char ch = given[i];
            ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                 ch == '-' || ch == '_' || ch == '.';
        }
        if (ok) {
            memcpy(out, given, n + 1);
            return;
        }
    }
    /* Request ids need to be unique, not secret: a per-thread xorshift128+
     * seeded once from getrandom saves a system call per request. */
    static _Thread_local uint64_t st[2];
    if (st[0] == 0 && st[1] == 0) {
        if (getrandom(st, sizeof(st), 0) != (ssize_t)sizeof(st) || (st[0] == 0 && st[1] == 0)) {
            st[0] = (uint64_t)time(NULL) ^ 0x9E3779B97F4A7C15ull;
            st[1] = (uint64_t)(uintptr_t)&st ^ (uint64_t)gettid();
        }
    }
    unsigned char b[16];
    for (int half = 0; half < 2; half++) {
        uint64_t x = st[0], y = st[1];
        st[0] = y;
        x ^= x << 23;
        st[1] = x ^ y ^ (x >> 17) ^ (y >> 26);
        uint64_t r = st[1] + y;
        memcpy(b + 8 * half, &r, 8);
    }
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    snprintf(out, 64, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
             b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
             b[14], b[15]);
}

static bool origin_allowed(const char *origin)
{
    const char *list = g_cfg->cors_origins;
    if (origin == NULL || list == NULL || *list == '\0')
        return false;
    size_t ol = strlen(origin);
    for (const char *p = list; *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        const char *e = p;
        while (*e && *e != ',')
            e++;
        const char *t = e;
        while (t > p && t[-1] == ' ')
            t--;
        size_t l = (size_t)(t - p);
        if ((l == 1 && *p == '*') || (l == ol && strncmp(p, origin, l) == 0))
            return true;
        p = e;
    }
    return false;
}

static void cors(mb_ctx *c)
{
    const char *origin = mb_header(c, "Origin");
    if (!origin_allowed(origin))
        return;
    mb_set_header(c, "Access-Control-Allow-Origin", origin);
    mb_set_header(c, "Vary", "Origin");
    mb_set_header(c, "Access-Control-Expose-Headers",
                  "X-Request-Id, Location, ETag, Retry-After, Idempotent-Replayed");
}

static void hex_encode(const unsigned char *in, size_t n, char *out)
{
    static const char hx[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hx[in[i] >> 4];
        out[2 * i + 1] = hx[in[i] & 15];
    }
    out[2 * n] = '\0';
}

static bool idempotency_key_ok(const char *k)
{
    size_t n = strlen(k);
    if (n == 0 || n > 200)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)k[i] < 0x21 || (unsigned char)k[i] > 0x7e)
            return false;
    return true;
}

/* Runs a state-changing handler in one transaction. With an Idempotency-Key,
 * the key is claimed first in the same transaction: a concurrent request with
 * the same key waits on the claim and then replays the committed answer. */
static void run_tx(mb_ctx *c, const mb_route *r)
{
    /* The contract takes Idempotency-Key on POSTs only (DESIGN §4): elsewhere
     * the header is ignored, rather than answered with a 422 that a DELETE
     * does not document. */
    const char *key =
        strcmp(c->req->http_verb, "POST") == 0 ? mb_header(c, "Idempotency-Key") : NULL;
    char scope[140];
    char *hex = NULL;
    if (key != NULL && !idempotency_key_ok(key)) {
        mb_reply_problem(c, MB_E_VALIDATION,
                         "Header 'Idempotency-Key' must be 1 to 200 printable ASCII characters.");
        return;
    }
    mb_err e = mb_db_begin(&c->db);
    if (e != MB_OK) {
        mb_reply_err(c, e);
        return;
    }
    if (key != NULL) {
        if (c->who.tid[0] != '\0')
            snprintf(scope, sizeof(scope), "%s", c->who.tid);
        else
            snprintf(scope, sizeof(scope), "op:%s", c->who.sub);
        /* The hash covers the method, the path and the body; a JSON body is
         * hashed in a canonical form (compact, sorted keys) so that a retry
         * re-serialised by a client library or a proxy still matches. */
        const char *bbytes = c->req->binary_body;
        size_t blen = c->req->binary_body_length;
        char *canon = NULL;
        if (blen > 0) {
            json_t *doc = json_loadb(bbytes, blen, JSON_REJECT_DUPLICATES, NULL);
            canon = doc ? json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
            json_decref(doc);
            if (canon != NULL) {
                bbytes = canon;
                blen = strlen(canon);
            }
        }
        size_t plen = strlen(c->req->http_verb) + 1 + strlen(c->req->url_path) + 1;
        hex = malloc(2 * (plen + blen) + 1);
        unsigned char *raw = malloc(plen + blen + 1);
        if (hex == NULL || raw == NULL) {
            free(raw);
            free(hex);
            free(canon);
            mb_db_rollback(&c->db);
            mb_reply_err(c, MB_E_INTERNAL);
            return;
        }
        snprintf((char *)raw, plen + 1, "%s %s\n", c->req->http_verb, c->req->url_path);
        if (blen > 0)
            memcpy(raw + plen, bbytes, blen);
        hex_encode(raw, plen + blen, hex);
        free(raw);
        free(canon);
        const char *p[] = {scope, key, hex};
        PGresult *res = NULL;
        e = mb_db_exec(&c->db, NULL,
                       "DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2 "
                       "AND created_at < now() - interval '24 hours'",
                       2, p);
        if (e == MB_OK)
            e = mb_db_exec(&c->db, &res,
                           "INSERT INTO idempotency_keys (scope, key, request_hash, status, body) "
                           "VALUES ($1, $2, sha256(decode($3, 'hex')), 0, '') "
                           "ON CONFLICT (scope, key) DO NOTHING RETURNING 1",
                           3, p);
        if (e != MB_OK) {
            free(hex);
            mb_db_rollback(&c->db);
            mb_reply_err(c, e);
            return;
        }
        bool claimed = PQntuples(res) == 1;
        PQclear(res);
        if (!claimed) {
            e = mb_db_exec(&c->db, &res,
                           "SELECT request_hash = sha256(decode($3, 'hex')), status, body, "
                           "location FROM idempotency_keys WHERE scope = $1 AND key = $2",
                           3, p);
            free(hex);
            mb_db_rollback(&c->db);
            if (e != MB_OK || PQntuples(res) != 1) {
                PQclear(res);
                mb_reply_err(c, e != MB_OK ? e : MB_E_UNAVAILABLE);
                return;
            }
            if (strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
                mb_reply_problem(c, MB_E_IDEMPOTENCY_KEY_REUSED,
                                 "This Idempotency-Key was used with a different request; use a "
                                 "new key for a new request.");
            } else if (r->flags & MB_R_SECRET) {
                /* The first answer held secrets and was not kept: answer again. */
                PQclear(res);
                e = mb_db_begin(&c->db);
                if (e != MB_OK) {
                    mb_reply_err(c, e);
                    return;
                }
                r->handler(c);
                if (c->resp->status >= 200 && c->resp->status < 300) {
                    mb_set_header(c, "Idempotent-Replayed", "true");
                    e = mb_db_commit(&c->db);
                    if (e != MB_OK) {
                        mb_db_rollback(&c->db);
                        mb_reply_err(c, e);
                    }
                } else {
                    mb_db_rollback(&c->db);
                }
                return;
            } else {
                int status = atoi(PQgetvalue(res, 0, 1));
                size_t bl = (size_t)PQgetlength(res, 0, 2);
                if (bl > 0)
                    mb_reply_json(c, status, PQgetvalue(res, 0, 2), bl);
                else
                    mb_reply_empty(c, status);
                if (!PQgetisnull(res, 0, 3))
                    mb_set_header(c, "Location", PQgetvalue(res, 0, 3));
                mb_set_header(c, "Idempotent-Replayed", "true");
            }
            PQclear(res);
            return;
        }
    }

    r->handler(c);

    long status = c->resp->status;
    if (status >= 200 && status < 300) {
        e = MB_OK;
        if (key != NULL) {
            char st[8];
            snprintf(st, sizeof(st), "%ld", status);
            char *body = malloc(c->resp->binary_body_length + 1);
            if (body == NULL) {
                e = MB_E_INTERNAL;
            } else {
                size_t bl = (r->flags & MB_R_SECRET) ? 0 : c->resp->binary_body_length;
                if (bl > 0)
                    memcpy(body, c->resp->binary_body, bl);
                body[bl] = '\0';
                const char *p[] = {scope, key, st, body,
                                   u_map_get(c->resp->map_header, "Location")};
                e = mb_db_exec(&c->db, NULL,
                               "UPDATE idempotency_keys SET status = $3::int, body = $4, "
                               "location = $5 WHERE scope = $1 AND key = $2",
                               5, p);
                free(body);
            }
        }
        if (e == MB_OK)
            e = mb_db_commit(&c->db);
        if (e != MB_OK) {
            mb_db_rollback(&c->db);
            u_map_remove_from_key(c->resp->map_header, "Location");
            mb_reply_err(c, e);
        }
    } else {
        mb_db_rollback(&c->db);
    }
    free(hex);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Verified tokens. A client sends the same bearer token with every request
 * until it expires; checking it (base64, two JSON parses, an HMAC or an RSA
 * signature) took a tenth of the service's CPU on the read endpoints. A token
 * whose exact bytes passed mb_auth_verify is remembered with its caller until
 * its exp; nothing else about a token can change its verdict (the keys and
 * claims wanted are fixed at start; nbf and iat only move into the past).
 * Past exp, mb_auth_verify decides again (it allows some clock skew).
 * Direct-mapped: a slot per token hash, allocated on first use (a few hundred
 * bytes each, a token's size), locks striped over the slots. */
#define TOKEN_SLOTS 16384
#define TOKEN_LOCKS 256
#define TOKEN_CACHE_MAX 2048 /* longer tokens are checked every time */

typedef struct {
    size_t len, cap;
    long long exp;
    mb_principal who;
    char token[]; /* cap bytes */
} token_entry;

static token_entry *token_cache[TOKEN_SLOTS];
static pthread_mutex_t token_locks[TOKEN_LOCKS];

static uint32_t fnv1a(const char *s, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

/* The exp claim of a JWT's payload, or -1. */
static long long token_exp(const char *token, size_t len)
{
    const char *p = memchr(token, '.', len);
    const char *e = p ? memchr(p + 1, '.', len - (size_t)(p + 1 - token)) : NULL;
    if (p == NULL || e == NULL)
        return -1;
    p++;
    size_t n = (size_t)(e - p);
    unsigned char *raw = malloc(n * 3 / 4 + 3);
    if (raw == NULL)
        return -1;
    size_t o = 0;
    unsigned acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = p[i];
        int v = ch >= 'A' && ch <= 'Z'   ? ch - 'A'
                : ch >= 'a' && ch <= 'z' ? ch - 'a' + 26
                : ch >= '0' && ch <= '9' ? ch - '0' + 52
                : ch == '-'              ? 62
                : ch == '_'              ? 63
                                         : -1;
        if (v < 0) {
            free(raw);
            return -1;
        }
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            raw[o++] = (unsigned char)(acc >> bits);
        }
    }
    json_t *claims = json_loadb((const char *)raw, o, JSON_REJECT_DUPLICATES, NULL);
    free(raw);
    json_t *exp = json_object_get(claims, "exp");
    long long out = json_is_integer(exp) ? (long long)json_integer_value(exp) : -1;
    json_decref(claims);
    return out;
}

static mb_err verify_token(const char *authorization, time_t now, mb_principal *who)
{
    const char *token = NULL;
    size_t len = 0;
    if (authorization != NULL && strncasecmp(authorization, "Bearer ", 7) == 0) {
        token = authorization + 7;
        len = strlen(token);
    }
    if (token == NULL || len == 0 || len > TOKEN_CACHE_MAX)
        return mb_auth_verify(g_cfg, authorization, now, who);
    uint32_t slot = fnv1a(token, len) % TOKEN_SLOTS;
    pthread_mutex_t *mu = &token_locks[slot % TOKEN_LOCKS];
    pthread_mutex_lock(mu);
    token_entry *t = token_cache[slot];
    bool hit =
        t != NULL && t->len == len && (long long)now < t->exp && memcmp(t->token, token, len) == 0;
    if (hit)
        *who = t->who;
    pthread_mutex_unlock(mu);
    if (hit)
        return MB_OK;
    mb_err e = mb_auth_verify(g_cfg, authorization, now, who);
    if (e != MB_OK)
        return e;
    long long exp = token_exp(token, len);
    if (exp <= (long long)now)
        return MB_OK;
    pthread_mutex_lock(mu);
    t = token_cache[slot];
    if (t == NULL || t->cap < len) {
        token_entry *n = realloc(t, sizeof(*t) + len);
        if (n != NULL) {
            n->cap = len;
            token_cache[slot] = t = n;
        }
    }
    if (t != NULL && t->cap >= len) {
        memcpy(t->token, token, len);
        t->len = len;
        t->exp = exp;
        t->who = *who;
    }
    pthread_mutex_unlock(mu);
    return MB_OK;
}

static void token_cache_init(void)
{
    for (int i = 0; i < TOKEN_LOCKS; i++)
        pthread_mutex_init(&token_locks[i], NULL);
}

static void token_cache_free(void)
{
    for (int i = 0; i < TOKEN_SLOTS; i++) {
        free(token_cache[i]);
        token_cache[i] = NULL;
    }
    for (int i = 0; i < TOKEN_LOCKS; i++)
        pthread_mutex_destroy(&token_locks[i]);
}

/* The access log line of a request, in Yder's console format. One write(2) of
 * a line built on the stack: Yder's stdio path (localtime, locked stream)
 * cost 5 % of the read endpoints' throughput. Control characters (a token's
 * sub may hold any) become '?', so a line is always one line. */
static void access_log(bool error, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void access_log(bool error, const char *fmt, ...)
{
    static _Thread_local time_t stamp_at;
    static _Thread_local char stamp[32];
    time_t now = time(NULL);
    if (now != stamp_at) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ", &tm);
        stamp_at = now;
    }
    char line[640];
    int n = snprintf(line, sizeof(line), "%s - mpn-benefits %s: ", stamp, error ? "ERROR" : "INFO");
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof(line) - 2)
        len = sizeof(line) - 2;
    for (size_t i = (size_t)n; i < len; i++)
        if ((unsigned char)line[i] < 0x20 || line[i] == 0x7f)
            line[i] = '?';
    line[len++] = '\n';
    ssize_t w = write(error ? STDERR_FILENO : STDOUT_FILENO, line, len);
    (void)w; /* nowhere to report a failing log */
}

static int dispatch(const struct _u_request *req, struct _u_response *resp, void *unused)
{
    (void)unused;
    double t0 = now_ms();
    char rid[64];
    new_request_id(req, rid);
    mb_ctx c = {.req = req, .resp = resp, .cfg = g_cfg, .request_id = rid, .route = "unmatched"};
    int route_idx = -1;
    mb_set_header(&c, "X-Request-Id", rid);
    cors(&c);

    const char *path = req->url_path ? req->url_path : "/";
    const char *method = req->http_verb ? req->http_verb : "";
    const char *clen = mb_header(&c, "Content-Length");

    if (header_bytes(req) > MAX_HEADER_BYTES) {
        /* libmicrohttpd itself refuses past its connection memory (128 KB)
         * with a bare 431; below that, answer the same as a problem. */
        mb_set_header(&c, "Connection", "close");
        mb_reply_problem(&c, MB_E_HEADERS_TOO_LARGE, "The request headers exceed %d bytes.",
                         MAX_HEADER_BYTES);
        goto done;
    }
    if (strcmp(method, "OPTIONS") == 0 && mb_header(&c, "Origin") != NULL &&
        mb_header(&c, "Access-Control-Request-Method") != NULL) {
        /* CORS preflight */
        if (origin_allowed(mb_header(&c, "Origin"))) {
            mb_set_header(&c, "Access-Control-Allow-Methods",
                          "GET, POST, PUT, PATCH, DELETE, OPTIONS");
            mb_set_header(&c, "Access-Control-Allow-Headers",
                          "Authorization, Content-Type, Idempotency-Key, If-Match, X-Request-Id");
            mb_set_header(&c, "Access-Control-Max-Age", "600");
            mb_reply_empty(&c, 204);
        } else {
            mb_reply_problem(&c, MB_E_FORBIDDEN_ROLE, "Origin not allowed.");
        }
        goto done;
    }
    if ((clen != NULL && (strlen(clen) > 12 || strtoull(clen, NULL, 10) > g_cfg->max_body)) ||
        req->binary_body_length > g_cfg->max_body) {
        mb_set_header(&c, "Connection", "close");
        mb_reply_problem(&c, MB_E_PAYLOAD_TOO_LARGE, "The body is larger than %zu bytes.",
                         g_cfg->max_body);
        goto done;
    }

    bool path_known = false;
    for (int i = 0; i < nroutes; i++) {
        if (!match(routes[i]->pattern, path, &c))
            continue;
        path_known = true;
        if (strcmp(routes[i]->method, method) == 0) {
            route_idx = i;
            break;
        }
    }
    if (route_idx < 0) {
        if (path_known) {
            char allow[96] = "";
            size_t o = 0;
            mb_ctx tmp = c;
            for (int i = 0; i < nroutes; i++)
                if (match(routes[i]->pattern, path, &tmp) && o + 10 < sizeof(allow))
                    o += (size_t)snprintf(allow + o, sizeof(allow) - o, "%s%s", o ? ", " : "",
                                          routes[i]->method);
            mb_set_header(&c, "Allow", allow);
            mb_reply_problem(&c, MB_E_METHOD_NOT_ALLOWED, "Use one of: %s.", allow);
        } else {
            mb_reply_problem(&c, MB_E_NOT_FOUND, "No such resource.");
        }
        goto done;
    }
    const mb_route *r = routes[route_idx];
    c.route = r->pattern;
    if (atomic_load(&draining) && strcmp(r->pattern, "/readyz") == 0) {
        /* Load balancers probing readiness take this replica out now. */
        mb_reply_problem(&c, MB_E_UNAVAILABLE, "This instance is shutting down.");
        goto done;
    }
    if (!(r->flags & MB_R_PUBLIC)) {
        mb_err e = verify_token(mb_header(&c, "Authorization"), time(NULL), &c.who);
        if (e != MB_OK) {
            mb_set_header(&c, "WWW-Authenticate", "Bearer");
            mb_reply_problem(&c, MB_E_UNAUTHENTICATED,
                             "Send a valid bearer token in the Authorization header.");
            goto done;
        }
    }
    if (r->flags & MB_R_TX)
        run_tx(&c, r);
    else
        r->handler(&c);

done:
    mb_db_release(&c.db);
    if (atomic_load(&draining))
        mb_set_header(&c, "Connection", "close");
    double ms = now_ms() - t0;
    mb_metrics_observe(route_idx, (int)resp->status, ms);
    access_log(resp->status >= 500, "request_id=%s method=%s route=%s status=%ld ms=%.2f actor=%s",
               rid, method, c.route, resp->status, ms, c.who.sub[0] ? c.who.sub : "-");
    return U_CALLBACK_COMPLETE;
}

static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* Threading. Ulfius calls handlers synchronously and a handler blocks in libpq,
 * so an MHD worker that serves several connections (the epoll thread pool)
 * stalls all of them behind one slow query; measured: a second request queued
 * behind a first one waiting on a row lock although other workers idled, and
 * bursts of new connections piled on a few workers (MHD accepts up to ten per
 * wake-up). So: one thread per connection (blocking costs only that
 * connection), at most HTTP_MAX_CONNECTIONS of them, and the database pool
 * queues the requests first come, first served.
 *
 * The listening socket is ours: SIGTERM closes it at once, so new connections
 * are refused (a load balancer moves on) rather than left in the backlog while
 * we drain, and a second process can never share the port (MHD's
 * LISTENING_ADDRESS_REUSE set SO_REUSEPORT, which let two instances split one
 * port's connections silently). */
static int listen_fd = -1;

static int open_listener(int port)
{
    int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int off = 0, on = 1;
    if (fd >= 0) { /* dual stack: IPv4 clients too (::ffff:a.b.c.d) */
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off));
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
        struct sockaddr_in6 a = {
            .sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port), .sin6_addr = in6addr_any};
        if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 && listen(fd, 1024) == 0)
            return fd;
        close(fd);
    }
    /* no IPv6 in this kernel/container: IPv4 only */
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
    struct sockaddr_in a4 = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_ANY)};
    if (bind(fd, (struct sockaddr *)&a4, sizeof(a4)) != 0 || listen(fd, 1024) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void *accept_loop(void *arg)
{
    struct MHD_Daemon *d = arg;
    for (;;) {
        struct sockaddr_storage a;
        socklen_t al = sizeof(a);
        int fd = accept4(listen_fd, (struct sockaddr *)&a, &al, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) {
            if (atomic_load(&draining))
                return NULL;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                usleep(10000); /* out of descriptors: let connections close */
            continue;
        }
        if (atomic_load(&draining)) {
            close(fd);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        /* starts the connection's thread; closes fd itself on failure (at the
         * connection limit) */
        MHD_add_connection(d, fd, (const struct sockaddr *)&a, al);
    }
}

int mb_serve(const mb_config *cfg)
{
    g_cfg = cfg;
    collect_routes();
    raise_fd_limit();
    token_cache_init();

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    listen_fd = open_listener(cfg->port);
    if (listen_fd < 0) {
        y_log_message(Y_LOG_LEVEL_ERROR, "cannot listen on port %d: %s", cfg->port,
                      strerror(errno));
        return 1;
    }
    struct _u_instance inst;
    if (ulfius_init_instance(&inst, (unsigned)cfg->port, NULL, NULL) != U_OK) {
        y_log_message(Y_LOG_LEVEL_ERROR, "cannot initialise the HTTP instance");
        close(listen_fd);
        return 1;
    }
    /* Ulfius truncates silently past this; the dispatcher answers 413 for
     * anything over max_body, so keep one byte more to tell them apart. */
    inst.max_post_body_size = cfg->max_body + 1;
    /* JSON only: with Ulfius' form parsers on, a multipart/form-data request
     * whose body is not multipart made it drop the connection without any
     * answer (found by tests/fuzz/contract_fuzz.py); now mb_body answers 415. */
    inst.allowed_post_processor = U_POST_PROCESS_NONE;
    ulfius_set_default_endpoint(&inst, &dispatch, NULL);

    struct MHD_OptionItem ops[] = {
        {MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)request_completed, NULL},
        {MHD_OPTION_URI_LOG_CALLBACK, (intptr_t)uri_started, NULL},
        /* virtual size: a thread touches a few pages of it, but jansson parses
         * nested JSON recursively (up to 2048 levels) */
        {MHD_OPTION_THREAD_STACK_SIZE, 2 * 1024 * 1024, NULL},
        {MHD_OPTION_CONNECTION_TIMEOUT, 30, NULL},
        {MHD_OPTION_CONNECTION_LIMIT, cfg->max_connections, NULL},
        /* MHD zeroes a connection's whole pool for every request on it: keep
         * it small (headers are at most 8 KB of token plus a few more). */
        {MHD_OPTION_CONNECTION_MEMORY_LIMIT, 64 * 1024, NULL},
        {MHD_OPTION_END, 0, NULL},
    };
    /* poll(), not select(): no FD_SETSIZE ceiling on descriptors. */
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                     MHD_USE_POLL | MHD_USE_ITC | MHD_USE_NO_LISTEN_SOCKET;
    if (ulfius_start_framework_with_mhd_options(&inst, flags, ops) != U_OK) {
        y_log_message(Y_LOG_LEVEL_ERROR, "cannot start the HTTP workers");
        ulfius_clean_instance(&inst);
        close(listen_fd);
        return 1;
    }
    pthread_t acceptor;
    if (pthread_create(&acceptor, NULL, accept_loop, inst.mhd_daemon) != 0) {
        y_log_message(Y_LOG_LEVEL_ERROR, "cannot start the accept thread");
        ulfius_stop_framework(&inst);
        ulfius_clean_instance(&inst);
        close(listen_fd);
        return 1;
    }
    y_log_message(Y_LOG_LEVEL_INFO,
                  "listening on port %d (a thread per connection, up to %d; pool %d)", cfg->port,
                  cfg->max_connections, cfg->pool_size);

    int sig = 0;
    sigwait(&set, &sig);
    y_log_message(Y_LOG_LEVEL_INFO, "signal %d: draining", sig);
    /* Stop accepting (new connections are refused, so a load balancer moves
     * on at once), answer what is in flight, and tell keep-alive clients to
     * go elsewhere (Connection: close on every answer from now on). */
    atomic_store(&draining, true);
    shutdown(listen_fd, SHUT_RDWR);
    pthread_join(acceptor, NULL);
    close(listen_fd);
    listen_fd = -1;
    double deadline = now_ms() + cfg->shutdown_grace_s * 1000.0;
    while (atomic_load(&in_flight) > 0 && now_ms() < deadline)
        usleep(10000);
    if (atomic_load(&in_flight) > 0)
        y_log_message(Y_LOG_LEVEL_WARNING, "%d requests still running after %d s: stopping",
                      atomic_load(&in_flight), cfg->shutdown_grace_s);
    ulfius_stop_framework(&inst);
    ulfius_clean_instance(&inst);
    token_cache_free();
    y_log_message(Y_LOG_LEVEL_INFO, "stopped");
    return 0;
}
