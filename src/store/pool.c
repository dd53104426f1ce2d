/* A fixed pool of libpq connections with a free list. A connection found
 * broken is reset on the next use, so the service heals by itself when
 * PostgreSQL comes back; one left inside a transaction is rolled back. With
 * several hosts in DATABASE_URL and target_session_attrs=read-write (a Patroni
 * cluster), a reset lands on whichever node is primary now; a connection to a
 * node that was demoted under it (SQLSTATE 25006, read-only transaction) is
 * treated like a lost one. Every
 * statement runs prepared: parsed and planned once per connection, then only
 * bound and executed (statements.c). Statements that need no answer before the
 * next one (mb_db_defer) go with it, or with the COMMIT, in one round trip. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <yder.h>

#include "mb_db.h"
#include "mb_line.h"
#include "pool_internal.h"

#define ACQUIRE_TIMEOUT_MS 2000

/* Requests waiting for a connection are served first come, first served
 * (pool.line): a connection given back goes straight to the oldest waiter, so
 * under load every request waits about as long as the others (a plain
 * condition variable lets a newcomer overtake and starves some requests for
 * seconds). */
static struct {
    pthread_mutex_t mu;
    mb_line line; /* threads waiting for a connection (include/mb_line.h) */
    conn_slot *slots;
    int *free_list;
    int nfree;
    int size;
    char *url;
    atomic_ullong waits;
    atomic_ullong errors;
} pool = {.mu = PTHREAD_MUTEX_INITIALIZER};

static PGconn *connect_one(void)
{
    /* Later keywords override what the URL says: bounded connect time, UTC
     * timestamps, and statements that cannot hang a worker for ever. */
    const char *const keys[] = {"dbname",  "connect_timeout", "application_name",
                                "options", "keepalives_idle", NULL};
    const char *const vals[] = {
        pool.url,       "2",
        "mpn-benefits", "-c TimeZone=UTC -c statement_timeout=15000 -c lock_timeout=10000",
        "30",           NULL};
    return PQconnectdbParams(keys, vals, 1);
}

int mb_pool_init(const char *database_url, int size)
{
    pool.url = strdup(database_url);
    pool.slots = calloc((size_t)size, sizeof(conn_slot));
    pool.free_list = calloc((size_t)size, sizeof(int));
    if (pool.url == NULL || pool.slots == NULL || pool.free_list == NULL)
        return -1;
    pool.size = size;
    for (int i = 0; i < size; i++)
        pool.free_list[i] = size - 1 - i; /* connect lazily: the database may not be up yet */
    pool.nfree = size;
    return 0;
}

void mb_pool_close(void)
{
    pthread_mutex_lock(&pool.mu);
    for (int i = 0; i < pool.size; i++) {
        if (pool.slots[i].conn != NULL)
            PQfinish(pool.slots[i].conn);
        mb_stmts_clear(&pool.slots[i]);
    }
    free(pool.slots);
    free(pool.free_list);
    free(pool.url);
    pool.slots = NULL;
    pool.free_list = NULL;
    pool.url = NULL;
    pool.size = pool.nfree = 0;
    pthread_mutex_unlock(&pool.mu);
}

void mb_pool_stats(int *size, int *in_use, unsigned long long *waits, unsigned long long *errors)
{
    pthread_mutex_lock(&pool.mu);
    *size = pool.size;
    *in_use = pool.size - pool.nfree;
    pthread_mutex_unlock(&pool.mu);
    *waits = atomic_load(&pool.waits);
    *errors = atomic_load(&pool.errors);
}

static void put_slot(int slot)
{
    pthread_mutex_lock(&pool.mu);
    mb_waiter *w = mb_line_grant(&pool.line, slot);
    if (w == NULL)
        pool.free_list[pool.nfree++] = slot;
    pthread_mutex_unlock(&pool.mu);
    mb_line_post(w);
}

/* Takes a free slot (waiting in line up to ACQUIRE_TIMEOUT_MS) and makes sure
 * its connection is up. Returns the slot, or -1. The most recently returned
 * slot is taken first, so a quiet service keeps using few warm connections. */
