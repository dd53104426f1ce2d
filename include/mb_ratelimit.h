/* Rate limits (issue 15): a token bucket per token subject and one per
 * partner, in each process. RATE_LIMIT_PER_SUBJECT and RATE_LIMIT_PER_PARTNER
 * requests per RATE_LIMIT_WINDOW_SECONDS (the bucket's size; it refills
 * evenly over the window); 0 turns a limit off. */
#ifndef MB_RATELIMIT_H
#define MB_RATELIMIT_H

#include <stdbool.h>

#include "mb_auth.h"
#include "mb_config.h"

/* One bucket's state after a request: the RateLimit field's r and t, and
 * when refused, the seconds until one request is allowed again. */
typedef struct {
    const char *name; /* the policy's name: "subject" or "partner" */
    long quota, window_s;
    long remaining, reset_s, retry_after_s;
    bool refused;
} mb_rl_state;

typedef struct {
    mb_rl_state b[2];
    int n; /* buckets that apply (0 when both limits are off) */
    bool refused;
    long retry_after_s; /* the largest of the refusing buckets' */
} mb_rl_result;

/* Allocates the tables (only for the limits that are on). */
int mb_ratelimit_init(const mb_config *cfg);
void mb_ratelimit_free(void);
/* Takes one request from who's buckets at monotonic time now_s (seconds). A
 * request refused by one bucket takes nothing from the other. */
void mb_ratelimit_take(const mb_config *cfg, const mb_principal *who, double now_s,
                       mb_rl_result *out);
/* The values of the RateLimit-Policy and RateLimit fields
 * (draft-ietf-httpapi-ratelimit-headers-09) for a result. */
void mb_ratelimit_fields(const mb_rl_result *r, char *policy, size_t policy_len, char *state,
                         size_t state_len);

/* The dispatcher's hook, called once the token is verified: sets the
 * RateLimit-Policy and RateLimit fields on the answer and, when a bucket is
 * empty, answers 429 rate-limited with Retry-After and returns false. */
struct mb_ctx;
bool mb_ratelimit_admit(struct mb_ctx *c);

#endif
