/* A fixed pool of libpq connections with a free list. A connection found
 * broken is reset on the next use, so the service heals by itself when
 * PostgreSQL comes back; one left inside a transaction is rolled back. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <yder.h>

#include "mb_db.h"

#define ACQUIRE_TIMEOUT_MS 2000

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    PGconn **conns;
    int *free_list;
    int nfree;
    int size;
    char *url;
    atomic_ullong waits;
    atomic_ullong errors;
} pool = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static PGconn *connect_one(void)
{
    /* Later keywords override what the URL says: bounded connect time, UTC
     * timestamps, and statements that cannot hang a worker for ever. */
    const char *const keys[] = {"dbname", "connect_timeout", "application_name", "options",
                                "keepalives_idle", NULL};
    const char *const vals[] = {pool.url, "2", "mpn-benefits",
                                "-c TimeZone=UTC -c statement_timeout=15000 -c lock_timeout=10000",
                                "30", NULL};
    return PQconnectdbParams(keys, vals, 1);
}

int mb_pool_init(const char *database_url, int size)
{
    pool.url = strdup(database_url);
    pool.conns = calloc((size_t)size, sizeof(PGconn *));
    pool.free_list = calloc((size_t)size, sizeof(int));
    if (pool.url == NULL || pool.conns == NULL || pool.free_list == NULL)
        return -1;
    pool.size = size;
    for (int i = 0; i < size; i++) {
        /* Connect lazily when the database is not up yet. */
        pool.conns[i] = NULL;
        pool.free_list[i] = i;
    }
    pool.nfree = size;
    return 0;
}

void mb_pool_close(void)
{
    pthread_mutex_lock(&pool.mu);
    for (int i = 0; i < pool.size; i++) {
        if (pool.conns[i] != NULL)
            PQfinish(pool.conns[i]);
        pool.conns[i] = NULL;
    }
    free(pool.conns);
    free(pool.free_list);
    free(pool.url);
    pool.conns = NULL;
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

static int slot_of(PGconn *c)
{
    for (int i = 0; i < pool.size; i++)
        if (pool.conns[i] == c)
            return i;
    return -1;
}

static PGconn *acquire(void)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += ACQUIRE_TIMEOUT_MS / 1000;
    pthread_mutex_lock(&pool.mu);
    if (pool.nfree == 0)
        atomic_fetch_add(&pool.waits, 1);
    while (pool.nfree == 0) {
        if (pthread_cond_timedwait(&pool.cv, &pool.mu, &deadline) != 0 && pool.nfree == 0) {
            pthread_mutex_unlock(&pool.mu);
            return NULL;
        }
    }
    int slot = pool.free_list[--pool.nfree];
    PGconn *c = pool.conns[slot];
    pthread_mutex_unlock(&pool.mu);

    if (c == NULL) {
        c = connect_one();
    } else if (PQstatus(c) != CONNECTION_OK) {
        PQreset(c);
    }
    pthread_mutex_lock(&pool.mu);
    pool.conns[slot] = c;
    pthread_mutex_unlock(&pool.mu);
    if (c == NULL || PQstatus(c) != CONNECTION_OK) {
        atomic_fetch_add(&pool.errors, 1);
        pthread_mutex_lock(&pool.mu);
        pool.free_list[pool.nfree++] = slot;
        pthread_cond_signal(&pool.cv);
        pthread_mutex_unlock(&pool.mu);
        return NULL;
    }
    return c;
}

static void give_back(PGconn *c)
{
    if (c == NULL)
        return;
    if (PQstatus(c) == CONNECTION_OK && PQtransactionStatus(c) != PQTRANS_IDLE) {
        PGresult *r = PQexec(c, "ROLLBACK");
        PQclear(r);
    }
    pthread_mutex_lock(&pool.mu);
    int slot = slot_of(c);
    if (slot >= 0) {
        pool.free_list[pool.nfree++] = slot;
        pthread_cond_signal(&pool.cv);
    }
    pthread_mutex_unlock(&pool.mu);
}

static mb_err map_error(mb_db *db, PGresult *r)
{
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    const char *cons = r ? PQresultErrorField(r, PG_DIAG_CONSTRAINT_NAME) : NULL;
    snprintf(db->sqlstate, sizeof(db->sqlstate), "%s", state ? state : "");
    snprintf(db->constraint, sizeof(db->constraint), "%s", cons ? cons : "");
    if (PQstatus(db->conn) != CONNECTION_OK || state == NULL || strncmp(state, "08", 2) == 0 ||
        strncmp(state, "57P", 3) == 0) {
        atomic_fetch_add(&pool.errors, 1);
        return MB_E_UNAVAILABLE;
    }
    if (strcmp(state, "23505") == 0 || strcmp(state, "23P01") == 0)
        return MB_E_CONFLICT;
    if (strncmp(state, "23", 2) == 0 || strncmp(state, "22", 2) == 0)
        return MB_E_VALIDATION;
    if (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0 ||
        strcmp(state, "55P03") == 0 || strcmp(state, "57014") == 0)
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
        db->conn = acquire();
        if (db->conn == NULL)
            return MB_E_UNAVAILABLE;
    }
    PGresult *r = PQexecParams(db->conn, sql, n, NULL, params, NULL, NULL, 0);
    if (PQstatus(db->conn) == CONNECTION_BAD && !db->in_tx) {
        /* The server went away since this connection was last used (a
         * restart): outside a transaction it is safe to reconnect and retry. */
        PQclear(r);
        PQreset(db->conn);
        r = PQexecParams(db->conn, sql, n, NULL, params, NULL, NULL, 0);
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
    mb_err e = mb_db_exec(db, NULL, "BEGIN", 0, NULL);
    if (e == MB_OK)
        db->in_tx = true;
    return e;
}

mb_err mb_db_commit(mb_db *db)
{
    mb_err e = mb_db_exec(db, NULL, "COMMIT", 0, NULL);
    db->in_tx = false;
    return e;
}

void mb_db_rollback(mb_db *db)
{
    if (db->conn != NULL && db->in_tx) {
        PGresult *r = PQexec(db->conn, "ROLLBACK");
        PQclear(r);
    }
    db->in_tx = false;
}

void mb_db_release(mb_db *db)
{
    if (db->conn != NULL)
        give_back(db->conn);
    db->conn = NULL;
    db->in_tx = false;
}

bool mb_db_ping(void)
{
    mb_db db = {0};
    bool ok = mb_db_exec(&db, NULL, "SELECT 1", 0, NULL) == MB_OK;
    mb_db_release(&db);
    return ok;
}
