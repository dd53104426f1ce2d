/* What the server's parts share: the router, the transaction runner. */
#ifndef MB_HTTP_INTERNAL_H
#define MB_HTTP_INTERNAL_H

#include "mb_http.h"

/* Collects the routes of every resource file (once, before serving). */
void mb_router_init(void);
/* The route for method and path (its index in c->route_idx), or NULL;
 * path_known tells whether another method would match (405, not 404). */
const mb_route *mb_route_find(const char *method, const char *path, mb_ctx *c, bool *path_known);
/* The methods that match path, comma-separated, for an Allow header. */
size_t mb_route_allow(const char *path, char *allow, size_t size);

/* Runs a state-changing route's handler in one transaction, committed only on
 * 2xx, with Idempotency-Key handling on POST. */
void mb_run_tx(mb_ctx *c, const mb_route *r);

/* CORS (cors.c): the headers of an allowed origin's answer; a preflight
 * answered (204, or 403 cors-origin-refused) returns true. */
void mb_cors(mb_ctx *c);
bool mb_cors_preflight(mb_ctx *c, const char *method);

/* listener.c: the dual-stack listening socket of port (IPv4 only without IPv6), or -1; the
 * soft descriptor limit raised to the hard one. */
int mb_open_listener(int port);
void mb_raise_fd_limit(void);

#endif
