/* Prometheus text at GET /metrics: requests by route template and status, a
 * latency histogram per route template, requests in flight, the database
 * pool (size, in use, waits) and database errors. */
#ifndef MB_METRICS_H
#define MB_METRICS_H

#include <stddef.h>

#include "mb_http.h"

void mb_metrics_observe(int route_idx, int status, double ms);
/* Writes the text exposition into a malloc'd buffer. */
char *mb_metrics_text(size_t *len);

int mb_route_count(void);
/* Requests the server is answering right now. */
int mb_http_in_flight(void);
const mb_route *mb_route_at(int i);

#endif
