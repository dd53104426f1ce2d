/* The pool's connection slots and their prepared statements, shared by
 * pool.c (the pool, mb_db_exec) and statements.c (a pipeline of prepared
 * statements in one round trip). */
#ifndef MB_POOL_INTERNAL_H
#define MB_POOL_INTERNAL_H

#include <libpq-fe.h>
#include <stdbool.h>

#include "mb_db.h"

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
    bool dealloc;        /* server-side statements went stale: DEALLOCATE ALL when idle */
    bool reset;          /* on a demoted node: reconnect (to the primary) on the next use */
    unsigned long trips; /* round trips made on this connection */
} conn_slot;

#define MB_PIPE_MAX 16 /* statements in one pipeline */

/* Forgets every prepared statement of a slot (after a reconnect the server has
 * none left). */
void mb_stmts_clear(conn_slot *s);

/* Runs qs[0..nq-1] (nq <= MB_PIPE_MAX) on the slot's connection in one round trip
 * (libpq's pipeline mode), each as a prepared statement, prepared in the same round
 * trip when this connection has not seen it; with begin, a BEGIN goes first. Returns
 * nq when every one worked, with res[i] each one's result; else the index of the first
 * that failed (-1: the BEGIN), with *err its result (an error result, or NULL when the
 * connection is lost or memory is short) and no res. */
int mb_run_pipeline(conn_slot *s, const mb_q *qs, int nq, bool begin, PGresult **res,
                    PGresult **err);

#endif
