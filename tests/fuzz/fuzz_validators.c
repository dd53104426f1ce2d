/* libFuzzer: the string validators mb_is_uuid, mb_is_email, mb_is_phone and
 * mb_is_lang_tag, with the shape each promises when it says yes. */
#include <ctype.h>

#include "fuzz_common.h"
#include "mb_domain.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = fuzz_cstr(data, size);
    size_t len = strlen(s);
    if (mb_is_uuid(s)) {
        FUZZ_ASSERT(len == 36 && s[8] == '-' && s[13] == '-' && s[18] == '-' && s[23] == '-');
    }
    if (mb_is_email(s)) {
        FUZZ_ASSERT(len >= 3 && len <= 254);
        const char *at = strchr(s, '@');
        FUZZ_ASSERT(at != NULL && at != s && strchr(at + 1, '@') == NULL);
        for (size_t i = 0; i < len; i++)
            FUZZ_ASSERT((unsigned char)s[i] > ' ' && s[i] != 0x7f);
    }
    if (mb_is_phone(s)) {
        FUZZ_ASSERT(s[0] == '+' && len >= 8 && len <= 16);
        for (size_t i = 1; i < len; i++)
            FUZZ_ASSERT(isdigit((unsigned char)s[i]));
    }
    if (mb_is_lang_tag(s)) {
        FUZZ_ASSERT(len >= 2 && len <= 35);
        for (size_t i = 0; i < len; i++)
            FUZZ_ASSERT(isalnum((unsigned char)s[i]) || s[i] == '-');
    }
    /* NULL is a valid "absent" answer for each */
    FUZZ_ASSERT(!mb_is_uuid(NULL) && !mb_is_email(NULL) && !mb_is_phone(NULL) &&
                !mb_is_lang_tag(NULL));
    free(s);
    return 0;
}
