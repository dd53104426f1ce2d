/* libFuzzer: mb_auth_verify on arbitrary Authorization header bytes, against
 * an HS256 and an RS256 configuration. The answer is only ever MB_OK or
 * MB_E_UNAUTHENTICATED, and a refused token leaves no principal behind. */
#include <time.h>

#include "fuzz_common.h"
#include "mb_auth.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static mb_config hs, rs;
    static int ready;
    if (!ready) {
        fuzz_config(&hs, MB_ALG_HS256);
        fuzz_config(&rs, MB_ALG_RS256);
        ready = 1;
    }
    char *hdr = fuzz_cstr(data, size);
    mb_config *cfgs[] = {&hs, &rs};
    for (int i = 0; i < 2; i++) {
        mb_principal who;
        mb_err e = mb_auth_verify(cfgs[i], hdr, FUZZ_NOW, &who);
        FUZZ_ASSERT(e == MB_OK || e == MB_E_UNAUTHENTICATED);
        if (e != MB_OK) {
            FUZZ_ASSERT(who.sub[0] == '\0' && who.tid[0] == '\0' && who.roles == 0);
        } else {
            /* Nobody forges a token without the secret: an accepted header
             * here would be a signature bypass. */
            __builtin_trap();
        }
    }
    free(hdr);
    return 0;
}
