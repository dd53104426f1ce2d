/* libFuzzer: mb_parse_limit (the `limit` query value). Accepted values are
 * 1..200 and exactly the decimal digits given. */
#include <stdio.h>

#include "fuzz_common.h"
#include "mb_domain.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = fuzz_cstr(data, size);
    int n = -1;
    if (mb_parse_limit(s, &n)) {
        FUZZ_ASSERT(n >= 1 && n <= 200);
        if (s[0] != '\0') {
            /* leading zeros are allowed ("050"), anything else must be digits */
            long back = strtol(s, NULL, 10);
            FUZZ_ASSERT(back == n);
            for (const char *p = s; *p; p++)
                FUZZ_ASSERT(*p >= '0' && *p <= '9');
        } else {
            FUZZ_ASSERT(n == 50);
        }
    }
    free(s);
    return 0;
}
