/* Logs (text or LOG_FORMAT=json) and the W3C trace context of a request. */
#ifndef MB_LOG_H
#define MB_LOG_H

#include <stdbool.h>

/* Starts Yder: its console format, or one JSON object a line. */
int mb_log_init(bool json, const char *message);

typedef struct {
    const char *request_id, *trace_id, *method, *route, *actor;
    const char *code; /* the problem's code when the answer is one, else NULL */
    long status;
    double ms;
    unsigned db_trips; /* round trips to PostgreSQL the request made */
} mb_access;

/* The access log line of a request: one write(2) of a line built on the
 * stack (Yder's stdio path cost 5 % of the read endpoints' throughput). */
void mb_log_access(const mb_access *a);

typedef struct {
    char trace_id[33]; /* the caller's, or a new one */
    char span_id[17];  /* ours, new for each request */
    char flags[3];
    char header[56]; /* the traceparent to answer and pass on */
} mb_trace;

/* Takes the trace of a traceparent header when it is valid, else starts one. */
void mb_trace_context(const char *traceparent, mb_trace *t);

#endif
