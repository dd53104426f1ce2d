/* Bearer token checks and the caller they yield. */
#ifndef MB_AUTH_H
#define MB_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "mb_config.h"
#include "mb_err.h"

enum {
    MB_ROLE_GLOBAL_ADMIN = 1u << 0,
    MB_ROLE_USER_ADMIN = 1u << 1,
    MB_ROLE_ADMIN_AGENT = 1u << 2,
    MB_ROLE_MPN_PARTNER_ADMIN = 1u << 3,
    MB_ROLE_OPERATOR = 1u << 4,
};
#define MB_ROLES_PARTNER                                                                           \
    (MB_ROLE_GLOBAL_ADMIN | MB_ROLE_USER_ADMIN | MB_ROLE_ADMIN_AGENT | MB_ROLE_MPN_PARTNER_ADMIN)

#define MB_MAX_TOKEN 8192

typedef struct {
    char sub[129];
    char tid[37]; /* partner id; empty for operators */
    unsigned roles;
    long long iat; /* the token's iat; 0 when it has none */
} mb_principal;

/* Verifies an Authorization header value ("Bearer <jwt>") against cfg at
 * time now: pinned algorithm, signature, exp/nbf/iat, iss, aud, sub, roles,
 * tid. Returns MB_OK and fills who, or MB_E_UNAVAILABLE... never: only
 * MB_OK or MB_E_UNAUTHENTICATED. */
mb_err mb_auth_verify(const mb_config *cfg, const char *authorization, time_t now,
                      mb_principal *who);

/* mb_auth_verify, and on a refusal *why (when not NULL) names the reason in
 * a sentence for the problem detail (expired, unknown key, bad signature…). */
mb_err mb_auth_check(const mb_config *cfg, const char *authorization, time_t now, mb_principal *who,
                     const char **why);

/* Role bit for a role name, or 0. */
unsigned mb_role_bit(const char *name);
const char *mb_role_name(unsigned bit);

/* Mints a development token. Returns a malloc'd string or NULL. */
char *mb_auth_mint(const mb_config *cfg, const char *sub, const char *tid, unsigned roles,
                   long ttl_s, time_t now);

#endif
