/* Verified bearer tokens, remembered until their exp: the check of a token
 * the service has already accepted costs a hash and a compare. */
#ifndef MB_TOKEN_CACHE_H
#define MB_TOKEN_CACHE_H

#include <time.h>

#include "mb_auth.h"

void mb_token_cache_init(void);
void mb_token_cache_free(void);
/* mb_auth_verify with the cache in front of it. */
mb_err mb_token_verify(const mb_config *cfg, const char *authorization, time_t now,
                       mb_principal *who);

#endif
