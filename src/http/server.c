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

#include "front.h"
#include "http_internal.h"
#include "mb_admit.h"
#include "mb_cache.h"
#include "mb_log.h"
#include "mb_metrics.h"
#include "mb_ratelimit.h"
#include "mb_token_cache.h"

/* All request headers together: room for an 8 KB token (and a refused 16 KB
 * one, which must still answer 401) and ordinary headers, not for 64 KB. */
#define MAX_HEADER_BYTES (32 * 1024)

static const mb_config *g_cfg;
/* Requests from their first line to the end of sending their answer (MHD's
 * URI and completion callbacks, around Ulfius' own): the drain on SIGTERM
 * waits for this, so no answer is cut off by the server stopping between the
 * handler's return and the last byte sent. */
static atomic_int in_flight;

/* The MHD connection a connection thread serves (a thread per connection). */
static _Thread_local struct MHD_Connection *current_connection;

static void *uri_started(void *cls, const char *uri, struct MHD_Connection *con)
{
    atomic_fetch_add(&in_flight, 1);
    current_connection = con;
    return ulfius_uri_logger(cls, uri);
}

void mb_http_long_lived(mb_ctx *c, unsigned timeout_s)
{
    (void)c;
    if (current_connection != NULL)
        MHD_set_connection_option(current_connection, MHD_CONNECTION_OPTION_TIMEOUT, timeout_s);
}

static void request_completed(void *cls, struct MHD_Connection *connection, void **con_cls,
                              enum MHD_RequestTerminationCode toe)
{
    mhd_request_completed(cls, connection, con_cls, toe);
    atomic_fetch_sub(&in_flight, 1);
}
int mb_http_in_flight(void)
{
    return atomic_load(&in_flight);
}

static atomic_bool draining; /* SIGTERM received: finishing what is in flight */

bool mb_http_draining(void)
{
    return atomic_load(&draining);
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
    static const char hex[] = "0123456789abcdef"; /* 8-4-4-4-12, without printf's parsing */
    char *o = out;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            *o++ = '-';
        *o++ = hex[b[i] >> 4];
        *o++ = hex[b[i] & 15];
    }
    *o = '\0';
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int dispatch(const struct _u_request *req, struct _u_response *resp, void *unused)
{
    (void)unused;
    double t0 = now_ms();
    bool placed = false; /* a place in line (src/admit/) to leave at the end */
    char rid[64];
    new_request_id(req, rid);
    mb_ctx c = {.req = req,
                .resp = resp,
                .cfg = g_cfg,
                .request_id = rid,
                .route = "unmatched",
                .route_idx = -1};
    mb_set_header(&c, "X-Request-Id", rid);
    mb_trace trace;
    mb_trace_context(u_map_get_case(req->map_header, "traceparent"), &trace);
    mb_set_header(&c, "traceparent", trace.header);
    mb_cors(&c);

    const char *path = req->url_path ? req->url_path : "/";
    const char *method = req->http_verb ? req->http_verb : "";
    const char *clen = mb_header(&c, "Content-Length");

    if (header_bytes(req) > MAX_HEADER_BYTES) {
        /* libmicrohttpd itself refuses heads past about 40 KB (its
         * connection memory) with a bare 431; below that, answer the same
         * as a problem. */
        mb_set_header(&c, "Connection", "close");
        mb_reply_problem(&c, MB_E_HEADERS_TOO_LARGE, "The request headers exceed %d bytes.",
                         MAX_HEADER_BYTES);
        goto done;
    }
    if (mb_cors_preflight(&c, method))
        goto done;
    bool path_known = false;
    const mb_route *r = mb_route_find(method, path, &c, &path_known);
    size_t max_body = r && (r->flags & MB_R_CSV_BODY) ? g_cfg->max_csv_body : g_cfg->max_body;
    if ((clen != NULL && (strlen(clen) > 12 || strtoull(clen, NULL, 10) > max_body)) ||
        req->binary_body_length > max_body) {
        mb_set_header(&c, "Connection", "close");
        mb_reply_problem(&c, MB_E_PAYLOAD_TOO_LARGE, "The body is larger than %zu bytes.",
                         max_body);
        c.route_idx = -1; /* refused before routing: "unmatched" in the metrics */
        goto done;
    }
    if (r == NULL) {
        if (path_known) {
            char allow[96];
            mb_route_allow(path, allow, sizeof(allow));
            mb_set_header(&c, "Allow", allow);
            mb_reply_problem(&c, MB_E_METHOD_NOT_ALLOWED, "Use one of: %s.", allow);
        } else {
            mb_reply_problem(&c, MB_E_NOT_FOUND, "No such resource.");
        }
        goto done;
    }
    c.route = r->pattern;
    if (atomic_load(&draining) && strcmp(r->pattern, "/readyz") == 0) {
        /* Load balancers probing readiness take this replica out now. */
        mb_reply_problem(&c, MB_E_UNAVAILABLE, "This instance is shutting down.");
        goto done;
    }
    if (!(r->flags & MB_R_PUBLIC)) {
        const char *why = NULL;
        mb_err e = mb_token_verify(g_cfg, mb_header(&c, "Authorization"), time(NULL), &c.who, &why);
        if (e != MB_OK) {
            mb_set_header(&c, "WWW-Authenticate", "Bearer");
            mb_reply_problem(&c, MB_E_UNAUTHENTICATED, "%s",
                             why ? why : "Send a valid bearer token in the Authorization header.");
            goto done;
        }
        if (!mb_ratelimit_admit(&c))
            goto done;
    }
    /* probes and docs never wait (src/admit/); the place is left after the access log line,
     * so that the log's order is the order requests were served */
    if (!(r->flags & MB_R_PUBLIC)) {
        if (!mb_admit_enter()) {
            mb_reply_problem(&c, MB_E_UNAVAILABLE,
                             "Too many requests are waiting here; try again.");
            goto done;
        }
        placed = true;
    }
    if (r->flags & MB_R_TX) {
        mb_run_tx(&c, r);
    } else {
        mb_cache_req cq;
        if (!mb_cache_before(&c, &cq)) {
            r->handler(&c);
            mb_cache_after(&c, &cq);
        }
    }

done:
    mb_db_release(&c.db);
    if (atomic_load(&draining))
        mb_set_header(&c, "Connection", "close");
    double ms = now_ms() - t0;
    mb_metrics_observe(c.route_idx, (int)resp->status, ms);
    mb_log_access(&(mb_access){.request_id = rid,
                               .trace_id = trace.trace_id,
                               .method = method,
                               .route = c.route,
                               .actor = c.who.sub[0] ? c.who.sub : "-",
                               .status = resp->status,
                               .code = resp->status >= 400 ? c.problem : NULL,
                               .ms = ms,
                               .db_trips = c.db.trips});
    if (placed)
        mb_admit_leave();
    return U_CALLBACK_COMPLETE;
}

