/* Token revocation. Deleting a user, removing one of their roles, and the
 * revoke-tokens routes write a row of token_revocations (sql/003_identity.sql:
 * triggers and mb_revoke_tokens()); its trigger NOTIFYs mb_token_revocations
 * at commit. Every process keeps all rows in memory and LISTENs on one
 * connection of its own, so the check costs a hash lookup per request and a
 * revocation reaches every replica as soon as PostgreSQL delivers the
 * notification (milliseconds). When that connection is lost, the thread
 * reconnects every second and reloads the whole table, so nothing committed
 * meanwhile is missed (while the database is down, requests fail anyway).
 *
 * A row (partner, user, t) refuses the user's tokens with iat <= t in whole
 * seconds: a token issued in the very second of the revocation is refused
 * too (iat has no finer grain). user '' is the whole partner. */
#include <libpq-fe.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <yder.h>

#include "mb_db.h"
#include "mb_identity.h"

#define BUCKETS 4096
#define CHANNEL "mb_token_revocations"

typedef struct entry {
    struct entry *next;
    long long before; /* tokens with iat <= before are refused */
    char key[];       /* "partner/user" */
} entry;

static entry *table[BUCKETS];
static pthread_rwlock_t lock = PTHREAD_RWLOCK_INITIALIZER;
static size_t count;
static atomic_bool any; /* a revocation is held: most requests skip the lock */
static const mb_config *g_cfg;
static pthread_t listener;
static atomic_bool stopping, running, listening;
static atomic_ullong notifications;
static int wake[2] = {-1, -1};

static uint32_t hash(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

/* Under the write lock. */
static void put(const char *partner, const char *user, long long before)
{
    char key[256];
    int n = snprintf(key, sizeof(key), "%s/%s", partner, user);
    if (n < 0 || (size_t)n >= sizeof(key))
        return;
    uint32_t b = hash(key) % BUCKETS;
    for (entry *e = table[b]; e; e = e->next)
        if (strcmp(e->key, key) == 0) {
            if (before > e->before)
                e->before = before;
            return;
        }
    entry *e = malloc(sizeof(*e) + (size_t)n + 1);
    if (e == NULL)
        return;
    memcpy(e->key, key, (size_t)n + 1);
    e->before = before;
    e->next = table[b];
    table[b] = e;
    count++;
    atomic_store(&any, true);
}

static long long lookup(const char *key)
{
    for (entry *e = table[hash(key) % BUCKETS]; e; e = e->next)
        if (strcmp(e->key, key) == 0)
            return e->before;
    return -1;
}

bool mb_revoked(const char *tid, const char *sub, long long iat)
{
    if (tid == NULL || *tid == '\0' || !atomic_load(&running) || !atomic_load(&any))
        return false; /* operators are no users of a partner */
    char key[256];
    snprintf(key, sizeof(key), "%s/%s", tid, sub);
    char all[64];
    snprintf(all, sizeof(all), "%s/", tid);
    pthread_rwlock_rdlock(&lock);
    long long u = lookup(key), p = lookup(all);
    pthread_rwlock_unlock(&lock);
    return (u >= 0 && iat <= u) || (p >= 0 && iat <= p);
}

/* A notification's payload: "partner/user/seconds". */
static void apply(const char *payload)
{
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", payload);
    char *s1 = strchr(buf, '/');
    char *s2 = s1 ? strchr(s1 + 1, '/') : NULL;
    if (s2 == NULL)
        return;
    *s1 = *s2 = '\0';
    long long t = strtoll(s2 + 1, NULL, 10);
    pthread_rwlock_wrlock(&lock);
    put(buf, s1 + 1, t);
    pthread_rwlock_unlock(&lock);
}

static PGconn *connect_and_load(void)
{
    /* Bounded connect time; TCP keepalives so that a connection that died
     * silently (and would deliver no notification) is noticed and replaced. */
    const char *const keys[] = {"dbname",
                                "connect_timeout",
                                "application_name",
                                "keepalives_idle",
                                "keepalives_interval",
                                "keepalives_count",
                                NULL};
    const char *const vals[] = {
        g_cfg->database_url, "2", "mpn-benefits-revocations", "10", "5", "3", NULL};
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    if (PQstatus(c) != CONNECTION_OK) {
        PQfinish(c);
        return NULL;
    }
    /* LISTEN first: a row committed between the two is both loaded and
     * notified, never neither. */
    PGresult *r = PQexec(c, "LISTEN " CHANNEL);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    mb_db_clear(&r);
    if (!ok) {
        PQfinish(c);
        return NULL;
    }
    r = PQexec(c, "SELECT partner_id::text, user_id, "
                  "floor(extract(epoch FROM revoked_at))::bigint FROM token_revocations");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        mb_db_clear(&r);
        PQfinish(c);
        return NULL;
    }
    pthread_rwlock_wrlock(&lock);
    for (int i = 0; i < PQntuples(r); i++)
        put(PQgetvalue(r, i, 0), PQgetvalue(r, i, 1), strtoll(PQgetvalue(r, i, 2), NULL, 10));
    pthread_rwlock_unlock(&lock);
    mb_db_clear(&r);
    return c;
}

