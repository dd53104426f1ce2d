/* libFuzzer: a correctly HS256-signed token (signed with libjwt, as
 * tests/unit/test_main.c does) around fuzzed claims JSON, so that every claim
 * check of mb_auth_verify is reached. Properties of an accepted token: the
 * subject is a non-empty C string, the partner id is empty or a lowercase
 * UUID, operators have no partner and partner tokens no operator role. */
#include <jansson.h>
#include <jwt.h>
#include <stdio.h>
#include <time.h>

#include "fuzz_common.h"
#include "mb_auth.h"
#include "mb_domain.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static mb_config cfg;
    static int ready;
    if (!ready) {
        fuzz_config(&cfg, MB_ALG_HS256);
        ready = 1;
    }
    char *grants = fuzz_cstr(data, size);
    jwt_t *jwt = NULL;
    char *tok = NULL;
    if (jwt_new(&jwt) == 0 && jwt_add_grants_json(jwt, grants) == 0 &&
        jwt_set_alg(jwt, JWT_ALG_HS256, (const unsigned char *)FUZZ_SECRET,
                    (int)sizeof(FUZZ_SECRET) - 1) == 0)
        tok = jwt_encode_str(jwt);
    jwt_free(jwt);
    free(grants);
    if (tok == NULL)
        return 0;

    size_t n = strlen(tok) + 8;
    char *hdr = malloc(n);
    if (hdr == NULL)
        abort();
    snprintf(hdr, n, "Bearer %s", tok);
    free(tok);
    mb_principal who;
    mb_err e = mb_auth_verify(&cfg, hdr, FUZZ_NOW, &who);
    FUZZ_ASSERT(e == MB_OK || e == MB_E_UNAUTHENTICATED);
    if (e == MB_OK) {
        size_t sl = strnlen(who.sub, sizeof(who.sub));
        FUZZ_ASSERT(sl > 0 && sl < sizeof(who.sub));
        FUZZ_ASSERT(who.tid[0] == '\0' || (strnlen(who.tid, sizeof(who.tid)) == 36 &&
                                           mb_is_uuid(who.tid)));
        if (who.tid[0] == '\0')
            FUZZ_ASSERT(who.roles == MB_ROLE_OPERATOR);
        else
            FUZZ_ASSERT((who.roles & MB_ROLE_OPERATOR) == 0 &&
                        (who.roles & ~(unsigned)MB_ROLES_PARTNER) == 0);
    } else {
        FUZZ_ASSERT(who.sub[0] == '\0' && who.tid[0] == '\0' && who.roles == 0);
    }
    free(hdr);
    return 0;
}
