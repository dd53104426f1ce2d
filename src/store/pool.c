/* A fixed pool of libpq connections with a free list. A connection found
 * broken is reset on the next use, so the service heals by itself when
 * PostgreSQL comes back; one left inside a transaction is rolled back. With
 * several hosts in DATABASE_URL and target_session_attrs=read-write (a Patroni
 * cluster), a reset lands on whichever node is primary now; a connection to a
 * node that was demoted under it (SQLSTATE 25006, read-only transaction) is
 * treated like a lost one. Every
 * statement runs prepared: parsed and planned once per connection, then only
 * bound and executed (see run_prepared). */
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

#define ACQUIRE_TIMEOUT_MS 2000

/* Prepared statements, per connection: an open-addressing table keyed by the
 * caller's SQL pointer (constant strings), checked against a copy of the text so
 * that a different text at a reused address is never run under the old name. */
#define STMT_SLOTS 256 /* a power of two; the service has well under 200 statements */

typedef struct {
    const char *key; /* the caller's pointer; NULL = empty */
    char *sql;       /* a copy of the text */
    unsigned id;     /* the server-side name is "mb<id>" */
} stmt;

typedef struct {
    PGconn *conn;
    stmt stmts[STMT_SLOTS];
    int nstmts;
    unsigned next_id;
    bool dealloc; /* server-side statements went stale: DEALLOCATE ALL when idle */
    bool reset;   /* on a demoted node: reconnect (to the primary) on the next use */
} conn_slot;

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

/* Forgets every prepared statement of a slot (after a reconnect the server has
 * none left). */