static void *listen_loop(void *arg)
{
    PGconn *c = arg;
    while (!atomic_load(&stopping)) {
        if (c == NULL) {
            atomic_store(&listening, false);
            struct pollfd w = {.fd = wake[0], .events = POLLIN};
            if (poll(&w, 1, 1000) > 0)
                continue; /* stopping */
            c = connect_and_load();
            if (c != NULL)
                y_log_message(Y_LOG_LEVEL_INFO, "revocation: listening again");
            continue;
        }
        atomic_store(&listening, true);
        struct pollfd p[2] = {{.fd = PQsocket(c), .events = POLLIN},
                              {.fd = wake[0], .events = POLLIN}};
        int n = poll(p, 2, 1000);
        if (n < 0)
            continue;
        /* A server that shuts down sends its FATAL first: PQconsumeInput can
         * succeed on a connection that is gone, so check the status too. */
        if ((p[0].revents != 0 && !PQconsumeInput(c)) || PQstatus(c) != CONNECTION_OK) {
            y_log_message(Y_LOG_LEVEL_ERROR, "revocation: listener connection lost: reconnecting");
            atomic_store(&listening, false);
            PQfinish(c);
            c = NULL;
            continue;
        }
        PGnotify *nt;
        while ((nt = PQnotifies(c)) != NULL) {
            apply(nt->extra);
            atomic_fetch_add(&notifications, 1);
            PQfreemem(nt);
        }
    }
    PQfinish(c);
    return NULL;
}

int mb_revocation_start(const mb_config *cfg)
{
    g_cfg = cfg;
    if (pipe(wake) != 0)
        return -1;
    PGconn *c = connect_and_load();
    if (c == NULL)
        y_log_message(Y_LOG_LEVEL_WARNING,
                      "revocation: database not reachable yet: listening once it is");
    atomic_store(&stopping, false);
    if (pthread_create(&listener, NULL, listen_loop, c) != 0) {
        PQfinish(c);
        return -1;
    }
    atomic_store(&running, true);
    return 0;
}

void mb_revocation_stop(void)
{
    if (!atomic_load(&running))
        return;
    atomic_store(&stopping, true);
    ssize_t w = write(wake[1], "x", 1);
    (void)w;
    pthread_join(listener, NULL);
    atomic_store(&running, false);
    close(wake[0]);
    close(wake[1]);
    pthread_rwlock_wrlock(&lock);
    for (int i = 0; i < BUCKETS; i++) {
        while (table[i]) {
            entry *e = table[i];
            table[i] = e->next;
            free(e);
        }
    }
    count = 0;
    atomic_store(&any, false);
    pthread_rwlock_unlock(&lock);
}

void mb_revocation_metrics(FILE *f)
{
    pthread_rwlock_rdlock(&lock);
    size_t n = count;
    pthread_rwlock_unlock(&lock);
    fprintf(f,
            "# HELP mpn_token_revocations Revocations held in memory (users and partners).\n"
            "# TYPE mpn_token_revocations gauge\nmpn_token_revocations %zu\n"
            "# HELP mpn_token_revocation_listener_up 1 while the LISTEN connection is up.\n"
            "# TYPE mpn_token_revocation_listener_up gauge\nmpn_token_revocation_listener_up %d\n"
            "# HELP mpn_token_revocation_notifications_total Revocations received by NOTIFY.\n"
            "# TYPE mpn_token_revocation_notifications_total counter\n"
            "mpn_token_revocation_notifications_total %llu\n",
            n, atomic_load(&listening) ? 1 : 0, atomic_load(&notifications));
}
