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
    unsigned long long version_reads, version_queries; /* versions.c */
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

/* The partner's data version (with the catalog's and the clock's), read from PostgreSQL after
 * the call began, together with the other requests waiting for one (src/cache/versions.c).
 * *usable: the partner exists and is in Partner Center. Errors are mb_db_exec's (db is used
 * when this request's thread runs the query); MB_E_NOT_FOUND for an id that is no UUID. */
mb_err mb_version_read(mb_db *db, const char *pid, bool *usable, char *version, size_t vlen);
void mb_version_stats(unsigned long long *reads, unsigned long long *queries);

#endif
