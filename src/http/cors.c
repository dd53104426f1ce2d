/* CORS: the allowed origins of CORS_ORIGINS get the answer's headers exposed
 * to their scripts; a preflight from any other origin is refused with its
 * own problem code (cors-origin-refused), not a role's. */
#include <string.h>

#include "http_internal.h"

/* What a browser script may read of an answer, besides the CORS-safelisted
 * fields (README "API conventions" and the contract list them). */
#define EXPOSED                                                                                    \
    "X-Request-Id, Location, ETag, Retry-After, Idempotent-Replayed, traceparent, RateLimit, "     \
    "RateLimit-Policy, Deprecation, Sunset, Link"

static bool origin_allowed(const char *list, const char *origin)
{
    if (origin == NULL || list == NULL || *list == '\0')
        return false;
    size_t ol = strlen(origin);
    for (const char *p = list; *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        const char *e = p;
        while (*e && *e != ',')
            e++;
        const char *t = e;
        while (t > p && t[-1] == ' ')
            t--;
        size_t l = (size_t)(t - p);
        if ((l == 1 && *p == '*') || (l == ol && strncmp(p, origin, l) == 0))
            return true;
        p = e;
    }
    return false;
}

void mb_cors(mb_ctx *c)
{
    const char *origin = mb_header(c, "Origin");
    if (!origin_allowed(c->cfg->cors_origins, origin))
        return;
    mb_set_header(c, "Access-Control-Allow-Origin", origin);
    mb_set_header(c, "Vary", "Origin");
    mb_set_header(c, "Access-Control-Expose-Headers", EXPOSED);
}

bool mb_cors_preflight(mb_ctx *c, const char *method)
{
    if (strcmp(method, "OPTIONS") != 0 || mb_header(c, "Origin") == NULL ||
        mb_header(c, "Access-Control-Request-Method") == NULL)
        return false;
    if (origin_allowed(c->cfg->cors_origins, mb_header(c, "Origin"))) {
        mb_set_header(c, "Access-Control-Allow-Methods", "GET, POST, PUT, PATCH, DELETE, OPTIONS");
        mb_set_header(c, "Access-Control-Allow-Headers",
                      "Authorization, Content-Type, Idempotency-Key, If-Match, If-None-Match, "
                      "X-Request-Id, traceparent, Last-Event-ID, Accept");
        mb_set_header(c, "Access-Control-Max-Age", "600");
        mb_reply_empty(c, 204);
    } else {
        mb_reply_problem(c, MB_E_CORS_ORIGIN_REFUSED,
                         "This origin may not call the API from a browser (CORS_ORIGINS).");
    }
    return true;
}
