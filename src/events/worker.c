/* The delivery worker: claims due webhook deliveries (FOR UPDATE SKIP LOCKED
 * plus a lease, so any number of processes share the work and a crashed
 * process's claims are taken over when their lease ends), sends them with
 * libcurl's multi interface (many at once: a slow receiver holds one slot, not
 * the others), and records each answer: success, or the next attempt of the
 * retry schedule, or failed; a webhook failing for 3 days is disabled with a
 * webhook.disabled event. Signatures are computed by PostgreSQL at claim time
 * (pgcrypto's hmac), so the secrets never leave the database decrypted. */
#include <curl/curl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <yder.h>

#include "mb_events.h"

#define MAX_INFLIGHT 32
#define RECEIVER_BODY_MAX (64 * 1024) /* what is read of an answer, at most */

typedef struct {
    CURL *h;
    bool mail;   /* a mail_deliveries row, else a webhook delivery */
    size_t sent; /* of body, for a mail's upload */
    struct curl_slist *headers;
    char id[40];
    char *body;
    int attempts;
    bool blocked; /* the address connected to is not allowed */
    size_t received;
    char errbuf[CURL_ERROR_SIZE];
} job;

static pthread_t thread;
static atomic_bool stop_flag;
static bool running;
static char *kek;
static int schedule[16];
static int nschedule;
static int lease_s = 30;

static void load_settings(void)
{
    /* DESIGN §4b: after 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h. The test-only
     * WEBHOOK_RETRY_SCHEDULE (seconds, comma-separated) shortens it. */
    static const int def[] = {5, 300, 1800, 7200, 18000, 36000, 36000};
    nschedule = 0;
    const char *s = getenv("WEBHOOK_RETRY_SCHEDULE");
    while (s != NULL && *s && nschedule < 16) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 0 || v > 86400) {
            nschedule = 0;
            break;
        }
        schedule[nschedule++] = (int)v;
        s = *end == ',' ? end + 1 : end;
        if (*end != ',' && *end != '\0') {
            nschedule = 0;
            break;
        }
    }
    if (nschedule == 0)
        for (size_t i = 0; i < sizeof(def) / sizeof(def[0]); i++)
            schedule[nschedule++] = def[i];
    /* The lease must outlast an attempt (10 s). Test-only: WEBHOOK_CLAIM_SECONDS. */
    const char *l = getenv("WEBHOOK_CLAIM_SECONDS");
    lease_s = l ? atoi(l) : 30;
    if (lease_s < 11)
        lease_s = 11;
}

static size_t discard(char *ptr, size_t size, size_t n, void *cls)
{
    (void)ptr;
    job *j = cls;
    j->received += size * n;
    /* A huge answer is not read to its end: a short write ends the transfer. */
    return j->received > RECEIVER_BODY_MAX ? 0 : size * n;
}

static curl_socket_t open_socket(void *cls, curlsocktype purpose, struct curl_sockaddr *a)
{
    job *j = cls;
    (void)purpose;
    if (mb_addr_blocked(&a->addr)) {
        j->blocked = true;
        return CURL_SOCKET_BAD;
    }
    return socket(a->family, a->socktype, a->protocol);
}

static void job_free(job *j)
{
    if (j == NULL)
        return;
    if (j->h)
        curl_easy_cleanup(j->h);
    curl_slist_free_all(j->headers);
    free(j->body);
    free(j);
}

static job *job_new(const char *id, const char *event_id, const char *url, const char *payload,
                    const char *ts, const char *sigs, int attempts)
{
    job *j = calloc(1, sizeof(*j));
    if (j == NULL)
        return NULL;
    snprintf(j->id, sizeof(j->id), "%s", id);
    j->attempts = attempts;
    j->body = strdup(payload);
    j->h = curl_easy_init();
    char line[512];
    struct curl_slist *hs = curl_slist_append(NULL, "Content-Type: application/json");
    hs = curl_slist_append(hs, "User-Agent: mpn-benefits-webhooks/1");
    snprintf(line, sizeof(line), "webhook-id: %s", event_id);
    hs = curl_slist_append(hs, line);
    snprintf(line, sizeof(line), "webhook-timestamp: %s", ts);
    hs = curl_slist_append(hs, line);
    snprintf(line, sizeof(line), "webhook-signature: %s", sigs);
    hs = curl_slist_append(hs, line);
    hs = curl_slist_append(hs, "Expect:");
    j->headers = hs;
    if (j->body == NULL || j->h == NULL || hs == NULL) {
        job_free(j);
        return NULL;
    }
    CURL *h = j->h;
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, j->body);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(j->body));
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hs);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 10L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_PROXY, ""); /* never through an environment proxy */
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, mb_webhook_allow_http() ? "http,https" : "https");
    curl_easy_setopt(h, CURLOPT_OPENSOCKETFUNCTION, open_socket);
    curl_easy_setopt(h, CURLOPT_OPENSOCKETDATA, j);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, j);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, j->errbuf);
    curl_easy_setopt(h, CURLOPT_PRIVATE, j);
    return j;
}

