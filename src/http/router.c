/* The routing table: every resource file's routes in one list, and the path
 * matcher that fills a request's path parameters. */
#include <stdio.h>
#include <string.h>

#include "http_internal.h"

#define MAX_ROUTES 128

static const mb_route *routes[MAX_ROUTES];
static int nroutes;

static const mb_route *const *route_tables[] = {
    (const mb_route *const[]){mb_routes_core,
                              mb_routes_partners_admin,
                              mb_routes_accounts,
                              mb_routes_purchases,
                              mb_routes_keys,
                              mb_routes_seats,
                              mb_routes_activation,
                              mb_routes_support,
                              mb_routes_marketing,
                              mb_routes_refund,
                              mb_routes_identity,
                              mb_routes_events,
                              mb_routes_webhooks,
                              mb_routes_webhook_deliveries,
                              mb_routes_mail_deliveries,
                              /* issue 14 */ mb_routes_catalog,
                              mb_routes_catalog_reads,
                              mb_routes_packages,
                              mb_routes_batch,
                              mb_routes_summary,
                              /* issue 13 */ mb_routes_partner_lists,
                              mb_routes_cancellation_requests,
                              mb_routes_docs /* issue 15 */,
                              NULL}};

/* A path split at its slashes: "/v1/partners/p1" is three segments. Split once per
 * request; a route's pattern once, when the table is built. */
#define MAX_SEGS 12
typedef struct {
    int n; /* -1: a pattern no path matches */
    struct {
        const char *s;
        size_t len;
    } seg[MAX_SEGS];
} segments;

static segments patterns[MAX_ROUTES];

/* False for what no route has: no leading '/', an empty segment ("//", a trailing
 * '/', the root), more than MAX_SEGS segments. */
static bool split(const char *path, segments *out)
{
    out->n = 0;
    if (*path != '/')
        return false;
    const char *u = path;
    while (*u == '/') {
        const char *e = ++u;
        while (*e != '\0' && *e != '/')
            e++;
        if (e == u || out->n == MAX_SEGS)
            return false;
        out->seg[out->n].s = u;
        out->seg[out->n].len = (size_t)(e - u);
        out->n++;
        u = e;
    }
    return true;
}

void mb_router_init(void)
{
    const mb_route *const *tables = route_tables[0];
    for (int t = 0; tables[t] != NULL; t++)
        for (const mb_route *r = tables[t]; r->method != NULL && nroutes < MAX_ROUTES; r++) {
            if (!split(r->pattern, &patterns[nroutes]))
                patterns[nroutes].n = -1;
            routes[nroutes++] = r;
        }
}

int mb_route_count(void)
{
    return nroutes;
}

const mb_route *mb_route_at(int i)
{
    return (i >= 0 && i < nroutes) ? routes[i] : NULL;
}

/* Does route i take this path? Its literal segments equal, its parameters short enough
 * for the context's buffers; *np: how many parameters. */
static bool fits(int i, const segments *path, int *np)
{
    const segments *pat = &patterns[i];
    if (pat->n != path->n)
        return false;
    *np = 0;
    for (int k = 0; k < pat->n; k++) {
        size_t len = path->seg[k].len;
        if (pat->seg[k].s[0] == ':') {
            if (*np >= MB_MAX_PARAMS || len >= sizeof(((mb_ctx *)0)->param_buf[0]))
                return false;
            (*np)++;
        } else if (pat->seg[k].len != len || memcmp(pat->seg[k].s, path->seg[k].s, len) != 0) {
            return false;
        }
    }
    return true;
}

const mb_route *mb_route_find(const char *method, const char *path, mb_ctx *c, bool *path_known)
{
    /* A literal segment beats a parameter: .../benefits/summary is not the
     * benefit "summary" (issue 14); among equals the first route wins. */
    *path_known = false;
    segments p;
    if (!split(path, &p))
        return NULL;
    int best = -1, best_params = MB_MAX_PARAMS + 1;
    for (int i = 0; i < nroutes; i++) {
        int np = 0;
        if (!fits(i, &p, &np))
            continue;
        *path_known = true;
        if (np < best_params && strcmp(routes[i]->method, method) == 0) {
            best = i;
            best_params = np;
        }
    }
    if (best < 0)
        return NULL;
    int np = 0;
    for (int k = 0; k < p.n; k++) {
        if (patterns[best].seg[k].s[0] != ':')
            continue;
        memcpy(c->param_buf[np], p.seg[k].s, p.seg[k].len);
        c->param_buf[np][p.seg[k].len] = '\0';
        c->param[np] = c->param_buf[np];
        np++;
    }
    c->nparam = np;
    c->route_idx = best;
    return routes[best];
}

size_t mb_route_allow(const char *path, char *allow, size_t size)
{
    size_t o = 0;
    segments p;
    allow[0] = '\0';
    if (!split(path, &p))
        return 0;
    for (int i = 0; i < nroutes; i++) {
        int np = 0;
        if (!fits(i, &p, &np) || o + 10 >= size)
            continue;
        bool listed = false; /* .../benefits/summary and .../benefits/:id: GET once */
        for (int j = 0; j < i && !listed; j++)
            listed = fits(j, &p, &np) && strcmp(routes[j]->method, routes[i]->method) == 0;
        if (!listed)
            o += (size_t)snprintf(allow + o, size - o, "%s%s", o ? ", " : "", routes[i]->method);
    }
    return o;
}
