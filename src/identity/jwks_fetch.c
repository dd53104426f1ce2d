/* Fetching the JWKS of JWT_JWKS_URL with libcurl: at start, periodically
 * (Cache-Control max-age, default 5 min), and when a token names a kid we do
 * not know, at most once per JWKS_REFETCH_MIN_SECONDS however many requests
 * ask (single flight: the requests that arrive while a fetch runs wait for
 * that fetch). A failed fetch or a bad document never drops the keys we
 * have: the provider being down is logged and shown in /metrics. */
#include <ctype.h>
#include <curl/curl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <yder.h>

#include "mb_identity.h"
#include "mb_token_cache.h"

#define CONNECT_TIMEOUT_S 3L
#define FETCH_TIMEOUT_S 5L
#define DEFAULT_REFRESH_S 300
#define MAX_REFRESH_S 86400
#define RETRY_UNREADY_S 2 /* no key yet: try again soon */

static const mb_config *g_cfg;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t done_cv;  /* a fetch finished */
static pthread_cond_t timer_cv; /* wakes the refresh thread (stop) */
static bool fetching, stopping, started;
static unsigned long fetch_seq;
static double last_refetch = -1e18; /* monotonic s of the last unknown-kid fetch */
static int refresh_s = DEFAULT_REFRESH_S;
static bool last_ok;
static pthread_t refresher;

static atomic_ullong fetch_ok, fetch_err, refetch_asked, refetch_done;
static atomic_llong last_success_unix;
static atomic_ullong keys_ignored;

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef struct {
    char *buf;
    size_t len;
    bool too_large;
    long max_age; /* -1: none */
} fetch_buf;

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    fetch_buf *b = arg;
    size_t add = size * n;
    if (b->len + add > MB_JWKS_MAX_BYTES) {
        b->too_large = true;
        return 0; /* aborts the transfer */
    }
    char *nb = realloc(b->buf, b->len + add + 1);
    if (nb == NULL)
        return 0;
    memcpy(nb + b->len, p, add);
    b->buf = nb;
    b->len += add;
    return add;
}

static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
    fetch_buf *b = arg;
    size_t len = size * n;
    if (len > 14 && strncasecmp(p, "cache-control:", 14) == 0) {
        char line[256];
        size_t l = len < sizeof(line) - 1 ? len : sizeof(line) - 1;
        memcpy(line, p, l);
        line[l] = '\0';
        for (char *c = line; *c; c++)
            *c = (char)tolower((unsigned char)*c);
        char *m = strstr(line, "max-age=");
        if (m != NULL)
            b->max_age = strtol(m + 8, NULL, 10);
    }
    return len;
}

/* One GET of the JWKS; installs its keys. Returns true on success. */
static bool fetch_once(void)
{
    fetch_buf b = {.max_age = -1};
    CURL *h = curl_easy_init();
    if (h == NULL)
        return false;
    char errbuf[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(h, CURLOPT_URL, g_cfg->jwks_url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https,http");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, CONNECT_TIMEOUT_S);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, FETCH_TIMEOUT_S);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)MB_JWKS_MAX_BYTES);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &b);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "mpn-benefits");
    CURLcode rc = curl_easy_perform(h);
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(h);
    bool ok = false;
    size_t kept = mb_jwks_count();
    if (b.too_large || rc == CURLE_FILESIZE_EXCEEDED) {
        y_log_message(Y_LOG_LEVEL_ERROR, "jwks: document larger than %d bytes: keeping %zu keys",
                      MB_JWKS_MAX_BYTES, kept);
    } else if (rc != CURLE_OK) {
        y_log_message(Y_LOG_LEVEL_ERROR, "jwks: provider unreachable (%s): keeping %zu keys",
                      errbuf[0] ? errbuf : curl_easy_strerror(rc), kept);
    } else if (status != 200) {
        y_log_message(Y_LOG_LEVEL_ERROR, "jwks: provider answered %ld: keeping %zu keys", status,
                      kept);
    } else {
        char why[128] = "";
        mb_keyset *ks = mb_jwks_parse(b.buf ? b.buf : "", b.len, why, sizeof(why));
        if (ks == NULL) {
            y_log_message(Y_LOG_LEVEL_ERROR, "jwks: unusable document (%s): keeping %zu keys", why,
                          kept);
        } else {
            size_t n = ks->n;
            atomic_store(&keys_ignored, ks->ignored);
            if (ks->ignored > 0)
                y_log_message(Y_LOG_LEVEL_WARNING, "jwks: %zu keys ignored: %s", ks->ignored,
                              ks->notes);
            if (mb_jwks_install(ks)) {
                ok = true;
                y_log_message(Y_LOG_LEVEL_INFO, "jwks: %zu keys", n);
            } else {
                y_log_message(Y_LOG_LEVEL_ERROR,
                              "jwks: no usable key in the document: keeping "
                              "%zu keys",
                              kept);
            }
        }
    }
    free(b.buf);
    pthread_mutex_lock(&mu);
    if (ok && b.max_age >= 0) {
        long s = b.max_age;
        if (s < g_cfg->jwks_refetch_min_s)
            s = g_cfg->jwks_refetch_min_s;
        if (s > MAX_REFRESH_S)
            s = MAX_REFRESH_S;
        refresh_s = (int)s;
    } else if (ok) {
        refresh_s = DEFAULT_REFRESH_S;
    }
    last_ok = ok;
    pthread_mutex_unlock(&mu);
    atomic_fetch_add(ok ? &fetch_ok : &fetch_err, 1);
    if (ok)
        atomic_store(&last_success_unix, (long long)time(NULL));
    return ok;
}

/* Single flight: one fetch at a time; who comes while one runs waits for it.
 * An unknown kid starts a fetch only JWKS_REFETCH_MIN_SECONDS after the last
 * one it started. */
static void fetch(bool for_unknown_kid)
{
    pthread_mutex_lock(&mu);
    if (fetching) {
        unsigned long seq = fetch_seq;
        while (fetching && fetch_seq == seq)
            pthread_cond_wait(&done_cv, &mu);
        pthread_mutex_unlock(&mu);
        return;
    }
    double now = mono_s();
    if (for_unknown_kid && now - last_refetch < g_cfg->jwks_refetch_min_s) {
        pthread_mutex_unlock(&mu);
        return;
    }
    if (for_unknown_kid)
        last_refetch = now;
    fetching = true;
    pthread_mutex_unlock(&mu);
    if (for_unknown_kid)
        atomic_fetch_add(&refetch_done, 1);
    fetch_once();
    pthread_mutex_lock(&mu);
    fetching = false;
    fetch_seq++;
    pthread_cond_broadcast(&done_cv);
    pthread_mutex_unlock(&mu);
}

static void refetch_for_unknown_kid(void)
{
    atomic_fetch_add(&refetch_asked, 1);
    fetch(true);
}

static void *refresh_loop(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&mu);
    while (!stopping) {
        int wait_s =
            last_ok ? refresh_s
            : mb_jwks_count() == 0
                ? RETRY_UNREADY_S
                : (g_cfg->jwks_refetch_min_s < refresh_s ? g_cfg->jwks_refetch_min_s : refresh_s);
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += wait_s;
        int rc = 0;
        while (!stopping && rc == 0)
            rc = pthread_cond_timedwait(&timer_cv, &mu, &until);
        if (stopping)
            break;
        pthread_mutex_unlock(&mu);
        fetch(false);
        pthread_mutex_lock(&mu);
    }
    pthread_mutex_unlock(&mu);
    return NULL;
}

int mb_jwks_start(const mb_config *cfg)
{
    if (cfg->jwks_url == NULL)
        return 0;
    g_cfg = cfg;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&timer_cv, &ca);
    pthread_cond_init(&done_cv, &ca);
    pthread_condattr_destroy(&ca);
    stopping = false;
    fetch(false);
    if (pthread_create(&refresher, NULL, refresh_loop, NULL) != 0) {
        y_log_message(Y_LOG_LEVEL_ERROR, "jwks: cannot start the refresh thread");
        return -1;
    }
    started = true;
    mb_jwks_refetch_hook = refetch_for_unknown_kid;
    return 0;
}