/* Threading. Ulfius calls handlers synchronously and a handler blocks in libpq,
 * so an MHD worker that serves several connections (the epoll thread pool)
 * stalls all of them behind one slow query; measured: a second request queued
 * behind a first one waiting on a row lock although other workers idled. So a
 * connection that is being served has a thread of its own, at most
 * HTTP_MAX_CONNECTIONS of them, and the database pool queues the requests
 * first come, first served. Connections that have not sent a whole request
 * head yet wait in the front (front.c) without a thread; a served connection
 * idle for HTTP_IDLE_TIMEOUT_SECONDS is closed, which ends its thread.
 *
 * The listening socket is ours: SIGTERM closes it at once, so new connections
 * are refused (a load balancer moves on) rather than left in the backlog while
 * we drain, and a second process can never share the port (MHD's
 * LISTENING_ADDRESS_REUSE set SO_REUSEPORT, which let two instances split one
 * port's connections silently). */
static int listen_fd = -1;

int mb_serve(const mb_config *cfg)
{
    g_cfg = cfg;
    mb_router_init();
    mb_raise_fd_limit();
    mb_token_cache_init();
    mb_cache_init((size_t)cfg->cache_mb * 1024 * 1024);
    mb_admit_init(cfg->max_running);
    if (mb_ratelimit_init(cfg) != 0) {
        y_log_message(Y_LOG_LEVEL_ERROR, "cannot allocate the rate limiter's tables");
        return 1;
    }
    if (mb_identity_start(cfg) != 0)
        return 1;

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    listen_fd = mb_open_listener(cfg->port);
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
    inst.max_post_body_size =
        (cfg->max_csv_body > cfg->max_body ? cfg->max_csv_body : cfg->max_body) + 1;
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
        {MHD_OPTION_CONNECTION_TIMEOUT, cfg->idle_timeout_s, NULL},
        /* never reached: the front refuses at max_connections (front.c says
         * why MHD's own limit must not be hit) */
        {MHD_OPTION_CONNECTION_LIMIT, cfg->max_connections + 4096, NULL},
        {MHD_OPTION_NOTIFY_CONNECTION, (intptr_t)mb_front_notify, NULL},
        /* MHD zeroes a connection's whole pool for every request on it: keep
         * it small, just over MAX_HEADER_BYTES, so that heads up to that are
         * answered by us (a 33-39 KB head gets our 431 problem, 45 KB MHD's
         * bare 431). 64 KB cost the warm list a tenth of its rate and 6.6 MB
         * of RSS at 256 connections (README, Performance). */
        {MHD_OPTION_CONNECTION_MEMORY_LIMIT, 40 * 1024, NULL},
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
    if (mb_front_start(inst.mhd_daemon, listen_fd, cfg->max_connections,
                       cfg->max_connections_per_client, (unsigned)cfg->header_timeout_s) != 0) {
        y_log_message(Y_LOG_LEVEL_ERROR, "cannot start the connection front");
        ulfius_stop_framework(&inst);
        ulfius_clean_instance(&inst);
        close(listen_fd);
        return 1;
    }
    y_log_message(Y_LOG_LEVEL_INFO,
                  "listening on port %d (a thread per connection served, up to %d; idle "
                  "connections wait without one; pool %d)",
                  cfg->port, cfg->max_connections, cfg->pool_size);

    int sig = 0;
    sigwait(&set, &sig);
    y_log_message(Y_LOG_LEVEL_INFO, "signal %d: draining", sig);
    /* Stop accepting (new connections are refused, so a load balancer moves
     * on at once), answer what is in flight, and tell keep-alive clients to
     * go elsewhere (Connection: close on every answer from now on). */
    atomic_store(&draining, true);
    mb_front_stop();
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
    mb_identity_stop();
    mb_token_cache_free();
    mb_cache_free();
    mb_ratelimit_free();
    y_log_message(Y_LOG_LEVEL_INFO, "stopped");
    return 0;
}
