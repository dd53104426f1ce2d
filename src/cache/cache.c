/* Reads that PostgreSQL need not run again (issue 17). A partner GET first
 * reads the partner's data version (sql/007_data_versions.sql: one indexed
 * row, which is also the tenant gate); an answer made at that same version is
 * still exactly what the SQL would give, so:
 *   - If-None-Match with the ETag of that version answers 304, no body;
 *   - an answer kept in memory at that version is answered as it is;
 *   - otherwise the handler runs, and its 200 is kept under the version read
 *     before it (an answer newer than its version is only ever refreshed too
 *     early, never served stale).
 * Never stale whatever replica wrote: the version is read from PostgreSQL on
 * every request. The key holds everything that shapes an answer: the route,
 * the URL with its query, the caller (partner, subject, roles: who may see
 * technical benefits) and the kind of body asked for. Memory is bounded by
 * CACHE_MB (LRU). Routes that answer secrets are never cached. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mb_cache.h"

/* The partner reads whose answers depend on nothing but the partner's and the
 * catalog's rows, the caller and the clock. */
static const char *const cacheable[] = {
    "/v1/partners/:partnerId",
    "/v1/partners/:partnerId/benefits",
    "/v1/partners/:partnerId/benefits/:benefitId",
    "/v1/partners/:partnerId/users",
    "/v1/partners/:partnerId/users/:userId",
    "/v1/partners/:partnerId/purchases",
    "/v1/partners/:partnerId/purchases/:purchaseId",
    "/v1/partners/:partnerId/activations/:activationId",
    "/v1/partners/:partnerId/audit-events",
    NULL,
};

/* The reads whose ETag is strong, a hash of the document answered (issue 13,
 * safe edits): the ETag that If-Match on their PATCH compares. */
static const char *const strong[] = {
    "/v1/partners/:partnerId",
    "/v1/partners/:partnerId/users/:userId",
    NULL,
};

static bool strong_route(const char *pattern)
{
    for (int i = 0; pattern && strong[i] != NULL; i++)
        if (strcmp(strong[i], pattern) == 0)
            return true;
    return false;
}

#define BUCKETS 8192

typedef struct entry {
    struct entry *hnext;       /* hash chain */
    struct entry *prev, *next; /* LRU, most recent first */
    uint64_t hash;
    char *key;
    char version[64];
    char *body;
    size_t len, cost;
} entry;

static struct {
    pthread_mutex_t mu;
    entry *buckets[BUCKETS];
    entry lru; /* sentinel */
    size_t bytes, max_bytes;
} C = {.mu = PTHREAD_MUTEX_INITIALIZER};

static atomic_ullong hits, misses, not_modified, stores;

void mb_cache_init(size_t max_bytes)
{
    C.lru.next = C.lru.prev = &C.lru;
    C.max_bytes = max_bytes;
}

