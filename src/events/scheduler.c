/* The scheduler: every SCHEDULER_INTERVAL_SECONDS (60) it writes the
 * scheduled events that are due (benefit.expiring, purchase.renewal_open,
 * purchase.refund_window_closing), purges what retention allows (events older
 * than EVENT_RETENTION_DAYS (90) whose deliveries are done, idempotency
 * records older than 24 h) and writes again the benefit documents whose time
 * has passed (sql/015_benefit_documents.sql). Any number of processes may run
 * it at once: each occasion is written once (emit_event's occasion check and
 * unique index), whatever the timing. */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <yder.h>

#include "mb_events.h"

static pthread_t thread;
static atomic_bool stop_flag;
static bool running;
static int interval_s = 60;
static int retention_days = 90;

static void due_events(void)
{
    mb_db db = {0};
    PGresult *r = NULL;
    mb_err e = mb_db_exec(&db, &r,
                          "SELECT c.partner_id::text, c.type, c.subject_type, c.subject_id, "
                          "c.occasion FROM scheduled_event_candidates c "
                          "WHERE NOT EXISTS (SELECT 1 FROM events x WHERE x.partner_id = "
                          "c.partner_id AND x.type = c.type AND x.occasion = c.occasion) "
                          "LIMIT 1000",
                          0, NULL);
    int written = 0;
    for (int i = 0; e == MB_OK && i < PQntuples(r) && !atomic_load(&stop_flag); i++) {
        /* one transaction per event: a partner's counter is held only briefly */
        const char *p[] = {PQgetvalue(r, i, 0), PQgetvalue(r, i, 1), PQgetvalue(r, i, 2),
                           PQgetvalue(r, i, 3), PQgetvalue(r, i, 4)};
        PGresult *w = NULL;
        mb_err we =
            mb_db_exec(&db, &w, "SELECT emit_event($1::uuid, $2, $3, $4, NULL, NULL, $5)", 5, p);
        if (we == MB_OK && !PQgetisnull(w, 0, 0))
            written++;
        PQclear(w);
    }
    mb_db_clear(&r);
    mb_db_release(&db);
    if (written > 0)
        y_log_message(Y_LOG_LEVEL_INFO, "scheduler: %d scheduled events written", written);
}

static void retention(void)
{
    char days[16];
    snprintf(days, sizeof(days), "%d", retention_days);
    const char *p[] = {days};
    mb_db db = {0};
    /* in batches, so that no statement holds many rows for long */
    mb_db_exec(&db, NULL,
               "WITH old AS (SELECT e.partner_id, e.seq FROM events e "
               "WHERE e.occurred_at < now() - make_interval(days => $1::int) "
               "AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.partner_id = "
               "e.partner_id AND d.event_id = event_id(e.seq) AND d.status = 'pending') "
               "AND NOT EXISTS (SELECT 1 FROM mail_deliveries m WHERE m.partner_id = "
               "e.partner_id AND m.event_id = event_id(e.seq) AND m.status = 'pending') "
               "LIMIT 5000), "
               "dw AS (DELETE FROM webhook_deliveries d USING old WHERE d.partner_id = "
               "old.partner_id AND d.event_id = event_id(old.seq)), "
               "dm AS (DELETE FROM mail_deliveries m USING old WHERE m.partner_id = "
               "old.partner_id AND m.event_id = event_id(old.seq)) "
               "DELETE FROM events e USING old WHERE e.partner_id = old.partner_id "
               "AND e.seq = old.seq",
               1, p);
    /* benefit documents whose time has passed (sql/015): readers already get
     * them built again; written, they are read from the table again */
    mb_db_exec(&db, NULL, "SELECT write_due_benefit_documents(1000)", 0, NULL);
    mb_db_exec(&db, NULL,
               "DELETE FROM idempotency_keys WHERE ctid IN (SELECT ctid FROM idempotency_keys "
               "WHERE created_at < now() - interval '24 hours' LIMIT 5000)",
               0, NULL);
    mb_db_release(&db);
}

static void *scheduler_main(void *arg)
{
    (void)arg;
    while (!atomic_load(&stop_flag)) {
        due_events();
        retention();
        for (int i = 0; i < interval_s * 10 && !atomic_load(&stop_flag); i++)
            usleep(100 * 1000);
    }
    return NULL;
}

int mb_scheduler_start(void)
{
    const char *v = getenv("SCHEDULER_INTERVAL_SECONDS");
    interval_s = v ? atoi(v) : 60;
    if (interval_s < 1)
        interval_s = 1;
    v = getenv("EVENT_RETENTION_DAYS");
    retention_days = v ? atoi(v) : 90;
    if (retention_days < 1)
        retention_days = 90;
    atomic_store(&stop_flag, false);
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, &old);
    int rc = pthread_create(&thread, NULL, scheduler_main, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    running = rc == 0;
    return rc == 0 ? 0 : -1;
}

void mb_scheduler_stop(void)
{
    atomic_store(&stop_flag, true);
    if (running)
        pthread_join(thread, NULL);
    running = false;
}
