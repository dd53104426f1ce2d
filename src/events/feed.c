/* The feed's fan-out. One thread holds a connection of its own that LISTENs
 * on mb_events (emit_event notifies "partner:seq" at commit) and records, per
 * partner, the newest event number heard of; Server-Sent Events clients wait
 * on one condition variable until their partner's number passes theirs. So
 * waiting costs no query and no pool connection, however many clients wait. */
#include <libpq-fe.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <yder.h>

#include "mb_events.h"

const char *const mb_event_types[] = {"purchase.created",
                                      "purchase.renewed",
                                      "purchase.cancelled",
                                      "benefit.keys_revealed",
                                      "seat.assigned",
                                      "seat.removed",
                                      "activation.requested",
                                      "activation.completed",
                                      "activation.rejected",
                                      "support_request.created",
                                      "marketing_contact.updated",
                                      "user.created",
                                      "user.updated",
                                      "user.deleted",
                                      "cancellation_request.created",
                                      "cancellation_request.completed",
                                      "cancellation_request.rejected",
                                      "benefit.expiring",
                                      "purchase.renewal_open",
                                      "purchase.refund_window_closing",
                                      "webhook.disabled",
                                      NULL};

bool mb_event_type_known(const char *type)
{
    for (int i = 0; mb_event_types[i] != NULL; i++)
        if (strcmp(type, mb_event_types[i]) == 0)
            return true;
    return false;
}

#define NBUCKETS 1024

typedef struct heard {
    struct heard *next;
    char partner[37];
    long long seq;
} heard;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static heard *buckets[NBUCKETS];
static unsigned long epoch;
static bool stopping, started;
static pthread_t listener;
static char *conninfo;
static atomic_int clients;
static atomic_int listening;
static atomic_ullong notifications;

static unsigned hash(const char *s)
{
    unsigned h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h % NBUCKETS;
}

/* Under mu. */
static heard *find(const char *partner, bool create)
{
    unsigned b = hash(partner);
    for (heard *h = buckets[b]; h != NULL; h = h->next)
        if (strcmp(h->partner, partner) == 0)
            return h;
    if (!create)
        return NULL;
    heard *h = calloc(1, sizeof(*h));
    if (h == NULL)
        return NULL;
    snprintf(h->partner, sizeof(h->partner), "%s", partner);
    h->next = buckets[b];
    buckets[b] = h;
    return h;
}

/* "partner:seq" */
static void heard_of(const char *payload)
{
    const char *colon = strchr(payload, ':');
    if (colon == NULL || colon - payload != 36)
        return;
    char partner[37];
    memcpy(partner, payload, 36);
    partner[36] = '\0';
    long long seq = atoll(colon + 1);
    heard *h = find(partner, true);
    if (h != NULL && seq > h->seq)
        h->seq = seq;
}

static bool should_stop(void)
{
    pthread_mutex_lock(&mu);
    bool s = stopping;
    pthread_mutex_unlock(&mu);
    return s;
}

static void pause_ms(int ms)
{
    for (int i = 0; i < ms / 100 && !should_stop(); i++)
        usleep(100 * 1000);
}

static void *listen_main(void *arg)
{
    (void)arg;
    while (!should_stop()) {
        PGconn *db = PQconnectdb(conninfo);
        PGresult *r = PQstatus(db) == CONNECTION_OK ? PQexec(db, "LISTEN mb_events") : NULL;
        bool ok = r != NULL && PQresultStatus(r) == PGRES_COMMAND_OK;
        mb_db_clear(&r);
        if (!ok) {
            y_log_message(Y_LOG_LEVEL_WARNING, "events: cannot LISTEN: %s", PQerrorMessage(db));
            PQfinish(db);
            pause_ms(1000);
            continue;
        }
        atomic_store(&listening, 1);
        /* What committed while nobody listened: every waiting client looks. */
        pthread_mutex_lock(&mu);
        epoch++;
        pthread_cond_broadcast(&cv);
        pthread_mutex_unlock(&mu);
        while (!should_stop()) {
            struct pollfd pfd = {.fd = PQsocket(db), .events = POLLIN};
            if (poll(&pfd, 1, 250) < 0 || PQconsumeInput(db) == 0 || PQstatus(db) != CONNECTION_OK)
                break;
            PGnotify *n;
            bool any = false;
            pthread_mutex_lock(&mu);
            while ((n = PQnotifies(db)) != NULL) {
                heard_of(n->extra);
                PQfreemem(n);
                any = true;
                atomic_fetch_add(&notifications, 1);
            }
            if (any)
                pthread_cond_broadcast(&cv);
            pthread_mutex_unlock(&mu);
        }
        atomic_store(&listening, 0);
        if (!should_stop())
            y_log_message(Y_LOG_LEVEL_WARNING, "events: lost the LISTEN connection; again");
        PQfinish(db);
        pause_ms(200);
    }
    return NULL;
}

int mb_feed_start(const char *database_url)
{
    conninfo = strdup(database_url);
    if (conninfo == NULL)
        return -1;
    stopping = false;
    /* The thread inherits a mask without SIGINT/SIGTERM: mb_serve's sigwait
     * takes them. */
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, &old);
    int rc = pthread_create(&listener, NULL, listen_main, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        free(conninfo);
        conninfo = NULL;
        return -1;
    }
    started = true;
    return 0;
}

void mb_feed_stop(void)
{
    pthread_mutex_lock(&mu);
    stopping = true;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    if (started)
        pthread_join(listener, NULL);
    started = false;
    for (int b = 0; b < NBUCKETS; b++)
        while (buckets[b] != NULL) {
            heard *h = buckets[b];
            buckets[b] = h->next;
            free(h);
        }
    free(conninfo);
    conninfo = NULL;
}

unsigned long mb_feed_epoch(void)
{
    pthread_mutex_lock(&mu);
    unsigned long e = epoch;
    pthread_mutex_unlock(&mu);
    return e;
}

int mb_feed_wait(const char *partner_id, long long seq, unsigned long ep, int timeout_ms)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    int rc = 0;
    pthread_mutex_lock(&mu);
    for (;;) {
        if (stopping) {
            rc = -1;
            break;
        }
        heard *h = find(partner_id, false);
        if (epoch != ep || (h != NULL && h->seq > seq)) {
            rc = 1;
            break;
        }
        if (pthread_cond_timedwait(&cv, &mu, &until) != 0)
            break;
    }
    pthread_mutex_unlock(&mu);
    return rc;
}

void mb_feed_client(int delta)
{
    atomic_fetch_add(&clients, delta);
}

size_t mb_events_metrics(char *buf, size_t cap)
{
    int n = snprintf(buf, cap,
                     "# HELP mpn_sse_clients Server-Sent Events clients connected now.\n"
                     "# TYPE mpn_sse_clients gauge\nmpn_sse_clients %d\n"
                     "# HELP mpn_events_listening Whether the feed's LISTEN connection is up.\n"
                     "# TYPE mpn_events_listening gauge\nmpn_events_listening %d\n"
                     "# HELP mpn_events_notifications_total Event notifications heard.\n"
                     "# TYPE mpn_events_notifications_total counter\n"
                     "mpn_events_notifications_total %llu\n",
                     atomic_load(&clients), atomic_load(&listening),
                     (unsigned long long)atomic_load(&notifications));
    return n < 0 ? 0 : ((size_t)n < cap ? (size_t)n : cap - 1);
}