static uint64_t fnv(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

static void lru_unlink(entry *e)
{
    e->prev->next = e->next;
    e->next->prev = e->prev;
}

static void lru_front(entry *e)
{
    e->next = C.lru.next;
    e->prev = &C.lru;
    C.lru.next->prev = e;
    C.lru.next = e;
}

static entry **slot(uint64_t h, const char *key)
{
    entry **pp = &C.buckets[h % BUCKETS];
    while (*pp != NULL && ((*pp)->hash != h || strcmp((*pp)->key, key) != 0))
        pp = &(*pp)->hnext;
    return pp;
}

static void drop(entry *e)
{
    entry **pp = slot(e->hash, e->key);
    if (*pp == e)
        *pp = e->hnext;
    lru_unlink(e);
    C.bytes -= e->cost;
    free(e->key);
    free(e->body);
    free(e);
}

void mb_cache_free(void)
{
    pthread_mutex_lock(&C.mu);
    while (C.lru.next != NULL && C.lru.next != &C.lru)
        drop(C.lru.next);
    pthread_mutex_unlock(&C.mu);
}

bool mb_cache_route(const char *pattern)
{
    for (int i = 0; cacheable[i] != NULL; i++)
        if (strcmp(cacheable[i], pattern) == 0)
            return true;
    return false;
}

/* A hit becomes c's answer, copied once, from the entry into Ulfius's body, under the lock
 * (an entry can be evicted as soon as the lock is let go). */
static bool lookup_into(mb_ctx *c, const char *key, const char *version)
{
    uint64_t h = fnv(key, strlen(key));
    bool hit = false;
    pthread_mutex_lock(&C.mu);
    entry *e = *slot(h, key);
    if (e != NULL && strcmp(e->version, version) == 0 &&
        ulfius_set_binary_body_response(c->resp, 200, e->body, e->len) == U_OK) {
        hit = true;
        lru_unlink(e);
        lru_front(e);
    }
    pthread_mutex_unlock(&C.mu);
    return hit;
}

static void store(const char *key, const char *version, const char *body, size_t len)
{
    size_t klen = strlen(key);
    size_t cost = sizeof(entry) + klen + 1 + len;
    if (cost > C.max_bytes / 8 || strlen(version) >= sizeof(((entry *)0)->version))
        return; /* one answer never takes more than an eighth of the cache */
    entry *n = calloc(1, sizeof(*n));
    char *k = malloc(klen + 1), *b = malloc(len ? len : 1);
    if (n == NULL || k == NULL || b == NULL) {
        free(n);
        free(k);
        free(b);
        return;
    }
    memcpy(k, key, klen + 1);
    memcpy(b, body, len);
    n->hash = fnv(key, klen);
    n->key = k;
    n->body = b;
    n->len = len;
    n->cost = cost;
    snprintf(n->version, sizeof(n->version), "%s", version);
    pthread_mutex_lock(&C.mu);
    entry **pp = slot(n->hash, key);
    if (*pp != NULL)
        drop(*pp);
    while (C.bytes + cost > C.max_bytes && C.lru.prev != &C.lru)
        drop(C.lru.prev);
    pp = slot(n->hash, key);
    n->hnext = *pp;
    *pp = n;
    lru_front(n);
    C.bytes += cost;
    pthread_mutex_unlock(&C.mu);
    atomic_fetch_add(&stores, 1);
}

void mb_cache_stats(mb_cache_stats_t *s)
{
    pthread_mutex_lock(&C.mu);
    s->bytes = C.bytes;
    pthread_mutex_unlock(&C.mu);
    s->hits = atomic_load(&hits);
    s->misses = atomic_load(&misses);
    s->not_modified = atomic_load(&not_modified);
    s->stores = atomic_load(&stores);
    mb_version_stats(&s->version_reads, &s->version_queries);
}

/* Does an If-None-Match list name etag (or "*")? */
static bool inm_matches(const char *inm, const char *etag)
{
    if (inm == NULL)
        return false;
    size_t el = strlen(etag);
    for (const char *p = inm; *p;) {
        while (*p == ' ' || *p == ',' || *p == '\t')
            p++;
        const char *e = p;
        while (*e && *e != ',')
            e++;
        const char *t = e;
        while (t > p && (t[-1] == ' ' || t[-1] == '\t'))
            t--;
        size_t l = (size_t)(t - p);
        if ((l == 1 && *p == '*') || (l == el && memcmp(p, etag, l) == 0))
            return true;
        /* a strong form of our weak tag names the same answer */
        if (l + 2 == el && memcmp(etag, "W/", 2) == 0 && memcmp(p, etag + 2, l) == 0)
            return true;
        p = e;
    }
    return false;
}

/* The strong ETag of the 200 answer's document; If-None-Match naming it
 * turns the answer into a 304. */
static void strong_etag(mb_ctx *c)
{
    if (c->resp->status != 200)
        return;
    char tag[MB_ETAG_LEN];
    mb_etag_of(c->resp->binary_body, c->resp->binary_body_length, tag);
    mb_set_header(c, "ETag", tag);
    if (inm_matches(mb_header(c, "If-None-Match"), tag)) {
        atomic_fetch_add(&not_modified, 1);
        mb_reply_empty(c, 304);
        u_map_remove_from_key(c->resp->map_header, "Content-Type"); /* no body */
    }
}

bool mb_cache_before(mb_ctx *c, mb_cache_req *q)
{
    memset(q, 0, sizeof(*q));
    if (c->nparam < 1 || strcmp(c->req->http_verb, "GET") != 0 || !mb_cache_route(c->route))
        return false;
    q->strong = strong_route(c->route);
    const char *accept = mb_header(c, "Accept");
    if (accept != NULL && (strstr(accept, "text/csv") || strstr(accept, "text/event-stream")))
        return false; /* exports and streams are not these answers */
    const char *pid = c->param[0];
    bool op = (c->who.roles & MB_ROLE_OPERATOR) != 0;
    if (!op && strcmp(c->who.tid, pid) != 0)
        return false;    /* the handler answers 404 */
    bool usable = false; /* the version, read with other requests' (versions.c) */
    if (mb_version_read(&c->db, pid, &usable, q->version, sizeof(q->version)) != MB_OK)
        return false; /* the handler answers the database's state */
    if (!usable)
        return false; /* no such partner, or in PMC: the handler answers that */
    snprintf(q->key, sizeof(q->key), "%s|%s|%s|%u|%s|%.900s", c->route, c->who.tid, op ? "op" : "p",
             c->who.roles, c->who.sub, c->req->http_url);
    char tag[32];
    snprintf(tag, sizeof(tag), "%016llx", (unsigned long long)fnv(q->key, strlen(q->key)));
    snprintf(q->etag, sizeof(q->etag), "W/\"%s.%s\"", q->version, tag);
    q->active = true;
    mb_set_header(c, "Cache-Control", "private, no-cache");
    if (!q->strong) {
        mb_set_header(c, "ETag", q->etag);
        if (inm_matches(mb_header(c, "If-None-Match"), q->etag)) {
            atomic_fetch_add(&not_modified, 1);
            mb_reply_empty(c, 304);
            return true;
        }
    }
    if (lookup_into(c, q->key, q->version)) {
        atomic_fetch_add(&hits, 1);
        mb_set_header(c, "Content-Type", "application/json");
        if (q->strong)
            strong_etag(c);
        return true;
    }
    atomic_fetch_add(&misses, 1);
    return false;
}

void mb_cache_after(mb_ctx *c, const mb_cache_req *q)
{
    if (!q->active) {
        if (q->strong) /* not kept (a PMC partner's user): the ETag all the same */
            strong_etag(c);
        return;
    }
    if (c->resp->status != 200) {
        /* an error is no version of the resource */
        u_map_remove_from_key(c->resp->map_header, "ETag");
        return;
    }
    store(q->key, q->version, c->resp->binary_body, c->resp->binary_body_length);
    if (q->strong)
        strong_etag(c);
}