/* Claims up to n due deliveries and adds them to multi. Returns how many. */
static int claim(CURLM *multi, job **slots, int n)
{
    char lim[12], lease[24];
    snprintf(lim, sizeof(lim), "%d", n);
    snprintf(lease, sizeof(lease), "%d seconds", lease_s);
    const char *p[] = {lim, lease, kek};
    mb_db db = {0};
    PGresult *r = NULL;
    mb_err e = mb_db_exec(
        &db, &r,
        "WITH c AS (SELECT d.id FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id "
        "WHERE d.status = 'pending' AND d.next_attempt_at <= now() AND w.enabled "
        "AND (d.claimed_until IS NULL OR d.claimed_until < now()) "
        "ORDER BY d.next_attempt_at LIMIT $1::int FOR UPDATE OF d SKIP LOCKED), "
        "u AS (UPDATE webhook_deliveries d SET claimed_until = now() + $2::interval, "
        "attempts = d.attempts + 1 FROM c WHERE d.id = c.id "
        "RETURNING d.id, d.webhook_id, d.event_id, d.payload::text AS body, d.attempts), "
        "t AS (SELECT extract(epoch FROM now())::bigint::text AS ts) "
        "SELECT u.id::text, u.event_id, w.url, u.body, t.ts, "
        "'v1,' || encode(hmac(convert_to(u.event_id || '.' || t.ts || '.' || u.body, 'UTF8'), "
        "decode(substr(pgp_sym_decrypt(w.secret_enc, $3), 7), 'base64'), 'sha256'), 'base64') "
        "|| CASE WHEN w.old_until > now() THEN ' v1,' || encode(hmac(convert_to(u.event_id || "
        "'.' || t.ts || '.' || u.body, 'UTF8'), decode(substr(pgp_sym_decrypt(w.old_secret_enc, "
        "$3), 7), 'base64'), 'sha256'), 'base64') ELSE '' END, u.attempts "
        "FROM u JOIN webhooks w ON w.id = u.webhook_id, t",
        3, p);
    mb_db_release(&db);
    if (e != MB_OK)
        return 0;
    int got = PQntuples(r), added = 0;
    for (int i = 0; i < got; i++) {
        job *j = job_new(PQgetvalue(r, i, 0), PQgetvalue(r, i, 1), PQgetvalue(r, i, 2),
                         PQgetvalue(r, i, 3), PQgetvalue(r, i, 4), PQgetvalue(r, i, 5),
                         atoi(PQgetvalue(r, i, 6)));
        if (j != NULL && curl_multi_add_handle(multi, j->h) != CURLM_OK) {
            job_free(j);
            j = NULL;
        }
        /* not sent (j NULL): its lease ends and it is claimed again */
        for (int k = 0; j != NULL && k < MAX_INFLIGHT; k++)
            if (slots[k] == NULL) {
                slots[k] = j;
                added++;
                break;
            }
    }
    mb_db_clear(&r);
    return added;
}