static int acquire(void)
{
    int slot;
    pthread_mutex_lock(&pool.mu);
    if (pool.nfree > 0) {
        slot = pool.free_list[--pool.nfree];
        pthread_mutex_unlock(&pool.mu);
    } else {
        atomic_fetch_add(&pool.waits, 1);
        mb_waiter w;
        if (!mb_line_wait(&pool.line, &pool.mu, &w, ACQUIRE_TIMEOUT_MS, &slot))
            slot = -1;
        pthread_mutex_unlock(&pool.mu);
        mb_line_leave(&w);
        if (slot < 0)
            return -1;
    }

    /* The slot is ours alone now: no lock needed for its fields. */
    conn_slot *s = &pool.slots[slot];
    if (s->conn == NULL) {
        s->conn = connect_one();
        mb_stmts_clear(s);
    } else if (PQstatus(s->conn) != CONNECTION_OK || s->reset) {
        PQreset(s->conn);
        mb_stmts_clear(s);
        s->dealloc = false;
    }
    s->reset = false;
    if (s->conn == NULL || PQstatus(s->conn) != CONNECTION_OK) {
        atomic_fetch_add(&pool.errors, 1);
        put_slot(slot);
        return -1;
    }
    return slot;
}

/* Puts a slot back; returns the round trips that took. */
static unsigned give_back(int slot)
{
    conn_slot *s = &pool.slots[slot];
    unsigned trips = 0;
    if (PQstatus(s->conn) == CONNECTION_OK && PQtransactionStatus(s->conn) != PQTRANS_IDLE) {
        PGresult *r = PQexec(s->conn, "ROLLBACK");
        PQclear(r);
        trips++;
    }
    if (s->dealloc && PQstatus(s->conn) == CONNECTION_OK) {
        PGresult *r = PQexec(s->conn, "DEALLOCATE ALL");
        PQclear(r);
        s->dealloc = false;
        trips++;
    }
    s->trips += trips;
    put_slot(slot);
    return trips;
}

/* Did the server forget or invalidate our prepared statements (a DISCARD, or a
 * migration that changed a view's columns under a cached plan)? */
static bool stale_statement(const PGresult *r)
{
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    return state != NULL && (strcmp(state, "26000") == 0 || strcmp(state, "0A000") == 0);
}

/* Is the connection gone, or on a node that is no primary any more (a
 * read-only error after a failover: 25006)? Either way the next attempt must
 * be on a new connection, which target_session_attrs sends to the primary. */
static bool lost_primary(PGconn *conn, const PGresult *r)
{
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    return PQstatus(conn) == CONNECTION_BAD || (state != NULL && strcmp(state, "25006") == 0);
}

/* A statement outside a transaction may be run again after a lost connection
 * only when it cannot have changed anything: a plain SELECT (the service's
 * writes all run in transactions, MB_R_TX). */
static bool read_only_sql(const char *sql)
{
    while (*sql == ' ' || *sql == '\n' || *sql == '\t')
        sql++;
    return strncasecmp(sql, "SELECT", 6) == 0;
}

static mb_err map_error(mb_db *db, PGresult *r)
{
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    const char *cons = r ? PQresultErrorField(r, PG_DIAG_CONSTRAINT_NAME) : NULL;
    snprintf(db->sqlstate, sizeof(db->sqlstate), "%s", state ? state : "");
    snprintf(db->constraint, sizeof(db->constraint), "%s", cons ? cons : "");
    if (PQstatus(db->conn) != CONNECTION_OK || state == NULL || strncmp(state, "08", 2) == 0 ||
        strncmp(state, "57P", 3) == 0 || strcmp(state, "25006") == 0) {
        atomic_fetch_add(&pool.errors, 1);
        return MB_E_UNAVAILABLE;
    }
    if (strcmp(state, "23505") == 0 || strcmp(state, "23P01") == 0)
        return MB_E_CONFLICT;
    if (strncmp(state, "23", 2) == 0 || strncmp(state, "22", 2) == 0)
        return MB_E_VALIDATION;
    if (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0 || strcmp(state, "55P03") == 0 ||
        strcmp(state, "57014") == 0)
        return MB_E_UNAVAILABLE;
    atomic_fetch_add(&pool.errors, 1);
    y_log_message(Y_LOG_LEVEL_ERROR, "database error %s: %s", state,
                  r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : "");
    return MB_E_INTERNAL;
}

