/* Prepared statements per connection, run in pipelines: a request's
 * statements that need no answer in between (the BEGIN, the outbox event and
 * audit row deferred to the next statement or the COMMIT, and the PREPARE of
 * a statement this connection has not seen) share one round trip. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pool_internal.h"

void mb_stmts_clear(conn_slot *s)
{
    for (int i = 0; i < STMT_SLOTS; i++)
        free(s->stmts[i].sql);
    memset(s->stmts, 0, sizeof(s->stmts));
    s->nstmts = 0;
}

static uint32_t ptr_hash(const void *p)
{
    uint64_t x = (uint64_t)(uintptr_t)p;
    x ^= x >> 29;
    x *= 0x9E3779B97F4A7C15ull;
    return (uint32_t)(x >> 40);
}

/* The slot holding sql, or the empty slot where it would go (NULL: the table
 * is full). */
static stmt *stmt_slot(conn_slot *s, const char *sql)
{
    uint32_t i = ptr_hash(sql) & (STMT_SLOTS - 1);
    for (int probe = 0; probe < STMT_SLOTS; probe++, i = (i + 1) & (STMT_SLOTS - 1))
        if (s->stmts[i].key == sql || s->stmts[i].key == NULL)
            return &s->stmts[i];
    return NULL;
}

/* How one statement of a pipeline is sent. */
typedef struct {
    char name[16]; /* "" = run unprepared */
    char *copy;    /* set: prepare it under name in this round trip (owned) */
    unsigned id;
    bool prepared; /* its PREPARE worked */
} plan;

static void plan_one(conn_slot *s, const mb_q *qs, plan *pl, int i, int *fresh)
{
    const char *sql = qs[i].sql;
    for (int j = 0; j < i; j++) { /* the same new statement twice: prepare it once */
        if (qs[j].sql == sql && pl[j].name[0]) {
            memcpy(pl[i].name, pl[j].name, sizeof(pl[i].name));
            return;
        }
    }
    stmt *st = stmt_slot(s, sql);
    if (st != NULL && st->key == sql && strcmp(st->sql, sql) == 0) {
        snprintf(pl[i].name, sizeof(pl[i].name), "mb%u", st->id);
    } else if (st != NULL && (st->key != NULL || s->nstmts + *fresh < STMT_SLOTS * 3 / 4) &&
               (pl[i].copy = strdup(sql)) != NULL) {
        pl[i].id = s->next_id++;
        snprintf(pl[i].name, sizeof(pl[i].name), "mb%u", pl[i].id);
        (*fresh)++;
    }
    /* else: the table is three quarters full (never in this service), or no
     * memory: run it unprepared rather than evict. */
}

/* Remembers the statements whose PREPARE worked; frees the other copies. */
static void remember(conn_slot *s, const mb_q *qs, plan *pl, int nq)
{
    for (int i = 0; i < nq; i++) {
        if (pl[i].copy == NULL)
            continue;
        stmt *st = pl[i].prepared ? stmt_slot(s, qs[i].sql) : NULL;
        if (st == NULL) {
            free(pl[i].copy);
            continue;
        }
        if (st->key == NULL)
            s->nstmts++;
        free(st->sql);
        st->key = qs[i].sql;
        st->sql = pl[i].copy;
        st->id = pl[i].id;
    }
}

static bool result_ok(const PGresult *r)
{
    ExecStatusType st = PQresultStatus(r);
    return st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
}

/* Without pipeline mode (an old server): one round trip per statement. */
static int run_each(conn_slot *s, const mb_q *qs, plan *pl, int nq, bool begin, PGresult **res,
                    PGresult **err)
{
    PGresult *r;
    if (begin) {
        s->trips++;
        r = PQexec(s->conn, "BEGIN");
        if (!result_ok(r)) {
            *err = r;
            return -1;
        }
        PQclear(r);
    }
    for (int i = 0; i < nq; i++) {
        if (pl[i].copy != NULL) {
            s->trips++;
            r = PQprepare(s->conn, pl[i].name, qs[i].sql, qs[i].n, NULL);
            pl[i].prepared = result_ok(r);
            if (!pl[i].prepared) {
                *err = r;
                return i;
            }
            PQclear(r);
        }
        s->trips++;
        r = pl[i].name[0]
                ? PQexecPrepared(s->conn, pl[i].name, qs[i].n, qs[i].params, NULL, NULL, 0)
                : PQexecParams(s->conn, qs[i].sql, qs[i].n, NULL, qs[i].params, NULL, NULL, 0);
        if (!result_ok(r)) {
            *err = r;
            return i;
        }
        res[i] = r;
    }
    return nq;
}

