/* The cache of partner reads (src/cache/cache.c): data versions, ETag/304,
 * rendered answers kept in memory and never served stale. */
#ifndef MB_CACHE_H
#define MB_CACHE_H

#include <stdbool.h>
#include <stddef.h>

#include "mb_http.h"

typedef struct {
    bool active; /* a cacheable read: keep its 200 */
    bool strong; /* its ETag is the strong hash of the document (issue 13) */
    char version[64];
    char key[1200];
    char etag[128];
} mb_cache_req;

typedef struct {
    unsigned long long hits, misses, not_modified, stores;
    size_t bytes;
} mb_cache_stats_t;

void mb_cache_init(size_t max_bytes); /* CACHE_MB */
void mb_cache_free(void);
/* Is the route pattern one whose answers are kept? */
bool mb_cache_route(const char *pattern);
/* Before the handler: true when it answered (304, or a kept 200). */
bool mb_cache_before(mb_ctx *c, mb_cache_req *q);
/* After the handler: keeps its 200. */
void mb_cache_after(mb_ctx *c, const mb_cache_req *q);
void mb_cache_stats(mb_cache_stats_t *s);

#endif
