/* PostgreSQL access: a fixed pool of libpq connections and a per-request
 * handle. Parameterised SQL only. */
#ifndef MB_DB_H
#define MB_DB_H

#include <libpq-fe.h>
#include <stdbool.h>

#include "mb_err.h"

int mb_pool_init(const char *database_url, int size);
void mb_pool_close(void);
/* Pool figures for /metrics. */
void mb_pool_stats(int *size, int *in_use, unsigned long long *waits, unsigned long long *errors);

/* A request's hold on one pooled connection, taken on first use. */
typedef struct {
    PGconn *conn;
    int slot; /* the pool's slot of conn (its prepared statements); pool.c's business */
    bool in_tx;
    bool begin_pending; /* BEGIN not sent yet: it goes with the next statement */
    char sqlstate[6];
    char constraint[64];
    struct mb_db_deferred *deferred; /* mb_db_defer's statements not sent yet; pool.c's */
    unsigned trips; /* round trips to PostgreSQL so far (the access log's db_trips) */
} mb_db;

/* One statement of mb_db_exec_many. */
typedef struct {
    const char *sql; /* a constant string (the prepared statement's key) */
    int n;
    const char *const *params;
} mb_q;

/* Runs one statement, as a prepared statement of the pooled connection (prepared on first
 * use, keyed by the SQL text, so sql must be a constant string). On success *out holds the result
 * (PQclear it; out may be NULL). Failures: MB_E_UNAVAILABLE when the database cannot be reached,
 * MB_E_CONFLICT for a unique or exclusion violation and MB_E_VALIDATION for a
 * check or foreign-key violation (db->constraint names it), MB_E_INTERNAL
 * otherwise.
 * Failover (DATABASE_URL lists every node with target_session_attrs=read-write): a lost
 * connection or a read-only error from a demoted node (SQLSTATE 25006) is MB_E_UNAVAILABLE
 * (503 + Retry-After), and the connection is reset so that its next use reaches whichever node
 * is primary now. It is retried here once only when nothing can have been written: the first
 * statement of a transaction (its BEGIN goes with it), or a SELECT outside one. A COMMIT or a
 * later statement of a transaction is never retried: the write may or may not have committed,
 * and only the client can safely retry it (with the same Idempotency-Key). */
mb_err mb_db_exec(mb_db *db, PGresult **out, const char *sql, int n, const char *const *params);
/* Inside a transaction, a statement whose answer nobody waits for (an audit row, an outbox
 * event, the idempotency record): it is sent with the transaction's next statement, or with its
 * COMMIT, in the same round trip and in the order of the calls, so it sees and changes what it
 * would have run now. Its failure is the next statement's failure (MB_E_INTERNAL, or
 * MB_E_UNAVAILABLE for a lost connection): the transaction does not commit. A rollback drops
 * it. Outside a transaction it runs at once. Parameters are copied. */
#define MB_EXEC_MANY_MAX 6
/* Runs n statements (n <= MB_EXEC_MANY_MAX) in one round trip, each its own statement, in order (so
 * a later one sees what an earlier one changed or locked), as mb_db_exec runs one. MB_OK when all
 * worked, outs[i] each one's result (PQclear them). Else the first failure's error
 * (db->constraint), *failed its index (may be NULL), and no outs. */
mb_err mb_db_exec_many(mb_db *db, int n, const mb_q *qs, PGresult **outs, int *failed);
mb_err mb_db_defer(mb_db *db, const char *sql, int n, const char *const *params);
/* Frees a result and forgets it, so that a later error path's clear of the same variable is
 * harmless (a double free otherwise: seats.c had one, found by the HA test under ASan). */
static inline void mb_db_clear(PGresult **r)
{
    PQclear(*r);
    *r = NULL;
}
mb_err mb_db_begin(mb_db *db);
mb_err mb_db_commit(mb_db *db);
void mb_db_rollback(mb_db *db);
/* Gives the connection back to the pool (rolling back an open transaction). */
void mb_db_release(mb_db *db);

/* Probe for /readyz. */
bool mb_db_ping(void);
/* The answer of a ping at most a second old (one ping a second whatever the
 * number of callers): for /readyz. */
bool mb_db_ready(void);
unsigned long long mb_db_ready_checks(void); /* pings mb_db_ready made */

#endif