/* Sends the pipeline; returns how many queries went out (each gives one
 * result), their owners in who[] (-1 the BEGIN, i for statement i; for a
 * PREPARE, -2 - i). */
static int send_all(conn_slot *s, const mb_q *qs, const plan *pl, int nq, bool begin, int *who)
{
    int sent = 0;
    if (begin) {
        if (PQsendQueryParams(s->conn, "BEGIN", 0, NULL, NULL, NULL, NULL, 0) != 1)
            return sent;
        who[sent++] = -1;
    }
    for (int i = 0; i < nq; i++) {
        if (pl[i].copy != NULL) {
            if (PQsendPrepare(s->conn, pl[i].name, qs[i].sql, qs[i].n, NULL) != 1)
                return sent;
            who[sent++] = -2 - i;
        }
        int ok =
            pl[i].name[0]
                ? PQsendQueryPrepared(s->conn, pl[i].name, qs[i].n, qs[i].params, NULL, NULL, 0)
                : PQsendQueryParams(s->conn, qs[i].sql, qs[i].n, NULL, qs[i].params, NULL, NULL, 0);
        if (ok != 1)
            return sent;
        who[sent++] = i;
    }
    return sent;
}

int mb_run_pipeline(conn_slot *s, const mb_q *qs, int nq, bool begin, PGresult **res,
                    PGresult **err)
{
    plan pl[MB_PIPE_MAX];
    memset(pl, 0, sizeof(pl));
    int fresh = 0;
    for (int i = 0; i < nq; i++) {
        res[i] = NULL;
        plan_one(s, qs, pl, i, &fresh);
    }
    *err = NULL;

    int failed;
    if ((!begin && nq == 1 && pl[0].copy == NULL) || PQenterPipelineMode(s->conn) != 1) {
        failed = run_each(s, qs, pl, nq, begin, res, err); /* one query: no pipeline needed */
        remember(s, qs, pl, nq);
        return failed;
    }
    s->trips++;
    int who[2 * MB_PIPE_MAX + 1];
    int sent = send_all(s, qs, pl, nq, begin, who);
    int total = (begin ? 1 : 0) + nq + fresh;
    bool synced = PQpipelineSync(s->conn) == 1;
    failed = nq;
    for (int q = 0; q < sent; q++) {
        PGresult *got = PQgetResult(s->conn);
        int owner = who[q] < -1 ? -2 - who[q] : who[q];
        if (got == NULL) { /* connection lost */
            if (failed == nq)
                failed = owner;
            break;
        }
        bool ok = result_ok(got);
        if (who[q] < -1)
            pl[owner].prepared = ok;
        if (!ok && failed == nq) {
            failed = owner; /* the first failure; the rest were skipped */
            *err = got;
        } else if (ok && who[q] >= 0 && failed == nq) {
            res[owner] = got;
        } else {
            PQclear(got);
        }
        PQclear(PQgetResult(s->conn)); /* NULL after each query's results */
    }
    for (PGresult *x; (x = PQgetResult(s->conn)) != NULL;) {
        bool sync = PQresultStatus(x) == PGRES_PIPELINE_SYNC;
        PQclear(x);
        if (sync)
            break;
    }
    PQexitPipelineMode(s->conn);
    if (failed == nq && (sent < total || !synced))
        failed = nq - 1; /* not all sent: treat as a lost connection */
    if (failed < nq)
        for (int i = 0; i < nq; i++) {
            PQclear(res[i]);
            res[i] = NULL;
        }
    remember(s, qs, pl, nq);
    return failed;
}