/* Statements deferred to the next one or the COMMIT (mb_db_defer), with
 * copies of their parameters. */
#define DEFER_MAX 8
#define DEFER_PARAMS 8

struct mb_db_deferred {
    int count;
    struct {
        const char *sql;
        int n;
        char *params[DEFER_PARAMS];
    } q[DEFER_MAX];
};

static void deferred_clear(mb_db *db)
{
    struct mb_db_deferred *d = db->deferred;
    if (d == NULL)
        return;
    for (int i = 0; i < d->count; i++)
        for (int k = 0; k < d->q[i].n; k++)
            free(d->q[i].params[k]);
    d->count = 0;
}

static bool has_deferred(const mb_db *db)
{
    return db->deferred != NULL && db->deferred->count > 0;
}

mb_err mb_db_defer(mb_db *db, const char *sql, int n, const char *const *params)
{
    if (!db->in_tx || n > DEFER_PARAMS) /* nothing to ride with: run it now */
        return mb_db_exec(db, NULL, sql, n, params);
    if (db->deferred == NULL && (db->deferred = calloc(1, sizeof(*db->deferred))) == NULL)
        return mb_db_exec(db, NULL, sql, n, params);
    struct mb_db_deferred *d = db->deferred;
    if (d->count == DEFER_MAX) /* full: this one takes the others along now */
        return mb_db_exec(db, NULL, sql, n, params);
    int i = d->count;
    for (int k = 0; k < n; k++) {
        d->q[i].params[k] = params[k] ? strdup(params[k]) : NULL;
        if (params[k] != NULL && d->q[i].params[k] == NULL) {
            while (k-- > 0)
                free(d->q[i].params[k]);
            return mb_db_exec(db, NULL, sql, n, params);
        }
    }
    d->q[i].sql = sql;
    d->q[i].n = n;
    d->count++;
    return MB_OK;
}

