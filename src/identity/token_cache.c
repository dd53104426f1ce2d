#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mb_identity.h"
#include "mb_token_cache.h"

/* Verified tokens. A client sends the same bearer token with every request
 * until it expires; checking it (base64, two JSON parses, an HMAC or an RSA
 * signature) took a tenth of the service's CPU on the read endpoints. A token
 * whose exact bytes passed mb_auth_verify is remembered with its caller until
 * its exp; nothing else about a token can change its verdict (the keys and
 * claims wanted are fixed at start; nbf and iat only move into the past),
 * except a JWKS key set that changed (entries of an older key set are checked
 * again) and a revocation, checked on every request, hit or miss.
 * Past exp, mb_auth_verify decides again (it allows some clock skew).
 * Four ways per set: a token may sit in any of its set's four slots, so two
 * busy tokens that hash alike do not push each other out on every request
 * (direct-mapped, 1 000 tokens in 16 384 slots had 6 % of them colliding, each
 * of their requests checked in full). A new token takes a free way, else the
 * one that expires first. Slots are allocated on first use (a few hundred
 * bytes each, a token's size); locks striped over the sets. */
#define TOKEN_SLOTS 16384
#define TOKEN_WAYS 4
#define TOKEN_SETS (TOKEN_SLOTS / TOKEN_WAYS)
#define TOKEN_LOCKS 256
#define TOKEN_CACHE_MAX 2048 /* longer tokens are checked every time */

typedef struct {
    size_t len, cap;
    long long exp;
    unsigned long keys_gen; /* mb_jwks_generation() when verified */
    mb_principal who;
    char token[]; /* cap bytes */
} token_entry;

static token_entry *token_cache[TOKEN_SLOTS];
static pthread_mutex_t token_locks[TOKEN_LOCKS];
static atomic_ullong token_hits, token_misses;

static uint32_t fnv1a(const char *s, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

/* The exp claim of a JWT's payload, or -1. */
static long long token_exp(const char *token, size_t len)
{
    const char *p = memchr(token, '.', len);
    const char *e = p ? memchr(p + 1, '.', len - (size_t)(p + 1 - token)) : NULL;
    if (p == NULL || e == NULL)
        return -1;
    p++;
    size_t n = (size_t)(e - p);
    unsigned char *raw = malloc(n * 3 / 4 + 3);
    if (raw == NULL)
        return -1;
    size_t o = 0;
    unsigned acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = p[i];
        int v = ch >= 'A' && ch <= 'Z'   ? ch - 'A'
                : ch >= 'a' && ch <= 'z' ? ch - 'a' + 26
                : ch >= '0' && ch <= '9' ? ch - '0' + 52
                : ch == '-'              ? 62
                : ch == '_'              ? 63
                                         : -1;
        if (v < 0) {
            free(raw);
            return -1;
        }
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            raw[o++] = (unsigned char)(acc >> bits);
        }
    }
    json_t *claims = json_loadb((const char *)raw, o, JSON_REJECT_DUPLICATES, NULL);
    free(raw);
    json_t *exp = json_object_get(claims, "exp");
    long long out = json_is_integer(exp) ? (long long)json_integer_value(exp) : -1;
    json_decref(claims);
    return out;
}

static mb_err cached_verify(const mb_config *cfg, const char *authorization, time_t now,
                            mb_principal *who, const char **why)
{
    const char *token = NULL;
    size_t len = 0;
    if (authorization != NULL && strncasecmp(authorization, "Bearer ", 7) == 0) {
        token = authorization + 7;
        len = strlen(token);
    }
    if (token == NULL || len == 0 || len > TOKEN_CACHE_MAX)
        return mb_auth_check(cfg, authorization, now, who, why);
    unsigned long gen = mb_jwks_generation();
    uint32_t set = fnv1a(token, len) % TOKEN_SETS;
    token_entry **ways = &token_cache[set * TOKEN_WAYS];
    pthread_mutex_t *mu = &token_locks[set % TOKEN_LOCKS];
    pthread_mutex_lock(mu);
    bool hit = false;
    for (int i = 0; i < TOKEN_WAYS && !hit; i++) {
        token_entry *t = ways[i];
        hit = t != NULL && t->len == len && (long long)now < t->exp && t->keys_gen == gen &&
              memcmp(t->token, token, len) == 0;
        if (hit)
            *who = t->who;
    }
    pthread_mutex_unlock(mu);
    atomic_fetch_add(hit ? &token_hits : &token_misses, 1);
    if (hit)
        return MB_OK;
    mb_err e = mb_auth_check(cfg, authorization, now, who, why);
    if (e != MB_OK)
        return e;
    long long exp = token_exp(token, len);
    if (exp <= (long long)now)
        return MB_OK;
    pthread_mutex_lock(mu);
    int way = 0; /* a free way, else the one that expires first */
    for (int i = 0; i < TOKEN_WAYS; i++) {
        if (ways[i] == NULL) {
            way = i;
            break;
        }
        if (ways[i]->exp < ways[way]->exp)
            way = i;
    }
    token_entry *t = ways[way];
    if (t == NULL || t->cap < len) {
        token_entry *n = realloc(t, sizeof(*t) + len);
        if (n != NULL) {
            n->cap = len;
            ways[way] = t = n;
        }
    }
    if (t != NULL && t->cap >= len) {
        memcpy(t->token, token, len);
        t->len = len;
        t->exp = exp;
        t->keys_gen = gen;
        t->who = *who;
    }
    pthread_mutex_unlock(mu);
    return MB_OK;
}

mb_err mb_token_verify(const mb_config *cfg, const char *authorization, time_t now,
                       mb_principal *who, const char **why)
{
    const char *reason = NULL;
    mb_err e = cached_verify(cfg, authorization, now, who, &reason);
    if (e == MB_OK && mb_revoked(who->tid, who->sub, who->iat)) {
        memset(who, 0, sizeof(*who));
        reason = "The token has been revoked (its user was removed, lost a role, or had their "
                 "tokens revoked): get a new one.";
        e = MB_E_UNAUTHENTICATED;
    }
    if (why != NULL)
        *why = reason;
    return e;
}

void mb_token_cache_init(void)
{
    for (int i = 0; i < TOKEN_LOCKS; i++)
        pthread_mutex_init(&token_locks[i], NULL);
}

void mb_token_cache_free(void)
{
    for (int i = 0; i < TOKEN_SLOTS; i++) {
        free(token_cache[i]);
        token_cache[i] = NULL;
    }
    for (int i = 0; i < TOKEN_LOCKS; i++)
        pthread_mutex_destroy(&token_locks[i]);
}

void mb_token_cache_stats(unsigned long long *hits, unsigned long long *misses)
{
    *hits = atomic_load(&token_hits);
    *misses = atomic_load(&token_misses);
}
