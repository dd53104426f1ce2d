/* Rate limits: token buckets per token subject and per partner, in each
 * process (replicas behind a balancer each hold their own; the cluster's
 * nginx limits by client address in front of them).
 *
 * A bucket holds up to q requests and refills at q per w seconds. Buckets
 * live in fixed tables split into shards, each with its own mutex, so that
 * threads serving different callers rarely meet (a shard is taken for a few
 * dozen instructions). A slot is found by a keyed 64-bit hash of the caller
 * with a short linear probe; a bucket that has refilled to the full is the
 * same as no bucket, so its slot is free for another caller. When every
 * probed slot holds a partly used bucket, the fullest one is given up: the
 * memory is fixed, and under that pressure a caller may get a fresh bucket
 * early, never a refusal it did not earn. */
#include "mb_ratelimit.h"

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "mb_http.h"

#define SHARD_BITS 6
#define SHARDS (1u << SHARD_BITS)
#define SLOTS 2048u /* per shard: 131 072 buckets per table, 3 MB */
#define PROBE 8

typedef struct {
    uint64_t key; /* 0: never used */
    double tokens, stamp;
} slot;

typedef struct {
    _Alignas(64) pthread_mutex_t mu; /* a cache line each: no false sharing */
    slot *slots;
} shard;

typedef struct {
    shard shards[SHARDS];
    double quota, rate; /* rate: tokens per second */
    long window_s;
} table;

static table *tables[2]; /* 0: subject, 1: partner */
static uint64_t seed;

static table *table_new(long quota, long window_s)
{
    /* aligned: the shards are a cache line apart */
    table *t = aligned_alloc(64, (sizeof(*t) + 63) / 64 * 64);
    if (t == NULL)
        return NULL;
    memset(t, 0, sizeof(*t));
    t->quota = (double)quota;
    t->window_s = window_s;
    t->rate = (double)quota / (double)window_s;
    for (unsigned i = 0; i < SHARDS; i++) {
        pthread_mutex_init(&t->shards[i].mu, NULL);
        t->shards[i].slots = calloc(SLOTS, sizeof(slot));
        if (t->shards[i].slots == NULL)
            return t; /* freed by the caller through mb_ratelimit_free */
    }
    return t;
}

static void table_free(table *t)
{
    if (t == NULL)
        return;
    for (unsigned i = 0; i < SHARDS; i++) {
        free(t->shards[i].slots);
        pthread_mutex_destroy(&t->shards[i].mu);
    }
    free(t);
}

int mb_ratelimit_init(const mb_config *cfg)
{
    if (getrandom(&seed, sizeof(seed), 0) != (ssize_t)sizeof(seed))
        seed = (uint64_t)time(NULL) * 0x9E3779B97F4A7C15ull;
    const long q[2] = {cfg->rate_limit_per_subject, cfg->rate_limit_per_partner};
    for (int i = 0; i < 2; i++) {
        if (q[i] <= 0)
            continue;
        tables[i] = table_new(q[i], cfg->rate_limit_window_s);
        if (tables[i] == NULL || tables[i]->shards[SHARDS - 1].slots == NULL) {
            mb_ratelimit_free();
            return -1;
        }
    }
    return 0;
}

void mb_ratelimit_free(void)
{
    for (int i = 0; i < 2; i++) {
        table_free(tables[i]);
        tables[i] = NULL;
    }
}

/* FNV-1a over the seed and the parts, then a splitmix64 finish: callers do
 * not choose where their bucket lands. */
