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

void mb_router_init(void)
{
    const mb_route *const *tables = route_tables[0];
    for (int t = 0; tables[t] != NULL; t++)
        for (const mb_route *r = tables[t]; r->method != NULL && nroutes < MAX_ROUTES; r++)
            routes[nroutes++] = r;
}

int mb_route_count(void)
{
    return nroutes;
}

const mb_route *mb_route_at(int i)
{
    return (i >= 0 && i < nroutes) ? routes[i] : NULL;
}

/* Matches path against pattern; fills parameters. */
bool mb_route_match(const char *pattern, const char *path, mb_ctx *c)
{
    int np = 0;
    const char *p = pattern, *u = path;
    while (*p == '/' && *u == '/') {
        p++;
        u++;
        const char *pe = strchr(p, '/');
        const char *ue = strchr(u, '/');
        size_t pl = pe ? (size_t)(pe - p) : strlen(p);
        size_t ul = ue ? (size_t)(ue - u) : strlen(u);
        if (ul == 0)
            return false;
        if (*p == ':') {
            if (np >= MB_MAX_PARAMS || ul >= sizeof(c->param_buf[0]))
                return false;
            memcpy(c->param_buf[np], u, ul);
            c->param_buf[np][ul] = '\0';
            c->param[np] = c->param_buf[np];
            np++;
        } else if (pl != ul || memcmp(p, u, ul) != 0) {
            return false;
        }
        p += pl;
        u += ul;
    }
    if (*p != '\0' || *u != '\0')
        return false;
    c->nparam = np;
    return true;
}

const mb_route *mb_route_find(const char *method, const char *path, mb_ctx *c, bool *path_known)
{
    /* A literal segment beats a parameter: .../benefits/summary is not the
     * benefit "summary" (issue 14); among equals the first route wins. */
    *path_known = false;
    int best = -1, best_params = MB_MAX_PARAMS + 1;
    for (int i = 0; i < nroutes; i++) {
        if (!mb_route_match(routes[i]->pattern, path, c))
            continue;
        *path_known = true;
        if (strcmp(routes[i]->method, method) == 0 && c->nparam < best_params) {
            best = i;
            best_params = c->nparam;
        }
    }
    if (best < 0)
        return NULL;
    mb_route_match(routes[best]->pattern, path, c);
    c->route_idx = best;
    return routes[best];
}

size_t mb_route_allow(const char *path, char *allow, size_t size)
{
    size_t o = 0;
    mb_ctx tmp = {0};
    allow[0] = '\0';
    for (int i = 0; i < nroutes; i++)
        if (mb_route_match(routes[i]->pattern, path, &tmp) && o + 10 < size)
            o += (size_t)snprintf(allow + o, size - o, "%s%s", o ? ", " : "", routes[i]->method);
    return o;
}
