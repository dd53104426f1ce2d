/* libFuzzer: mb_cursor_decode on arbitrary cursors with every output size
 * (first byte), and the round trip encode -> decode on arbitrary keys. */
#include "fuzz_common.h"
#include "mb_domain.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    size_t outlen = data[0]; /* 0..255: the caller's buffer */
    char *cursor = fuzz_cstr(data + 1, size - 1);
    char *out = malloc(outlen ? outlen : 1);
    if (out == NULL)
        abort();
    if (mb_cursor_decode(cursor, out, outlen)) {
        size_t n = strnlen(out, outlen);
        FUZZ_ASSERT(n < outlen); /* terminated inside the buffer */
        for (size_t i = 0; i < n; i++)
            FUZZ_ASSERT(out[i] >= 0x20 && out[i] <= 0x7e); /* printable ASCII only */
    }
    free(out);

    /* Round trip: a printable key that fits comes back unchanged. */
    size_t kl = strlen(cursor);
    int printable = kl > 0 && kl <= 192;
    for (size_t i = 0; printable && i < kl; i++)
        printable = cursor[i] >= 0x20 && cursor[i] <= 0x7e;
    if (printable) {
        char enc[512], dec[256];
        FUZZ_ASSERT(mb_cursor_encode(cursor, enc, sizeof(enc)));
        FUZZ_ASSERT(mb_cursor_decode(enc, dec, sizeof(dec)));
        FUZZ_ASSERT(strcmp(dec, cursor) == 0);
    }
    /* Encoding into a too small buffer fails cleanly. */
    if (kl > 0) {
        size_t small = (size_t)data[0] % 16 + 1;
        char *buf = malloc(small);
        if (buf == NULL)
            abort();
        if (mb_cursor_encode(cursor, buf, small))
            FUZZ_ASSERT(strnlen(buf, small) < small);
        free(buf);
    }
    free(cursor);
    return 0;
}