static uint64_t key_of(const char *a, const char *b)
{
    uint64_t h = 1469598103934665603ull ^ seed;
    for (const char *s = a; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    h = (h ^ '/') * 1099511628211ull;
    for (const char *s = b; s != NULL && *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebull;
    h ^= h >> 31;
    return h ? h : 1;
}

static double level(const table *t, const slot *s, double now)
{
    /* now was read before the shard's lock: another thread may have stamped
     * the bucket a moment later, which is no time passed, not negative time */
    double v = s->tokens + (now > s->stamp ? now - s->stamp : 0) * t->rate;
    return v > t->quota ? t->quota : v;
}

/* The caller's slot in a locked shard: its own, a free one, or the fullest. */
static slot *find(table *t, shard *sh, uint64_t key, double now)
{
    slot *take = NULL;
    double best = -1;
    for (unsigned i = 0; i < PROBE; i++) {
        slot *s = &sh->slots[(key + i) & (SLOTS - 1)];
        if (s->key == key)
            return s;
        double v = s->key == 0 ? t->quota : level(t, s, now);
        if (v > best) {
            best = v;
            take = s;
        }
    }
    take->key = key;
    take->tokens = t->quota;
    take->stamp = now;
    return take;
}

/* Whole seconds up from x, without a rounding error turning 200 into 201. */
static long ceil_s(double x)
{
    return (long)ceil(x - 1e-6);
}

static void state_of(const table *t, double tokens, mb_rl_state *st)
{
    st->quota = (long)t->quota;
    st->window_s = t->window_s;
    st->remaining = tokens < 0 ? 0 : (long)floor(tokens);
    /* t: seconds until the bucket is full again */
    st->reset_s = ceil_s((t->quota - tokens) / t->rate);
    st->retry_after_s = st->refused ? ceil_s((1.0 - tokens) / t->rate) : 0;
    if (st->refused && st->retry_after_s < 1)
        st->retry_after_s = 1;
}

typedef enum { TAKE, GIVE, PEEK } op;

/* Takes a token from a bucket, gives one back, or only reads its state. */
static void bucket(table *t, uint64_t key, double now, op o, mb_rl_state *st)
{
    shard *sh = &t->shards[key >> (64 - SHARD_BITS)];
    pthread_mutex_lock(&sh->mu);
    slot *s = find(t, sh, key, now);
    double v = level(t, s, now);
    if (o == GIVE)
        v = v + 1 > t->quota ? t->quota : v + 1;
    else if (o == TAKE && v >= 1)
        v -= 1;
    else if (o == TAKE)
        st->refused = true;
    s->tokens = v;
    if (now > s->stamp)
        s->stamp = now;
    pthread_mutex_unlock(&sh->mu);
    state_of(t, v, st);
}

void mb_ratelimit_take(const mb_config *cfg, const mb_principal *who, double now_s,
                       mb_rl_result *out)
{
    (void)cfg;
    memset(out, 0, sizeof(*out));
    uint64_t keys[2] = {0, 0};
    int idx[2];
    /* A subject is unique within its tenant; operators have no partner. */
    if (tables[0] != NULL) {
        keys[out->n] = key_of(who->tid, who->sub);
        idx[out->n] = 0;
        out->b[out->n++].name = "subject";
    }
    if (tables[1] != NULL && who->tid[0] != '\0') {
        keys[out->n] = key_of(who->tid, NULL);
        idx[out->n] = 1;
        out->b[out->n++].name = "partner";
    }
    for (int i = 0; i < out->n; i++) {
        bucket(tables[idx[i]], keys[i], now_s, TAKE, &out->b[i]);
        if (out->b[i].refused) {
            out->refused = true;
            out->retry_after_s = out->b[i].retry_after_s;
            /* what the earlier buckets took is given back */
            for (int j = 0; j < i; j++)
                bucket(tables[idx[j]], keys[j], now_s, GIVE, &out->b[j]);
            /* the later ones are shown as they are, untouched */
            for (int j = i + 1; j < out->n; j++)
                bucket(tables[idx[j]], keys[j], now_s, PEEK, &out->b[j]);
            return;
        }
    }
}

void mb_ratelimit_fields(const mb_rl_result *r, char *policy, size_t policy_len, char *state,
                         size_t state_len)
{
    size_t po = 0, so = 0;
    policy[0] = state[0] = '\0';
    for (int i = 0; i < r->n; i++) {
        const mb_rl_state *b = &r->b[i];
        po += (size_t)snprintf(policy + po, policy_len - po, "%s\"%s\";q=%ld;w=%ld", i ? ", " : "",
                               b->name, b->quota, b->window_s);
        so += (size_t)snprintf(state + so, state_len - so, "%s\"%s\";r=%ld;t=%ld", i ? ", " : "",
                               b->name, b->remaining, b->reset_s);
        if (po >= policy_len || so >= state_len)
            return;
    }
}

bool mb_ratelimit_admit(mb_ctx *c)
{
    if (tables[0] == NULL && tables[1] == NULL)
        return true;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    mb_rl_result r;
    mb_ratelimit_take(c->cfg, &c->who, (double)ts.tv_sec + (double)ts.tv_nsec / 1e9, &r);
    if (r.n == 0)
        return true; /* only a partner limit, and an operator: nothing applies */
    char policy[160], state[160];
    mb_ratelimit_fields(&r, policy, sizeof(policy), state, sizeof(state));
    mb_set_header(c, "RateLimit-Policy", policy);
    mb_set_header(c, "RateLimit", state);
    if (!r.refused)
        return true;
    char ra[24];
    snprintf(ra, sizeof(ra), "%ld", r.retry_after_s);
    mb_set_header(c, "Retry-After", ra);
    const mb_rl_state *b = NULL;
    for (int i = 0; i < r.n && b == NULL; i++)
        if (r.b[i].refused)
            b = &r.b[i];
    mb_reply_problem(c, MB_E_RATE_LIMITED,
                     "Too many requests for this %s: %ld per %ld s; retry in %ld s.", b->name,
                     b->quota, b->window_s, r.retry_after_s);
    return false;
}