static void record(job *j, CURLcode rc)
{
    long code = 0;
    curl_easy_getinfo(j->h, CURLINFO_RESPONSE_CODE, &code);
    bool ok = code >= 200 && code < 300 && (rc == CURLE_OK || rc == CURLE_WRITE_ERROR);
    char status[12], error[256], delay[24], attempts[12], max[12];
    snprintf(status, sizeof(status), "%ld", code);
    if (j->blocked)
        snprintf(error, sizeof(error), "the address is loopback, private or link-local");
    else if (code >= 300 && code < 400)
        snprintf(error, sizeof(error), "answered %ld: redirects are not followed", code);
    else if (rc == CURLE_OPERATION_TIMEDOUT)
        snprintf(error, sizeof(error), "no answer within 10 s");
    else if (rc != CURLE_OK && rc != CURLE_WRITE_ERROR)
        snprintf(error, sizeof(error), "%s", j->errbuf[0] ? j->errbuf : curl_easy_strerror(rc));
    else
        snprintf(error, sizeof(error), "answered %ld", code);
    int next = j->attempts <= nschedule ? schedule[j->attempts - 1] : 0;
    snprintf(delay, sizeof(delay), "%d seconds", next);
    snprintf(attempts, sizeof(attempts), "%d", j->attempts);
    snprintf(max, sizeof(max), "%d", nschedule);
    mb_db db = {0};
    PGresult *r = NULL;
    mb_err e;
    if (ok) {
        const char *p[] = {j->id, status};
        e = mb_db_exec(&db, NULL,
                       "WITH d AS (UPDATE webhook_deliveries SET status = 'succeeded', "
                       "last_status_code = $2::int, last_error = NULL, delivered_at = now(), "
                       "claimed_until = NULL WHERE id = $1::uuid AND status = 'pending' "
                       "RETURNING webhook_id) "
                       "UPDATE webhooks w SET failing_since = NULL FROM d "
                       "WHERE w.id = d.webhook_id AND w.failing_since IS NOT NULL",
                       2, p);
        mb_db_release(&db);
        if (e != MB_OK)
            y_log_message(Y_LOG_LEVEL_WARNING, "webhooks: could not record delivery %s", j->id);
        return;
    }
    const char *p[] = {j->id, code ? status : NULL, error, attempts, max, delay};
    e = mb_db_begin(&db);
    if (e == MB_OK)
        e = mb_db_exec(
            &db, &r,
            "WITH d AS (UPDATE webhook_deliveries SET last_status_code = $2::int, "
            "last_error = $3, claimed_until = NULL, "
            "status = CASE WHEN $4::int > $5::int THEN 'failed' ELSE 'pending' END, "
            "next_attempt_at = now() + $6::interval "
            "WHERE id = $1::uuid AND status = 'pending' RETURNING webhook_id) "
            "UPDATE webhooks w SET failing_since = COALESCE(w.failing_since, now()) FROM d "
            "WHERE w.id = d.webhook_id "
            "RETURNING w.id::text, w.partner_id::text, "
            "w.enabled AND w.failing_since < now() - interval '3 days'",
            6, p);
    /* Failing for 3 days: disabled, and the partner is told. */
    if (e == MB_OK && PQntuples(r) == 1 && PQgetvalue(r, 0, 2)[0] == 't') {
        const char *wp[] = {PQgetvalue(r, 0, 0)};
        e = mb_db_exec(&db, NULL,
                       "UPDATE webhooks SET enabled = false, updated_at = now(), "
                       "disabled_reason = 'every delivery failed for 3 days' WHERE id = $1::uuid",
                       1, wp);
        if (e == MB_OK)
            e = mb_event(&db, PQgetvalue(r, 0, 1), "webhook.disabled", "webhook",
                         PQgetvalue(r, 0, 0), NULL, NULL);
        if (e == MB_OK)
            y_log_message(Y_LOG_LEVEL_WARNING,
                          "webhooks: webhook %s disabled after 3 days of "
                          "failures",
                          PQgetvalue(r, 0, 0));
    }
    mb_db_clear(&r);
    if (e == MB_OK)
        e = mb_db_commit(&db);
    mb_db_release(&db);
    if (e != MB_OK)
        y_log_message(Y_LOG_LEVEL_WARNING, "webhooks: could not record delivery %s", j->id);
}

/* --- mail to the marketing contact -------------------------------------------------------- */

static size_t mail_read(char *buf, size_t size, size_t n, void *cls)
{
    job *j = cls;
    size_t left = strlen(j->body) - j->sent, want = size * n;
    size_t k = left < want ? left : want;
    memcpy(buf, j->body + j->sent, k);
    j->sent += k;
    return k;
}

/* The message: headers, a blank line, the body with CRLF line ends. */
static char *mail_message(const char *from, const char *to, const char *subject, const char *body,
                          const char *event_id)
{
    char date[64];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
    size_t cap = strlen(from) + strlen(to) + strlen(subject) + 2 * strlen(body) + 512;
    char *m = malloc(cap);
    if (m == NULL)
        return NULL;
    size_t o = (size_t)snprintf(m, cap,
                                "Date: %s\r\nFrom: %s\r\nTo: %s\r\nSubject: %s\r\n"
                                "Message-ID: <%s.%ld@mpn-benefits>\r\nMIME-Version: 1.0\r\n"
                                "Content-Type: text/plain; charset=utf-8\r\n"
                                "Content-Transfer-Encoding: 8bit\r\n\r\n",
                                date, from, to, subject, event_id, (long)now);
    for (const char *b = body; *b && o + 3 < cap; b++) {
        if (*b == '\n')
            m[o++] = '\r';
        m[o++] = *b;
    }
    m[o] = '\0';
    return m;
}

