/* Events (DESIGN §4b): the transactional outbox, the feed and its
 * Server-Sent Events fan-out, webhook and mail delivery. */
#ifndef MB_EVENTS_H
#define MB_EVENTS_H

#include <stdbool.h>

#include "mb_db.h"
#include "mb_err.h"

/* Writes the event of a state change in db's open transaction (so it exists
 * if and only if the change commits). Its data is the subject as its GET
 * shows it (sql/004_events.sql, emit_event); extra_json (may be NULL) adds what
 * the subject does not say (the user of a seat) and is the data of a deleted
 * subject. Never pass a license key. */
mb_err mb_event(mb_db *db, const char *partner_id, const char *type, const char *subject_type,
                const char *subject_id, const char *request_id, const char *extra_json);

/* The same for a caller that already holds the event's data (the subject as
 * its GET shows it, which it has just read for its answer): no second read. */
mb_err mb_event_data(mb_db *db, const char *partner_id, const char *type, const char *subject_type,
                     const char *subject_id, const char *request_id, const char *data_json);

/* The event types a client may filter on (NULL-terminated). */
extern const char *const mb_event_types[];
bool mb_event_type_known(const char *type);

/* The feed's fan-out: one LISTEN connection per process (its own, outside the
 * pool) wakes the Server-Sent Events clients of a partner when an event of it
 * commits. Start it before serving; stop it after. */
int mb_feed_start(const char *database_url);
void mb_feed_stop(void);
/* A number that changes whenever notifications may have been missed (the
 * listening connection was re-made): read it before looking for events. */
unsigned long mb_feed_epoch(void);
/* Waits, holding no database connection, until an event of partner_id newer
 * than seq is known to have committed (1), epoch has changed (1), timeout_ms
 * passed (0), or the feed is stopping (-1). */
int mb_feed_wait(const char *partner_id, long long seq, unsigned long epoch, int timeout_ms);
/* SSE clients connected now, for /metrics. */
void mb_feed_client(int delta);
/* Appends the events gauges (Prometheus text) to buf; returns the length. */
size_t mb_events_metrics(char *buf, size_t cap);

/* Webhooks. */
#include <sys/socket.h>
#define MB_WEBHOOK_URL_MAX 2048
/* Checks a webhook URL (https unless WEBHOOK_ALLOW_HTTP=1, a host, at most
 * 2 KB, no literal loopback/private/link-local address unless
 * WEBHOOK_ALLOW_PRIVATE=1); false with the reason in why. */
bool mb_webhook_url_ok(const char *url, char *why, size_t whylen);
/* True when deliveries must not connect to this address (loopback, private,
 * link-local, unspecified, multicast; unless WEBHOOK_ALLOW_PRIVATE=1). */
bool mb_addr_blocked(const struct sockaddr *sa);
bool mb_webhook_allow_http(void);

/* The delivery worker (webhooks, mail) and the scheduler: background threads
 * on the pool; they never call into src/http/. */
int mb_worker_start(const char *kek);
void mb_worker_stop(void);
int mb_scheduler_start(void);
void mb_scheduler_stop(void);

#endif
