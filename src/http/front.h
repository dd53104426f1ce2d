/* The connection front (front.c): accepts, parks idle connections without a
 * thread, hands whole request heads to libmicrohttpd, enforces
 * HTTP_MAX_CONNECTIONS with an immediate 503. */
#ifndef MB_FRONT_H
#define MB_FRONT_H

#include <microhttpd.h>
#include <stdbool.h>

typedef struct {
    int active;     /* connections libmicrohttpd serves (a thread each) */
    long parked;    /* connections waiting for their first request head */
    long refused;   /* 503s and closes at the limits, since start */
    long timed_out; /* parked connections closed for sending no whole head */
} mb_front_stats_t;

/* Starts the front thread on listen_fd; cap is HTTP_MAX_CONNECTIONS, per_client
 * HTTP_MAX_CONNECTIONS_PER_CLIENT. */
int mb_front_start(struct MHD_Daemon *daemon, int listen_fd, int cap, int per_client,
                   unsigned head_timeout_s);
/* Stops accepting, closes the parked connections, joins the thread. */
void mb_front_stop(void);
/* libmicrohttpd's MHD_OPTION_NOTIFY_CONNECTION: counts the connections it serves. */
void mb_front_notify(void *cls, struct MHD_Connection *connection, void **socket_context,
                     enum MHD_ConnectionNotificationCode toe);
void mb_front_stats(mb_front_stats_t *out);

#endif