/* Claims due mails; without SMTP_URL they are recorded as not sent (and
 * logged): never dropped silently. */
static int claim_mail(CURLM *multi, job **slots, int n)
{
    const char *smtp = getenv("SMTP_URL");
    mb_db db = {0};
    PGresult *r = NULL;
    if (smtp == NULL || smtp[0] == '\0') {
        mb_err e = mb_db_exec(&db, &r,
                              "UPDATE mail_deliveries SET status = 'not_sent', "
                              "last_error = 'SMTP_URL is not set' WHERE status = 'pending' "
                              "RETURNING event_id, to_addr, partner_id::text",
                              0, NULL);
        mb_db_release(&db);
        for (int i = 0; e == MB_OK && i < PQntuples(r); i++)
            y_log_message(Y_LOG_LEVEL_WARNING,
                          "mail: not sent (SMTP_URL is not set): event %s of partner %s to %s",
                          PQgetvalue(r, i, 0), PQgetvalue(r, i, 2), PQgetvalue(r, i, 1));
        mb_db_clear(&r);
        return 0;
    }
    char lim[12], lease[24];
    snprintf(lim, sizeof(lim), "%d", n);
    snprintf(lease, sizeof(lease), "%d seconds", lease_s);
    const char *p[] = {lim, lease};
    mb_err e = mb_db_exec(&db, &r,
                          "WITH c AS (SELECT id FROM mail_deliveries WHERE status = 'pending' "
                          "AND next_attempt_at <= now() AND (claimed_until IS NULL OR "
                          "claimed_until < now()) ORDER BY next_attempt_at LIMIT $1::int "
                          "FOR UPDATE SKIP LOCKED) "
                          "UPDATE mail_deliveries d SET claimed_until = now() + $2::interval, "
                          "attempts = d.attempts + 1 FROM c WHERE d.id = c.id "
                          "RETURNING d.id::text, d.to_addr, d.subject, d.body, d.event_id, "
                          "d.attempts",
                          2, p);
    mb_db_release(&db);
    if (e != MB_OK)
        return 0;
    const char *from = getenv("MAIL_FROM") ? getenv("MAIL_FROM") : "mpn-benefits@localhost";
    int added = 0;
    for (int i = 0; i < PQntuples(r); i++) {
        job *j = calloc(1, sizeof(*j));
        if (j == NULL)
            break;
        j->mail = true;
        snprintf(j->id, sizeof(j->id), "%s", PQgetvalue(r, i, 0));
        j->attempts = atoi(PQgetvalue(r, i, 5));
        j->body = mail_message(from, PQgetvalue(r, i, 1), PQgetvalue(r, i, 2), PQgetvalue(r, i, 3),
                               PQgetvalue(r, i, 4));
        j->h = curl_easy_init();
        char rcpt[320];
        snprintf(rcpt, sizeof(rcpt), "<%s>", PQgetvalue(r, i, 1));
        j->headers = curl_slist_append(NULL, rcpt);
        char mfrom[320];
        snprintf(mfrom, sizeof(mfrom), "<%s>", from);
        if (j->body == NULL || j->h == NULL || j->headers == NULL) {
            job_free(j);
            continue;
        }
        CURL *h = j->h;
        curl_easy_setopt(h, CURLOPT_URL, smtp);
        curl_easy_setopt(h, CURLOPT_MAIL_FROM, mfrom);
        curl_easy_setopt(h, CURLOPT_MAIL_RCPT, j->headers);
        curl_easy_setopt(h, CURLOPT_READFUNCTION, mail_read);
        curl_easy_setopt(h, CURLOPT_READDATA, j);
        curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)strlen(j->body));
        curl_easy_setopt(h, CURLOPT_TIMEOUT, 10L);
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(h, CURLOPT_PROXY, "");
        curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "smtp,smtps");
        curl_easy_setopt(h, CURLOPT_ERRORBUFFER, j->errbuf);
        curl_easy_setopt(h, CURLOPT_PRIVATE, j);
        if (curl_multi_add_handle(multi, h) != CURLM_OK) {
            job_free(j);
            continue;
        }
        for (int k = 0; k < MAX_INFLIGHT; k++)
            if (slots[k] == NULL) {
                slots[k] = j;
                added++;
                break;
            }
    }
    mb_db_clear(&r);
    return added;
}