mb_err mb_db_exec_many(mb_db *db, int n, const mb_q *q, PGresult **outs, int *failed_at)
{
    for (int i = 0; i < n; i++)
        outs[i] = NULL;
    db->sqlstate[0] = db->constraint[0] = '\0';
    if (n < 1 || n > MB_EXEC_MANY_MAX) {
        deferred_clear(db);
        return MB_E_INTERNAL;
    }
    if (db->conn == NULL) {
        int slot = acquire();
        if (slot < 0) {
            deferred_clear(db);
            return MB_E_UNAVAILABLE;
        }
        db->slot = slot;
        db->conn = pool.slots[slot].conn;
    }
    conn_slot *s = &pool.slots[db->slot];
    unsigned long trips0 = s->trips;
    /* The deferred statements first, then these: one round trip. */
    mb_q qs[DEFER_MAX + MB_EXEC_MANY_MAX];
    int nd = has_deferred(db) ? db->deferred->count : 0;
    for (int i = 0; i < nd; i++)
        qs[i] = (mb_q){db->deferred->q[i].sql, db->deferred->q[i].n,
                       (const char *const *)db->deferred->q[i].params};
    bool reads = !db->in_tx, commit = false;
    for (int i = 0; i < n; i++) {
        qs[nd + i] = q[i];
        reads = reads && read_only_sql(q[i].sql);
        commit = commit || strcmp(q[i].sql, "COMMIT") == 0;
    }
    int nq = nd + n;
    /* Nothing ran yet in this transaction (its BEGIN goes with these
     * statements, and no COMMIT was sent): a failure here can be retried. A
     * COMMIT, or any statement after the first of a transaction, is never
     * retried: the write may or may not have committed, and only the client
     * can tell (Idempotency-Key); it gets a 503. */
    bool begin = db->begin_pending;
    db->begin_pending = false;
    bool retry_ok = (begin && !commit) || reads;
    PGresult *res[DEFER_MAX + MB_EXEC_MANY_MAX], *err = NULL;
    int failed = mb_run_pipeline(s, qs, nq, begin, res, &err);
    if (failed < nq && lost_primary(db->conn, err) && retry_ok) {
        /* The server went away since this connection was last used (a
         * restart, a failover) or was demoted: reconnect, to whichever node
         * is primary now, and try once more. */
        PQclear(err);
        PQreset(db->conn);
        mb_stmts_clear(s);
        s->dealloc = false;
        err = NULL;
        failed =
            PQstatus(db->conn) == CONNECTION_OK ? mb_run_pipeline(s, qs, nq, begin, res, &err) : 0;
        if (failed < nq && lost_primary(db->conn, err))
            s->reset = true;
    } else if (failed < nq && lost_primary(db->conn, err)) {
        s->reset = true; /* reconnect when this slot is next taken */
    } else if (failed < nq && stale_statement(err)) {
        PQclear(err);
        err = NULL;
        mb_stmts_clear(s);
        s->dealloc = true;
        if (retry_ok) {
            if (begin && PQtransactionStatus(db->conn) != PQTRANS_IDLE) {
                s->trips++;
                PGresult *rb = PQexec(db->conn, "ROLLBACK");
                PQclear(rb);
            }
            failed = mb_run_pipeline(s, qs, nq, begin, res, &err);
        } /* else the transaction is aborted: answer 503, the client retries */
    }
    deferred_clear(db);
    db->trips += (unsigned)(s->trips - trips0);
    if (failed == nq) {
        for (int i = 0; i < nd; i++)
            PQclear(res[i]);
        for (int i = 0; i < n; i++)
            outs[i] = res[nd + i];
        return MB_OK;
    }
    if (failed_at)
        *failed_at = failed - nd;
    mb_err e = map_error(db, err);
    if (failed >= 0 && failed < nd && e != MB_E_UNAVAILABLE) {
        /* A deferred statement (an audit row, an event) failed: the caller's
         * statements did not run, and its error codes are not this one's. */
        if (e != MB_E_INTERNAL)
            y_log_message(Y_LOG_LEVEL_ERROR, "deferred statement failed: %s %s", db->sqlstate,
                          err ? PQresultErrorField(err, PG_DIAG_MESSAGE_PRIMARY) : "");
        db->constraint[0] = '\0';
        e = MB_E_INTERNAL;
    }
    PQclear(err);
    return e;
}

mb_err mb_db_exec(mb_db *db, PGresult **out, const char *sql, int n, const char *const *params)
{
    const mb_q q = {sql, n, params};
    PGresult *r = NULL;
    mb_err e = mb_db_exec_many(db, 1, &q, &r, NULL);
    if (out)
        *out = r;
    else
        PQclear(r);
    return e;
}

mb_err mb_db_begin(mb_db *db)
{
    if (db->in_tx)
        return MB_OK;
    /* Sent with the transaction's first statement. */
    db->in_tx = true;
    db->begin_pending = true;
    return MB_OK;
}

mb_err mb_db_commit(mb_db *db)
{
    mb_err e = MB_OK;
    if (db->in_tx && (!db->begin_pending || has_deferred(db)))
        e = mb_db_exec(db, NULL, "COMMIT", 0, NULL); /* with the deferred statements */
    db->in_tx = db->begin_pending = false;
    return e;
}

void mb_db_rollback(mb_db *db)
{
    deferred_clear(db);
    if (db->conn != NULL && db->in_tx && !db->begin_pending) {
        db->trips++;
        pool.slots[db->slot].trips++;
        PGresult *r = PQexec(db->conn, "ROLLBACK");
        PQclear(r);
    }
    db->in_tx = db->begin_pending = false;
}

void mb_db_release(mb_db *db)
{
    deferred_clear(db);
    free(db->deferred);
    db->deferred = NULL;
    if (db->conn != NULL)
        db->trips += give_back(db->slot);
    db->conn = NULL;
    db->in_tx = db->begin_pending = false;
}

bool mb_db_ping(void)
{
    mb_db db = {0};
    bool ok = mb_db_exec(&db, NULL, "SELECT 1", 0, NULL) == MB_OK;
    mb_db_release(&db);
    return ok;
}
