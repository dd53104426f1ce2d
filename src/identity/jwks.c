/* The JWKS key set: a provider's document parsed into PEM public keys by kid.
 * Rhonabwy reads each JWK (it validates the numbers and writes the PEM that
 * libjwt verifies with); what a key may verify and which keys are left out
 * is decided here. No I/O: the fetcher (jwks_fetch.c) feeds documents in, and
 * the libFuzzer harness tests/fuzz/fuzz_jwks.c feeds hostile ones. */
#include <jansson.h>
#include <pthread.h>
#include <rhonabwy.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mb_identity.h"

void (*mb_jwks_refetch_hook)(void);

static pthread_mutex_t ks_lock = PTHREAD_MUTEX_INITIALIZER;
static mb_keyset *current;
static atomic_ulong generation; /* read on every request: no lock */

static void note(mb_keyset *ks, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(mb_keyset *ks, const char *fmt, ...)
{
    ks->ignored++;
    size_t used = strlen(ks->notes);
    if (used + 2 >= sizeof(ks->notes))
        return;
    if (used > 0) {
        memcpy(ks->notes + used, "; ", 3);
        used += 2;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ks->notes + used, sizeof(ks->notes) - used, fmt, ap);
    va_end(ap);
}

/* A kid we keep: 1..128 printable ASCII characters. */
static bool kid_ok(const char *kid, size_t len)
{
    if (len == 0 || len > 128)
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)kid[i] < 0x21 || (unsigned char)kid[i] > 0x7e)
            return false;
    return true;
}

static unsigned ec_algs(const char *crv)
{
    if (strcmp(crv, "P-256") == 0)
        return MB_ALGBIT_ES256;
    if (strcmp(crv, "P-384") == 0)
        return MB_ALGBIT_ES384;
    if (strcmp(crv, "P-521") == 0)
        return MB_ALGBIT_ES512;
    return 0;
}

static bool str_member(json_t *o, const char *name, const char **out)
{
    json_t *v = json_object_get(o, name);
    if (!json_is_string(v) || json_string_length(v) == 0 ||
        memchr(json_string_value(v), 0, json_string_length(v)) != NULL)
        return false;
    *out = json_string_value(v);
    return true;
}

/* One JWK into k, or false with a note. Only the public members are handed to
 * Rhonabwy: x5u/x5c/jku are never followed, a private "d" refuses the key. */
static bool one_key(mb_keyset *ks, json_t *j, size_t idx, mb_jwk *k)
{
    const char *kid = NULL, *kty = NULL, *use = NULL, *alg = NULL;
    if (!json_is_object(j)) {
        note(ks, "key %zu: not an object", idx);
        return false;
    }
    json_t *kidv = json_object_get(j, "kid");
    if (!json_is_string(kidv) || !kid_ok(json_string_value(kidv), json_string_length(kidv))) {
        note(ks, "key %zu: no usable kid", idx);
        return false;
    }
    kid = json_string_value(kidv);
    if (!str_member(j, "kty", &kty)) {
        note(ks, "kid %.40s: no kty", kid);
        return false;
    }
    if (json_object_get(j, "use") != NULL && (!str_member(j, "use", &use) || strcmp(use, "sig"))) {
        note(ks, "kid %.40s: use is not sig", kid);
        return false;
    }
    if (json_object_get(j, "d") != NULL) {
        note(ks, "kid %.40s: a private key (never published)", kid);
        return false;
    }
    unsigned algs;
    json_t *pub = json_object();
    const char *crv = NULL;
    if (strcmp(kty, "RSA") == 0) {
        algs = MB_ALGBIT_RS256 | MB_ALGBIT_RS384 | MB_ALGBIT_RS512;
        const char *n = NULL, *e = NULL;
        if (!str_member(j, "n", &n) || !str_member(j, "e", &e)) {
            note(ks, "kid %.40s: RSA key without n or e", kid);
            json_decref(pub);
            return false;
        }
        json_object_set_new(pub, "kty", json_string("RSA"));
        json_object_set_new(pub, "n", json_string(n));
        json_object_set_new(pub, "e", json_string(e));
    } else if (strcmp(kty, "EC") == 0) {
        const char *x = NULL, *y = NULL;
        if (!str_member(j, "crv", &crv) || (algs = ec_algs(crv)) == 0 || !str_member(j, "x", &x) ||
            !str_member(j, "y", &y)) {
            note(ks, "kid %.40s: EC key without a supported crv, x or y", kid);
            json_decref(pub);
            return false;
        }
        json_object_set_new(pub, "kty", json_string("EC"));
        json_object_set_new(pub, "crv", json_string(crv));
        json_object_set_new(pub, "x", json_string(x));
        json_object_set_new(pub, "y", json_string(y));
    } else {
        note(ks, "kid %.40s: unsupported kty %.10s", kid, kty);
        json_decref(pub);
        return false;
    }
    if (json_object_get(j, "alg") != NULL) {
        unsigned a = str_member(j, "alg", &alg) ? mb_alg_bit(alg) : 0;
        if ((a & algs) == 0) {
            note(ks, "kid %.40s: alg does not fit the key", kid);
            json_decref(pub);
            return false;
        }
        algs = a;
    }
    jwk_t *jwk = NULL;
    bool ok = false;
    unsigned int bits = 0;
    if (r_jwk_init(&jwk) == RHN_OK && r_jwk_import_from_json_t(jwk, pub) == RHN_OK) {
        int type = r_jwk_key_type(jwk, &bits, R_FLAG_IGNORE_REMOTE);
        bool is_rsa = (type & R_KEY_TYPE_RSA) != 0, is_ec = (type & R_KEY_TYPE_EC) != 0;
        if (!(type & R_KEY_TYPE_PUBLIC) || (!is_rsa && !is_ec)) {
            note(ks, "kid %.40s: not a public RSA or EC key", kid);
        } else if (is_rsa && bits < MB_JWKS_MIN_RSA_BITS) {
            note(ks, "kid %.40s: RSA key of %u bits (< %d)", kid, bits, MB_JWKS_MIN_RSA_BITS);
        } else {
            unsigned char buf[4096];
            size_t len = sizeof(buf);
            if (r_jwk_export_to_pem_der(jwk, R_FORMAT_PEM, buf, &len, R_FLAG_IGNORE_REMOTE) ==
                    RHN_OK &&
                len > 0 && len < sizeof(buf) && (k->pem = malloc(len + 1)) != NULL) {
                memcpy(k->pem, buf, len);
                k->pem[len] = '\0';
                k->pem_len = len;
                snprintf(k->kid, sizeof(k->kid), "%s", kid);
                k->algs = algs;
                ok = true;
            } else {
                note(ks, "kid %.40s: cannot be converted to PEM", kid);
            }
        }
    } else {
        note(ks, "kid %.40s: invalid key material", kid);
    }
    r_jwk_free(jwk);
    json_decref(pub);
    return ok;
}