static void record_mail(job *j, CURLcode rc)
{
    char error[256], delay[24], attempts[12], max[12];
    snprintf(error, sizeof(error), "%s", j->errbuf[0] ? j->errbuf : curl_easy_strerror(rc));
    int next = j->attempts <= nschedule ? schedule[j->attempts - 1] : 0;
    snprintf(delay, sizeof(delay), "%d seconds", next);
    snprintf(attempts, sizeof(attempts), "%d", j->attempts);
    snprintf(max, sizeof(max), "%d", nschedule);
    mb_db db = {0};
    mb_err e;
    if (rc == CURLE_OK) {
        const char *p[] = {j->id};
        e = mb_db_exec(&db, NULL,
                       "UPDATE mail_deliveries SET status = 'succeeded', last_error = NULL, "
                       "delivered_at = now(), claimed_until = NULL WHERE id = $1::uuid "
                       "AND status = 'pending'",
                       1, p);
    } else {
        const char *p[] = {j->id, error, attempts, max, delay};
        e = mb_db_exec(&db, NULL,
                       "UPDATE mail_deliveries SET last_error = $2, claimed_until = NULL, "
                       "status = CASE WHEN $3::int > $4::int THEN 'failed' ELSE 'pending' END, "
                       "next_attempt_at = now() + $5::interval "
                       "WHERE id = $1::uuid AND status = 'pending'",
                       5, p);
        y_log_message(Y_LOG_LEVEL_WARNING, "mail: attempt %d of %s failed: %s", j->attempts, j->id,
                      error);
    }
    mb_db_release(&db);
    if (e != MB_OK)
        y_log_message(Y_LOG_LEVEL_WARNING, "mail: could not record %s", j->id);
}

static void *worker_main(void *arg)
{
    (void)arg;
    CURLM *multi = curl_multi_init();
    job *slots[MAX_INFLIGHT] = {0};
    int inflight = 0;
    struct timespec next_claim = {0};
    while (!atomic_load(&stop_flag)) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (inflight < MAX_INFLIGHT &&
            (now.tv_sec > next_claim.tv_sec ||
             (now.tv_sec == next_claim.tv_sec && now.tv_nsec >= next_claim.tv_nsec))) {
            int got = claim(multi, slots, MAX_INFLIGHT - inflight);
            inflight += got;
            int mails = claim_mail(multi, slots, MAX_INFLIGHT - inflight);
            inflight += mails;
            got += mails;
            if (got == 0) {
                next_claim = now;
                next_claim.tv_nsec += 300 * 1000000L;
                if (next_claim.tv_nsec >= 1000000000L) {
                    next_claim.tv_sec++;
                    next_claim.tv_nsec -= 1000000000L;
                }
            }
        }
        int running_handles = 0;
        curl_multi_perform(multi, &running_handles);
        CURLMsg *m;
        int left;
        while ((m = curl_multi_info_read(multi, &left)) != NULL) {
            if (m->msg != CURLMSG_DONE)
                continue;
            job *j = NULL;
            curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&j);
            CURLcode rc = m->data.result;
            curl_multi_remove_handle(multi, m->easy_handle);
            if (j->mail)
                record_mail(j, rc);
            else
                record(j, rc);
            for (int k = 0; k < MAX_INFLIGHT; k++)
                if (slots[k] == j)
                    slots[k] = NULL;
            job_free(j);
            inflight--;
        }
        curl_multi_poll(multi, NULL, 0, 100, NULL);
    }
    /* What is in flight is not recorded: its lease ends and it is sent again
     * (at least once). */
    for (int k = 0; k < MAX_INFLIGHT; k++)
        if (slots[k] != NULL) {
            curl_multi_remove_handle(multi, slots[k]->h);
            job_free(slots[k]);
        }
    curl_multi_cleanup(multi);
    return NULL;
}

int mb_worker_start(const char *key)
{
    load_settings();
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return -1;
    kek = strdup(key);
    if (kek == NULL)
        return -1;
    atomic_store(&stop_flag, false);
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, &old);
    int rc = pthread_create(&thread, NULL, worker_main, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        free(kek);
        kek = NULL;
        return -1;
    }
    running = true;
    if (mb_scheduler_start() != 0)
        y_log_message(Y_LOG_LEVEL_ERROR, "cannot start the scheduler");
    return 0;
}

void mb_worker_stop(void)
{
    mb_scheduler_stop();
    atomic_store(&stop_flag, true);
    if (running)
        pthread_join(thread, NULL);
    running = false;
    free(kek);
    kek = NULL;
    curl_global_cleanup();
}