void mb_jwks_stop(void)
{
    if (!started)
        return;
    mb_jwks_refetch_hook = NULL;
    pthread_mutex_lock(&mu);
    stopping = true;
    pthread_cond_broadcast(&timer_cv);
    pthread_mutex_unlock(&mu);
    pthread_join(refresher, NULL);
    started = false;
    mb_jwks_clear();
    curl_global_cleanup();
}

bool mb_jwks_ready(void)
{
    return g_cfg == NULL || g_cfg->jwks_url == NULL || atomic_load(&last_success_unix) > 0;
}

char *mb_identity_metrics(void)
{
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    if (f == NULL)
        return NULL;
    if (g_cfg != NULL && g_cfg->jwks_url != NULL) {
        pthread_mutex_lock(&mu);
        bool up = last_ok;
        pthread_mutex_unlock(&mu);
        fprintf(f,
                "# HELP mpn_jwks_keys Signing keys held from the JWKS.\n"
                "# TYPE mpn_jwks_keys gauge\nmpn_jwks_keys %zu\n"
                "# HELP mpn_jwks_keys_ignored Keys of the last JWKS document left out.\n"
                "# TYPE mpn_jwks_keys_ignored gauge\nmpn_jwks_keys_ignored %llu\n"
                "# HELP mpn_jwks_provider_up 1 when the last JWKS fetch succeeded.\n"
                "# TYPE mpn_jwks_provider_up gauge\nmpn_jwks_provider_up %d\n"
                "# HELP mpn_jwks_fetches_total JWKS fetches by result.\n"
                "# TYPE mpn_jwks_fetches_total counter\n"
                "mpn_jwks_fetches_total{result=\"ok\"} %llu\n"
                "mpn_jwks_fetches_total{result=\"error\"} %llu\n"
                "# HELP mpn_jwks_unknown_kid_total Tokens that named an unknown kid, and the "
                "fetches they started.\n"
                "# TYPE mpn_jwks_unknown_kid_total counter\n"
                "mpn_jwks_unknown_kid_total{fetched=\"no\"} %llu\n"
                "mpn_jwks_unknown_kid_total{fetched=\"yes\"} %llu\n"
                "# HELP mpn_jwks_last_success_timestamp_seconds Time of the last good fetch.\n"
                "# TYPE mpn_jwks_last_success_timestamp_seconds gauge\n"
                "mpn_jwks_last_success_timestamp_seconds %lld\n",
                mb_jwks_count(), atomic_load(&keys_ignored), up ? 1 : 0, atomic_load(&fetch_ok),
                atomic_load(&fetch_err), atomic_load(&refetch_asked) - atomic_load(&refetch_done),
                atomic_load(&refetch_done), atomic_load(&last_success_unix));
    }
    mb_revocation_metrics(f);
    fclose(f);
    return out;
}

int mb_identity_start(const mb_config *cfg)
{
    /* Our threads never take SIGTERM/SIGINT (the server's sigwait does),
     * whatever the caller's mask: they start with every signal blocked. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int rc = (mb_jwks_start(cfg) != 0 || mb_revocation_start(cfg) != 0) ? -1 : 0;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}

void mb_identity_stop(void)
{
    mb_revocation_stop();
    mb_jwks_stop();
}