static void stmts_clear(conn_slot *s)
{
    for (int i = 0; i < STMT_SLOTS; i++)
        free(s->stmts[i].sql);
    memset(s->stmts, 0, sizeof(s->stmts));
    s->nstmts = 0;
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
        stmts_clear(&pool.slots[i]);
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
        stmts_clear(s);
    } else if (PQstatus(s->conn) != CONNECTION_OK || s->reset) {
        PQreset(s->conn);
        stmts_clear(s);
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

static void give_back(int slot)
{
    conn_slot *s = &pool.slots[slot];
    if (PQstatus(s->conn) == CONNECTION_OK && PQtransactionStatus(s->conn) != PQTRANS_IDLE) {
        PGresult *r = PQexec(s->conn, "ROLLBACK");
        PQclear(r);
    }
    if (s->dealloc && PQstatus(s->conn) == CONNECTION_OK) {
        PGresult *r = PQexec(s->conn, "DEALLOCATE ALL");
        PQclear(r);
        s->dealloc = false;
    }
    put_slot(slot);
}

static uint32_t ptr_hash(const void *p)
{
    uint64_t x = (uint64_t)(uintptr_t)p;
    x ^= x >> 29;
    x *= 0x9E3779B97F4A7C15ull;
    return (uint32_t)(x >> 40);
}

/* Collects the results of a pipeline of nq queries and its sync: returns the
 * first failure among the first nq - 1 (BEGIN, PREPARE), else the last one's
 * result; *prepared tells whether a PREPARE among them (at index prep) worked. */
static PGresult *pipeline_results(PGconn *conn, int nq, int prep, bool *prepared)
{
    PGresult *keep = NULL;
    *prepared = false;
    for (int q = 0; q < nq; q++) {
        PGresult *r = PQgetResult(conn);
        if (r == NULL)
            break; /* connection lost */
        bool ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
        if (q == prep)
            *prepared = ok;
        if (keep == NULL && (q == nq - 1 || !ok))
            keep = r;
        else
            PQclear(r);
        PGresult *end = PQgetResult(conn); /* NULL after each query's results */
        PQclear(end);
    }
    for (PGresult *r; (r = PQgetResult(conn)) != NULL;) {
        bool sync = PQresultStatus(r) == PGRES_PIPELINE_SYNC;
        PQclear(r);
        if (sync)
            break;
    }
    PQexitPipelineMode(conn);
    return keep;
}

/* Runs sql on the slot's connection as a prepared statement, preparing it
 * first when this connection has not seen it. With begin, a BEGIN goes first
 * in the same round trip (libpq's pipeline mode): a transaction costs no round
 * trip of its own. Returns libpq's result (maybe an error result, maybe NULL
 * when the connection is lost or memory is short). */
static PGresult *run_prepared(conn_slot *s, const char *sql, int n, const char *const *params,
                              bool begin)
{
    uint32_t i = ptr_hash(sql) & (STMT_SLOTS - 1);
    stmt *st = NULL;
    for (int probe = 0; probe < STMT_SLOTS; probe++, i = (i + 1) & (STMT_SLOTS - 1)) {
        if (s->stmts[i].key == sql || s->stmts[i].key == NULL) {
            st = &s->stmts[i];
            break;
        }
    }
    char name[16] = "";
    char *copy = NULL; /* set: a new statement to prepare under name */
    unsigned id = 0;
    if (st != NULL && st->key == sql && strcmp(st->sql, sql) == 0) {
        snprintf(name, sizeof(name), "mb%u", st->id);
    } else if (st != NULL && (st->key != NULL || s->nstmts < STMT_SLOTS * 3 / 4) &&
               (copy = strdup(sql)) != NULL) {
        id = s->next_id++;
        snprintf(name, sizeof(name), "mb%u", id);
    }
    /* else: the table is three quarters full (never in this service), or no
     * memory: run it unprepared rather than evict. */

    PGresult *r = NULL;
    bool prepared = false;
    if (begin && PQenterPipelineMode(s->conn) == 1) {
        int nq = 0, prep = -1;
        bool sent = PQsendQueryParams(s->conn, "BEGIN", 0, NULL, NULL, NULL, NULL, 0) == 1;
        nq += sent;
        if (sent && copy != NULL) {
            sent = PQsendPrepare(s->conn, name, sql, n, NULL) == 1;
            prep = nq;
            nq += sent;
        }
        if (sent)
            sent = (name[0] ? PQsendQueryPrepared(s->conn, name, n, params, NULL, NULL, 0)
                            : PQsendQueryParams(s->conn, sql, n, NULL, params, NULL, NULL, 0)) == 1;
        nq += sent;
        if (PQpipelineSync(s->conn) != 1)
            sent = false;
        r = pipeline_results(s->conn, nq, prep, &prepared);
        if (!sent && r != NULL && PQresultStatus(r) != PGRES_FATAL_ERROR) {
            PQclear(r); /* not the statement's result */
            r = NULL;
        }
    } else {
        if (begin) { /* no pipeline mode (old server): a round trip of its own */
            r = PQexec(s->conn, "BEGIN");
            if (PQresultStatus(r) != PGRES_COMMAND_OK) {
                free(copy);
                return r;
            }
            PQclear(r);
        }
        if (copy != NULL) {
            r = PQprepare(s->conn, name, sql, n, NULL);
            prepared = PQresultStatus(r) == PGRES_COMMAND_OK;
            if (!prepared) {
                free(copy);
                return r;
            }
            PQclear(r);
        }
        r = name[0] ? PQexecPrepared(s->conn, name, n, params, NULL, NULL, 0)
                    : PQexecParams(s->conn, sql, n, NULL, params, NULL, NULL, 0);
    }
    if (copy != NULL && prepared) {
        if (st->key == NULL)
            s->nstmts++;
        free(st->sql);
        st->key = sql;
        st->sql = copy;
        st->id = id;
    } else {
        free(copy);
    }
    return r;
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

mb_err mb_db_exec(mb_db *db, PGresult **out, const char *sql, int n, const char *const *params)
{
    if (out)
        *out = NULL;
    db->sqlstate[0] = db->constraint[0] = '\0';
    if (db->conn == NULL) {
        int slot = acquire();
        if (slot < 0)
            return MB_E_UNAVAILABLE;
        db->slot = slot;
        db->conn = pool.slots[slot].conn;
    }
    conn_slot *s = &pool.slots[db->slot];
    /* Nothing ran yet in this transaction (its BEGIN goes with this
     * statement, and no COMMIT was sent): a failure here can be retried. A
     * COMMIT, or any statement after the first of a transaction, is never
     * retried: the write may or may not have committed, and only the client
     * can tell (Idempotency-Key); it gets a 503. */
    bool begin = db->begin_pending;
    db->begin_pending = false;
    bool retry_ok = begin || (!db->in_tx && read_only_sql(sql));
    PGresult *r = run_prepared(s, sql, n, params, begin);
    if (lost_primary(db->conn, r) && retry_ok) {
        /* The server went away since this connection was last used (a
         * restart, a failover) or was demoted: reconnect, to whichever node
         * is primary now, and try once more. */
        PQclear(r);
        PQreset(db->conn);
        stmts_clear(s);
        s->dealloc = false;
        r = PQstatus(db->conn) == CONNECTION_OK ? run_prepared(s, sql, n, params, begin) : NULL;
        if (lost_primary(db->conn, r))
            s->reset = true;
    } else if (lost_primary(db->conn, r)) {
        s->reset = true; /* reconnect when this slot is next taken */
    } else if (stale_statement(r)) {
        PQclear(r);
        stmts_clear(s);
        s->dealloc = true;
        if (!retry_ok) {
            r = NULL; /* the transaction is aborted: answer 503, the client retries */
        } else {
            if (begin && PQtransactionStatus(db->conn) != PQTRANS_IDLE) {
                PGresult *rb = PQexec(db->conn, "ROLLBACK");
                PQclear(rb);
            }
            r = run_prepared(s, sql, n, params, begin);
        }
    }
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
        if (out)
            *out = r;
        else
            PQclear(r);
        return MB_OK;
    }
    mb_err e = map_error(db, r);
    PQclear(r);
    return e;
}

mb_err mb_db_begin(mb_db *db)
{
    if (db->in_tx)
        return MB_OK;
    /* Sent with the transaction's first statement (see run_prepared). */
    db->in_tx = true;
    db->begin_pending = true;
    return MB_OK;
}

mb_err mb_db_commit(mb_db *db)
{
    mb_err e = MB_OK;
    if (db->in_tx && !db->begin_pending)
        e = mb_db_exec(db, NULL, "COMMIT", 0, NULL);
    db->in_tx = db->begin_pending = false;
    return e;
}

void mb_db_rollback(mb_db *db)
{
    if (db->conn != NULL && db->in_tx && !db->begin_pending) {
        PGresult *r = PQexec(db->conn, "ROLLBACK");
        PQclear(r);
    }
    db->in_tx = db->begin_pending = false;
}

void mb_db_release(mb_db *db)
{
    if (db->conn != NULL)
        give_back(db->slot);
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