mb_keyset *mb_jwks_parse(const char *doc, size_t len, char *why, size_t whylen)
{
    if (len > MB_JWKS_MAX_BYTES) {
        snprintf(why, whylen, "document of %zu bytes (limit %d)", len, MB_JWKS_MAX_BYTES);
        return NULL;
    }
    json_error_t jerr;
    json_t *root = json_loadb(doc, len, JSON_REJECT_DUPLICATES, &jerr);
    json_t *keys = json_object_get(root, "keys");
    if (!json_is_array(keys)) {
        snprintf(why, whylen, "%s", root ? "no \"keys\" array" : "not JSON");
        json_decref(root);
        return NULL;
    }
    size_t total = json_array_size(keys);
    size_t want = total < MB_JWKS_MAX_KEYS ? total : MB_JWKS_MAX_KEYS;
    mb_keyset *ks = calloc(1, sizeof(*ks) + want * sizeof(mb_jwk));
    if (ks == NULL) {
        json_decref(root);
        snprintf(why, whylen, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < want; i++)
        if (one_key(ks, json_array_get(keys, i), i, &ks->keys[ks->n]))
            ks->n++;
    if (total > want)
        note(ks, "%zu keys past the first %d", total - want, MB_JWKS_MAX_KEYS);
    /* A kid that names two keys names neither: which one signed is unknowable. */
    bool dup[MB_JWKS_MAX_KEYS] = {false};
    for (size_t i = 0; i < ks->n; i++)
        for (size_t k = i + 1; k < ks->n; k++)
            if (strcmp(ks->keys[i].kid, ks->keys[k].kid) == 0)
                dup[i] = dup[k] = true;
    size_t kept = 0;
    for (size_t i = 0; i < ks->n; i++) {
        if (dup[i]) {
            note(ks, "kid %.40s: duplicate", ks->keys[i].kid);
            free(ks->keys[i].pem);
        } else {
            ks->keys[kept++] = ks->keys[i];
        }
    }
    ks->n = kept;
    json_decref(root);
    return ks;
}

void mb_keyset_free(mb_keyset *ks)
{
    if (ks == NULL)
        return;
    for (size_t i = 0; i < ks->n; i++)
        free(ks->keys[i].pem);
    free(ks);
}

bool mb_jwks_install(mb_keyset *ks)
{
    if (ks == NULL || ks->n == 0) {
        mb_keyset_free(ks);
        return false;
    }
    pthread_mutex_lock(&ks_lock);
    mb_keyset *old = current;
    current = ks;
    atomic_fetch_add(&generation, 1);
    pthread_mutex_unlock(&ks_lock);
    mb_keyset_free(old);
    return true;
}

bool mb_jwks_lookup(const char *kid, unsigned *algs, unsigned char **pem, size_t *pem_len)
{
    bool found = false;
    pthread_mutex_lock(&ks_lock);
    for (size_t i = 0; current != NULL && i < current->n && !found; i++) {
        const mb_jwk *k = &current->keys[i];
        if (strcmp(k->kid, kid) != 0)
            continue;
        *pem = malloc(k->pem_len + 1);
        if (*pem != NULL) {
            memcpy(*pem, k->pem, k->pem_len + 1);
            *pem_len = k->pem_len;
            *algs = k->algs;
            found = true;
        }
        break;
    }
    pthread_mutex_unlock(&ks_lock);
    return found;
}

size_t mb_jwks_count(void)
{
    pthread_mutex_lock(&ks_lock);
    size_t n = current ? current->n : 0;
    pthread_mutex_unlock(&ks_lock);
    return n;
}

unsigned long mb_jwks_generation(void)
{
    return atomic_load(&generation);
}

void mb_jwks_clear(void)
{
    pthread_mutex_lock(&ks_lock);
    mb_keyset *old = current;
    current = NULL;
    atomic_fetch_add(&generation, 1);
    pthread_mutex_unlock(&ks_lock);
    mb_keyset_free(old);
}
