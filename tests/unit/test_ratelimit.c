/* Unit tests of the rate limiter's buckets (src/ratelimit/ratelimit.c): the
 * numbers of the RateLimit fields, refill and Retry-After, a refused request
 * taking nothing, and exact counts under threads (the shard locks). The HTTP
 * glue it also holds is stubbed here. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "mb_http.h"
#include "mb_ratelimit.h"

static int failures, checks;
#define CHECK(cond)                                                                                \
    do {                                                                                           \
        checks++;                                                                                  \
        if (!(cond)) {                                                                             \
            failures++;                                                                            \
            fprintf(stderr, "%s:%d: %s: CHECK(%s) failed\n", __FILE__, __LINE__, __func__, #cond); \
        }                                                                                          \
    } while (0)

/* the glue's answers are not under test here */
void mb_set_header(mb_ctx *c, const char *name, const char *value)
{
    (void)c, (void)name, (void)value;
}
void mb_reply_problem(mb_ctx *c, mb_err e, const char *fmt, ...)
{
    (void)c, (void)e, (void)fmt;
}

static mb_config cfg;

static void copy(char *dst, size_t size, const char *src)
{
    size_t n = strlen(src);
    if (n >= size)
        n = size - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static mb_principal who(const char *sub, const char *tid)
{
    mb_principal p = {0};
    copy(p.sub, sizeof(p.sub), sub);
    copy(p.tid, sizeof(p.tid), tid);
    return p;
}

static void setup(int subject, int partner, int window)
{
    mb_ratelimit_free();
    cfg.rate_limit_per_subject = subject;
    cfg.rate_limit_per_partner = partner;
    cfg.rate_limit_window_s = window;
    CHECK(mb_ratelimit_init(&cfg) == 0);
}

#define P1 "11111111-0000-4000-8000-000000000001"
#define P2 "11111111-0000-4000-8000-000000000002"

static void test_fields_count_down_and_refusal_takes_nothing(void)
{
    setup(3, 5, 600);
    mb_principal a = who("a", P1), b = who("b", P1);
    mb_rl_result r;
    char policy[160], state[160];
    for (int i = 0; i < 3; i++)
        mb_ratelimit_take(&cfg, &a, 100.0, &r);
    CHECK(!r.refused);
    mb_ratelimit_fields(&r, policy, sizeof(policy), state, sizeof(state));
    CHECK(strcmp(policy, "\"subject\";q=3;w=600, \"partner\";q=5;w=600") == 0);
    /* 3 per 600 s: a token each 200 s, empty: full in 600 s; the partner (a token each
     * 120 s) has 3 used: full in 360 s */
    CHECK(strcmp(state, "\"subject\";r=0;t=600, \"partner\";r=2;t=360") == 0);
    mb_ratelimit_take(&cfg, &a, 100.0, &r);
    CHECK(r.refused && r.b[0].refused && !r.b[1].refused && r.retry_after_s == 200);
    CHECK(r.b[1].remaining == 2); /* the partner lost nothing */
    /* half a token later: 100 s to go */
    mb_ratelimit_take(&cfg, &a, 200.0, &r);
    CHECK(r.refused && r.retry_after_s == 100);
    /* b empties the partner; its refused request gives its own token back */
    mb_ratelimit_take(&cfg, &b, 200.0, &r);
    mb_ratelimit_take(&cfg, &b, 200.0, &r);
    CHECK(!r.refused && r.b[1].remaining == 0);
    mb_ratelimit_take(&cfg, &b, 200.0, &r);
    CHECK(r.refused && !r.b[0].refused && r.b[1].refused && r.b[0].remaining == 1);
    /* another partner, and an operator (no partner bucket), are untouched */
    mb_principal c = who("a", P2), op = who("op", "");
    mb_ratelimit_take(&cfg, &c, 200.0, &r);
    CHECK(!r.refused && r.n == 2 && r.b[0].remaining == 2 && r.b[1].remaining == 4);
    mb_ratelimit_take(&cfg, &op, 200.0, &r);
    CHECK(!r.refused && r.n == 1 && strcmp(r.b[0].name, "subject") == 0);
    /* after a whole window everything is full again */
    mb_ratelimit_take(&cfg, &a, 900.0, &r);
    CHECK(!r.refused && r.b[0].remaining == 2 && r.b[1].remaining == 4);
}

static void test_zero_turns_a_limit_off(void)
{
    setup(0, 2, 60);
    mb_principal a = who("a", P1);
    mb_rl_result r;
    mb_ratelimit_take(&cfg, &a, 1.0, &r);
    CHECK(r.n == 1 && strcmp(r.b[0].name, "partner") == 0);
    setup(0, 0, 60);
    mb_ratelimit_take(&cfg, &a, 1.0, &r);
    CHECK(r.n == 0 && !r.refused);
}

/* 8 threads, 5 000 subjects of 300 partners, time frozen: the partners admit
 * exactly 300 x 1000 requests, however the threads interleave. */
enum { THREADS = 8, SUBJECTS = 5000, PARTNERS = 300, TRIES = 100000 };
static mb_principal people[SUBJECTS];
static long admitted[THREADS];

static void *hammer(void *arg)
{
    long id = (long)arg;
    for (int i = 0; i < TRIES; i++) {
        mb_rl_result r;
        mb_ratelimit_take(&cfg, &people[(i * 7 + id * 613) % SUBJECTS], 5.0, &r);
        admitted[id] += !r.refused;
    }
    return NULL;
}

static void test_counts_are_exact_under_threads(void)
{
    setup(100, 1000, 60);
    for (int k = 0; k < SUBJECTS; k++) {
        char sub[16], tid[40];
        snprintf(sub, sizeof(sub), "u%d", k);
        snprintf(tid, sizeof(tid), "22222222-0000-4000-8000-%012d", k % PARTNERS);
        people[k] = who(sub, tid);
    }
    pthread_t t[THREADS];
    for (long i = 0; i < THREADS; i++)
        pthread_create(&t[i], NULL, hammer, (void *)i);
    long total = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        total += admitted[i];
    }
    CHECK(total == (long)PARTNERS * 1000);
}

int main(void)
{
    test_fields_count_down_and_refusal_takes_nothing();
    test_zero_turns_a_limit_off();
    test_counts_are_exact_under_threads();
    mb_ratelimit_free();
    printf("%d checks, %d failures\n", checks, failures);
    return failures ? 1 : 0;
}
