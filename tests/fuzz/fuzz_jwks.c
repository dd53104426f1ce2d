/* libFuzzer: the JWKS parser (src/identity/jwks.c, issue 11) on arbitrary
 * documents. A hostile document never crashes, every key it yields is a
 * public PEM key with a kid no other key shares, and a document without a
 * usable key never evicts the keys already held (here the RSA key of the
 * test configuration, kid "good"). */
#include <stdbool.h>
#include <string.h>

#include "fuzz_common.h"
#include "mb_identity.h"

/* FUZZ_RSA_PUBLIC as a JWK. */
static const char good_jwks[] =
    "{\"keys\":[{\"kid\":\"good\",\"kty\":\"RSA\",\"use\":\"sig\",\"alg\":\"RS256\",\"n\":"
    "\"nho98-Oir4DookE1uY_obEtGg_gviYI65hgEXfXUg03o2MUbE23quIXZz6tBBbWioFbIx5Esb9KS3vSbzen1Nam"
    "OCYmruuREuX4PCF6DJcSW7GIPxbELCsUouetcNX1KeXJP1TwTFOtyJQxwy9PqwuNOr8vMdEaUXdUtnKt7pZ3iipoLN"
    "zWABwgX8r6qua-_ysRKw1JqN7lbmu0H3gLY9BgJe03ivGTHJUxvDeTkigGcS0mJqPo2XTN_r_S-jZhyzumVvZ_eEpi"
    "ce0FclFy_jkAG_o9bOwB9pOGo9pu-XAiKTIRS51fAHKs7HPzjpgc0DPtREdJWXfMTtfQ_vLXXxw\",\"e\":\"AQAB\"}]"
    "}";

static void install_good(void)
{
    char why[128];
    mb_keyset *ks = mb_jwks_parse(good_jwks, sizeof(good_jwks) - 1, why, sizeof(why));
    FUZZ_ASSERT(ks != NULL && ks->n == 1 && ks->ignored == 0);
    FUZZ_ASSERT(mb_jwks_install(ks));
}

static bool has_good(void)
{
    unsigned algs = 0;
    unsigned char *pem = NULL;
    size_t len = 0;
    if (!mb_jwks_lookup("good", &algs, &pem, &len))
        return false;
    free(pem);
    return algs == MB_ALGBIT_RS256;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool ready;
    if (!ready) {
        install_good();
        ready = true;
    }
    char why[128];
    mb_keyset *ks = mb_jwks_parse((const char *)data, size, why, sizeof(why));
    size_t n = 0;
    if (ks != NULL) {
        n = ks->n;
        FUZZ_ASSERT(n <= MB_JWKS_MAX_KEYS);
        FUZZ_ASSERT(memchr(ks->notes, 0, sizeof(ks->notes)) != NULL);
        for (size_t i = 0; i < n; i++) {
            const mb_jwk *k = &ks->keys[i];
            FUZZ_ASSERT(k->kid[0] != '\0' && k->algs != 0 && k->pem_len > 0);
            FUZZ_ASSERT(strncmp((const char *)k->pem, "-----BEGIN PUBLIC KEY-----", 26) == 0);
            for (size_t j = i + 1; j < n; j++)
                FUZZ_ASSERT(strcmp(k->kid, ks->keys[j].kid) != 0);
        }
    }
    bool installed = mb_jwks_install(ks); /* takes ks */
    FUZZ_ASSERT(installed == (n > 0));
    if (!installed)
        FUZZ_ASSERT(has_good() && mb_jwks_count() == 1);
    else
        install_good(); /* the next input starts from the good key again */
    return 0;
}
