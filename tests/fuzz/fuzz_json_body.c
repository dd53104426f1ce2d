/* libFuzzer: the JSON body path of a handler. mb_body parses with
 * json_loadb(JSON_REJECT_DUPLICATES | JSON_DECODE_ANY); handlers then run mb_v_known and the
 * mb_v_* checks and, on failure, mb_reply_verr builds a 422 problem from the
 * field and message with json_pack. Properties: the checks never crash, a
 * failure always names a field, and field and message are valid UTF-8 (else
 * json_pack fails and the client gets a 500 instead of the 422). */
#include <jansson.h>

#include "fuzz_common.h"
#include "mb_domain.h"

static const char *const names[] = {"user_id", "email", "display_name", "roles", "language",
                                    "os", "quantity", "hours", "co_sell_ready", "package_id",
                                    NULL};
static const char *const oses[] = {"x64", "x86", "arm64", NULL};

static void check_verr(const mb_verr *e)
{
    FUZZ_ASSERT(strnlen(e->field, sizeof(e->field)) < sizeof(e->field));
    FUZZ_ASSERT(strnlen(e->message, sizeof(e->message)) < sizeof(e->message));
    FUZZ_ASSERT(e->message[0] != '\0'); /* the field may be "": an unknown key "" */
    /* what mb_reply_verr does with them */
    json_t *doc = json_pack("{s:[{s:s, s:s}]}", "errors", "field", e->field, "message",
                            e->message);
    FUZZ_ASSERT(doc != NULL);
    json_decref(doc);
}

#define RUN(call)                                                                                  \
    do {                                                                                           \
        mb_verr e;                                                                                 \
        memset(&e, 0, sizeof(e));                                                                  \
        if (!(call))                                                                               \
            check_verr(&e);                                                                        \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_error_t jerr;
    json_t *doc =
        json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (doc == NULL || !json_is_object(doc)) {
        json_decref(doc);
        return 0;
    }
    const char *s;
    long long n;
    bool b, present;
    RUN(mb_v_known(doc, names, &e));
    RUN(mb_v_str(doc, "display_name", true, 1, 200, &s, &e));
    RUN(mb_v_str(doc, "description", false, 0, 2000, &s, &e));
    RUN(mb_v_uuid(doc, "user_id", true, &s, &e));
    RUN(mb_v_email(doc, "email", false, &s, &e));
    RUN(mb_v_enum(doc, "os", true, oses, &s, &e));
    RUN(mb_v_int(doc, "quantity", true, 1, 1000, &n, &present, &e));
    RUN(mb_v_int(doc, "hours", false, 1, 10000, &n, NULL, &e));
    RUN(mb_v_bool(doc, "co_sell_ready", false, &b, &present, &e));
    /* A string accepted by mb_v_str holds no NUL and no control character. */
    mb_verr e;
    if (mb_v_str(doc, "display_name", true, 0, 100000, &s, &e) && s != NULL)
        for (const char *p = s; *p; p++)
            FUZZ_ASSERT((unsigned char)*p >= 0x20 || *p == '\t' || *p == '\n' || *p == '\r');
    json_decref(doc);
    return 0;
}
