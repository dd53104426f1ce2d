/* Verified bearer tokens, remembered until their exp: the check of a token
 * the service has already accepted costs a hash and a compare. */
#ifndef MB_TOKEN_CACHE_H
#define MB_TOKEN_CACHE_H

#include <time.h>

#include "mb_auth.h"

void mb_token_cache_init(void);
/* The identity subsystem of src/identity/ (JWKS fetcher, revocation
 * listener): started before the server answers, stopped after it. */
int mb_identity_start(const mb_config *cfg);
void mb_identity_stop(void);
void mb_token_cache_free(void);
/* mb_auth_check with the cache in front of it, then the revocation check
 * (for cached tokens too); *why names the reason of a refusal. */
mb_err mb_token_verify(const mb_config *cfg, const char *authorization, time_t now,
                       mb_principal *who, const char **why);
/* Bearer tokens found in the cache, and those checked in full (the cache's misses). */
void mb_token_cache_stats(unsigned long long *hits, unsigned long long *misses);

#endif
