#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "front.h"
#include "mb_admit.h"
#include "mb_cache.h"
#include "mb_db.h"
#include "mb_events.h"
#include "mb_identity.h"
#include "mb_metrics.h"
#include "mb_token_cache.h"

#define SLOTS 97 /* routes + one for unmatched */
#define STATUSES 600

static atomic_ullong counts[SLOTS][STATUSES];
static const double bounds_ms[] = {0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500};
#define NB (sizeof(bounds_ms) / sizeof(bounds_ms[0]))
/* Latency per route template: one histogram each (a few KB in all). */
static atomic_ullong buckets[SLOTS][NB + 1];
static atomic_ullong sum_us[SLOTS];

void mb_metrics_observe(int route_idx, int status, double ms)
{
    int slot = (route_idx >= 0 && route_idx < SLOTS - 1) ? route_idx : SLOTS - 1;
    if (status < 100 || status >= STATUSES)
        status = 500;
    atomic_fetch_add_explicit(&counts[slot][status], 1, memory_order_relaxed);
    size_t b = 0;
    while (b < NB && ms > bounds_ms[b])
        b++;
    atomic_fetch_add_explicit(&buckets[slot][b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&sum_us[slot], (unsigned long long)(ms * 1000.0),
                              memory_order_relaxed);
}

typedef struct {
    char *buf;
    size_t len, cap;
} sbuf;

static void put(sbuf *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(sbuf *s, const char *fmt, ...)
{
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        int n = vsnprintf(s->buf ? s->buf + s->len : NULL, s->buf ? s->cap - s->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0)
            return;
        if (s->buf && s->len + (size_t)n < s->cap) {
            s->len += (size_t)n;
            return;
        }
        size_t ncap = (s->cap ? s->cap * 2 : 4096) + (size_t)n;
        char *nb = realloc(s->buf, ncap);
        if (nb == NULL)
            return;
        s->buf = nb;
        s->cap = ncap;
    }
}

/* Key pools left per product, for an alert below KEY_POOL_LOW_WATERMARK (issue 14):
 * one indexed count per product that has a pool; nothing when the database is
 * down (the other metrics still answer). */
static void key_pools(sbuf *s)
{
    const char *low = getenv("KEY_POOL_LOW_WATERMARK");
    long long watermark = low != NULL && *low ? atoll(low) : 100;
    mb_db db = {0};
    PGresult *r = NULL;
    if (mb_db_exec(&db, &r,
                   "SELECT p.code, (SELECT count(*) FROM license_keys k WHERE k.product_id = p.id "
                   "AND k.benefit_id IS NULL) FROM products p WHERE EXISTS (SELECT 1 FROM "
                   "license_keys k WHERE k.product_id = p.id) ORDER BY p.code",
                   0, NULL) == MB_OK) {
        put(s, "# HELP mpn_key_pool_available License keys not yet handed out, per product.\n"
               "# TYPE mpn_key_pool_available gauge\n");
        int below = 0;
        for (int i = 0; i < PQntuples(r); i++) {
            long long n = atoll(PQgetvalue(r, i, 1));
            below += n < watermark;
            char code[160];
            size_t o = 0;
            for (const char *c = PQgetvalue(r, i, 0); *c && o + 3 < sizeof(code); c++) {
                if (*c == '"' || *c == '\\')
                    code[o++] = '\\';
                code[o++] = *c == '\n' ? ' ' : *c;
            }
            code[o] = '\0';
            put(s, "mpn_key_pool_available{product=\"%s\"} %lld\n", code, n);
        }
        put(s,
            "# HELP mpn_key_pool_low_watermark KEY_POOL_LOW_WATERMARK.\n"
            "# TYPE mpn_key_pool_low_watermark gauge\nmpn_key_pool_low_watermark %lld\n"
            "# HELP mpn_key_pools_below_low_watermark Products whose pool is below it.\n"
            "# TYPE mpn_key_pools_below_low_watermark gauge\n"
            "mpn_key_pools_below_low_watermark %d\n",
            watermark, below);
    }
    mb_db_clear(&r);
    mb_db_release(&db);
}

char *mb_metrics_text(size_t *len)
{
    sbuf s = {0};
    put(&s, "# HELP mpn_http_requests_total HTTP requests by route template and status.\n"
            "# TYPE mpn_http_requests_total counter\n");
    for (int r = 0; r < SLOTS; r++) {
        const mb_route *rt = r < SLOTS - 1 ? mb_route_at(r) : NULL;
        if (r < SLOTS - 1 && rt == NULL)
            continue;
        for (int st = 100; st < STATUSES; st++) {
            unsigned long long n = atomic_load_explicit(&counts[r][st], memory_order_relaxed);
            if (n == 0)
                continue;
            put(&s, "mpn_http_requests_total{method=\"%s\",route=\"%s\",status=\"%d\"} %llu\n",
                rt ? rt->method : "", rt ? rt->pattern : "unmatched", st, n);
        }
    }
    put(&s, "# HELP mpn_http_request_duration_seconds Request latency (time in the service, from "
            "the request's arrival to its answer) by route template.\n"
            "# TYPE mpn_http_request_duration_seconds histogram\n");
    for (int r = 0; r < SLOTS; r++) {
        const mb_route *rt = r < SLOTS - 1 ? mb_route_at(r) : NULL;
        if (r < SLOTS - 1 && rt == NULL)
            continue;
        unsigned long long n[NB + 1], total = 0;
        for (size_t b = 0; b <= NB; b++) {
            n[b] = atomic_load_explicit(&buckets[r][b], memory_order_relaxed);
            total += n[b];
        }
        if (total == 0)
            continue;
        const char *m = rt ? rt->method : "", *pat = rt ? rt->pattern : "unmatched";
        unsigned long long cum = 0;
        for (size_t b = 0; b <= NB; b++) {
            cum += n[b];
            if (b < NB)
                put(&s,
                    "mpn_http_request_duration_seconds_bucket{method=\"%s\",route=\"%s\","
                    "le=\"%g\"} %llu\n",
                    m, pat, bounds_ms[b] / 1000.0, cum);
            else
                put(&s,
                    "mpn_http_request_duration_seconds_bucket{method=\"%s\",route=\"%s\","
                    "le=\"+Inf\"} %llu\n",
                    m, pat, cum);
        }
        put(&s, "mpn_http_request_duration_seconds_sum{method=\"%s\",route=\"%s\"} %.6f\n", m, pat,
            (double)atomic_load(&sum_us[r]) / 1e6);
        put(&s, "mpn_http_request_duration_seconds_count{method=\"%s\",route=\"%s\"} %llu\n", m,
            pat, cum);
    }
    put(&s,
        "# HELP mpn_http_requests_in_flight Requests being answered now.\n"
        "# TYPE mpn_http_requests_in_flight gauge\nmpn_http_requests_in_flight %d\n",
        mb_http_in_flight());
    mb_front_stats_t fs;
    mb_front_stats(&fs);
    put(&s,
        "# HELP mpn_http_connections_served Connections being served (a thread each).\n"
        "# TYPE mpn_http_connections_served gauge\nmpn_http_connections_served %d\n"
        "# HELP mpn_http_connections_waiting Connections waiting for a whole request head "
        "(no thread).\n"
        "# TYPE mpn_http_connections_waiting gauge\nmpn_http_connections_waiting %ld\n"
        "# HELP mpn_http_connections_refused_total Connections refused at HTTP_MAX_CONNECTIONS "
        "or out of descriptors.\n"
        "# TYPE mpn_http_connections_refused_total counter\n"
        "mpn_http_connections_refused_total %ld\n"
        "# HELP mpn_http_connections_timed_out_total Connections closed for sending no whole "
        "request head in HTTP_HEADER_TIMEOUT_SECONDS.\n"
        "# TYPE mpn_http_connections_timed_out_total counter\n"
        "mpn_http_connections_timed_out_total %ld\n",
        fs.active, fs.parked, fs.refused, fs.timed_out);
    put(&s,
        "# HELP mpn_readyz_checks_total Database pings made for /readyz (at most one a "
        "second).\n"
        "# TYPE mpn_readyz_checks_total counter\nmpn_readyz_checks_total %llu\n",
        mb_db_ready_checks());
    mb_cache_stats_t cs;
    mb_cache_stats(&cs);
    put(&s,
        "# HELP mpn_cache_answers_total Cacheable partner reads by outcome.\n"
        "# TYPE mpn_cache_answers_total counter\n"
        "mpn_cache_answers_total{outcome=\"hit\"} %llu\n"
        "mpn_cache_answers_total{outcome=\"miss\"} %llu\n"
        "mpn_cache_answers_total{outcome=\"not_modified\"} %llu\n"
        "# HELP mpn_cache_bytes Memory of the answers kept (bounded by CACHE_MB).\n"
        "# TYPE mpn_cache_bytes gauge\nmpn_cache_bytes %zu\n"
        "# HELP mpn_cache_version_reads_total Data versions read for partner reads.\n"
        "# TYPE mpn_cache_version_reads_total counter\nmpn_cache_version_reads_total %llu\n"
        "# HELP mpn_cache_version_queries_total Queries that read them (several at once).\n"
        "# TYPE mpn_cache_version_queries_total counter\nmpn_cache_version_queries_total %llu\n",
        cs.hits, cs.misses, cs.not_modified, cs.bytes, cs.version_reads, cs.version_queries);
    unsigned long long thits, tmisses;
    mb_token_cache_stats(&thits, &tmisses);
    put(&s,
        "# HELP mpn_token_cache_total Bearer tokens by outcome: found among the verified "
        "ones, or checked in full (signature and claims).\n"
        "# TYPE mpn_token_cache_total counter\n"
        "mpn_token_cache_total{outcome=\"hit\"} %llu\n"
        "mpn_token_cache_total{outcome=\"miss\"} %llu\n",
        thits, tmisses);
    int amax, arun, await_;
    unsigned long long awaited, atimed;
    mb_admit_stats(&amax, &arun, &await_, &awaited, &atimed);
    put(&s,
        "# HELP mpn_http_requests_running Requests past the line (HTTP_MAX_RUNNING).\n"
        "# TYPE mpn_http_requests_running gauge\nmpn_http_requests_running %d\n"
        "# HELP mpn_http_requests_in_line Requests waiting in line for a place.\n"
        "# TYPE mpn_http_requests_in_line gauge\nmpn_http_requests_in_line %d\n"
        "# HELP mpn_http_requests_waited_total Requests that waited in line.\n"
        "# TYPE mpn_http_requests_waited_total counter\nmpn_http_requests_waited_total %llu\n"
        "# HELP mpn_http_requests_line_timeouts_total Requests answered 503 after waiting too "
        "long in line.\n"
        "# TYPE mpn_http_requests_line_timeouts_total counter\n"
        "mpn_http_requests_line_timeouts_total %llu\n",
        arun, await_, awaited, atimed);
    int size, in_use;
    unsigned long long waits, errors;
    mb_pool_stats(&size, &in_use, &waits, &errors);
    put(&s,
        "# HELP mpn_db_pool_size Database connections in the pool.\n"
        "# TYPE mpn_db_pool_size gauge\nmpn_db_pool_size %d\n"
        "# HELP mpn_db_pool_in_use Database connections in use.\n"
        "# TYPE mpn_db_pool_in_use gauge\nmpn_db_pool_in_use %d\n"
        "# HELP mpn_db_pool_waits_total Times a request waited for a connection.\n"
        "# TYPE mpn_db_pool_waits_total counter\nmpn_db_pool_waits_total %llu\n"
        "# HELP mpn_db_errors_total Database errors (connection and server).\n"
        "# TYPE mpn_db_errors_total counter\nmpn_db_errors_total %llu\n",
        size, in_use, waits, errors);
    char *identity = mb_identity_metrics(); /* JWKS and revocation (src/identity/) */
    if (identity != NULL)
        put(&s, "%s", identity);
    free(identity);
    char events[1024];
    if (mb_events_metrics(events, sizeof(events)) > 0)
        put(&s, "%s", events);
    key_pools(&s);
    *len = s.len;
    return s.buf;
}
