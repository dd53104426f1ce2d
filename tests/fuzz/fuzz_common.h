/* Shared bits of the libFuzzer harnesses (tests/fuzz/fuzz_*.c): a test
 * configuration and a NUL-terminated copy of the input. */
#ifndef MB_FUZZ_COMMON_H
#define MB_FUZZ_COMMON_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mb_config.h"

#define FUZZ_SECRET "fuzz-secret-0123456789abcdef0123456789"
#define FUZZ_ISSUER "https://iss.example"
#define FUZZ_AUDIENCE "mpn-benefits"
#define FUZZ_NOW ((time_t)1800000000)

/* A throwaway RSA public key: the RS256 configuration, so that tokens that
 * claim HS256 or none are tried against an RSA key as well (algorithm
 * confusion). The private half was discarded. */
#define FUZZ_RSA_PUBLIC                                                                            \
    "-----BEGIN PUBLIC KEY-----\n"                                                                 \
    "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAnho98+Oir4DookE1uY/o\n"                          \
    "bEtGg/gviYI65hgEXfXUg03o2MUbE23quIXZz6tBBbWioFbIx5Esb9KS3vSbzen1\n"                          \
    "NamOCYmruuREuX4PCF6DJcSW7GIPxbELCsUouetcNX1KeXJP1TwTFOtyJQxwy9Pq\n"                          \
    "wuNOr8vMdEaUXdUtnKt7pZ3iipoLNzWABwgX8r6qua+/ysRKw1JqN7lbmu0H3gLY\n"                          \
    "9BgJe03ivGTHJUxvDeTkigGcS0mJqPo2XTN/r/S+jZhyzumVvZ/eEpice0FclFy/\n"                          \
    "jkAG/o9bOwB9pOGo9pu+XAiKTIRS51fAHKs7HPzjpgc0DPtREdJWXfMTtfQ/vLXX\n"                          \
    "xwIDAQAB\n"                                                                                   \
    "-----END PUBLIC KEY-----\n"

static inline void fuzz_config(mb_config *cfg, mb_alg alg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->jwt_alg = alg;
    if (alg == MB_ALG_HS256) {
        cfg->jwt_key = (unsigned char *)FUZZ_SECRET;
        cfg->jwt_key_len = sizeof(FUZZ_SECRET) - 1;
    } else {
        cfg->jwt_key = (unsigned char *)FUZZ_RSA_PUBLIC;
        cfg->jwt_key_len = sizeof(FUZZ_RSA_PUBLIC) - 1;
    }
    cfg->jwt_issuer = (char *)FUZZ_ISSUER;
    cfg->jwt_audience = (char *)FUZZ_AUDIENCE;
    cfg->max_body = 64 * 1024;
}

/* A malloc'd NUL-terminated copy (exact size, so ASan sees any over-read). */
static inline char *fuzz_cstr(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (s == NULL)
        abort();
    if (size > 0)
        memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

/* Stops the run with a crash report when a property does not hold. */
#define FUZZ_ASSERT(cond)                                                                          \
    do {                                                                                           \
        if (!(cond))                                                                               \
            __builtin_trap();                                                                      \
    } while (0)

#endif
