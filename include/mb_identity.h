/* Identity from a real identity provider (issue 11): the JWKS key set, its
 * fetcher, and token revocation. */
#ifndef MB_IDENTITY_H
#define MB_IDENTITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "mb_config.h"

/* --- the key set (src/identity/jwks.c, no I/O) ------------------------------------------- */

#define MB_JWKS_MAX_BYTES (256 * 1024) /* a larger document is refused whole */
#define MB_JWKS_MAX_KEYS 64            /* keys past this are ignored */
#define MB_JWKS_MIN_RSA_BITS 2048

typedef struct {
    char kid[129];
    unsigned algs; /* MB_ALGBIT_* this key verifies: by kty/crv, narrowed by its "alg" */
    unsigned char *pem;
    size_t pem_len;
} mb_jwk;

typedef struct {
    size_t n;
    size_t ignored; /* keys of the document left out (each with a note) */
    char notes[512];
    mb_jwk keys[];
} mb_keyset;

/* Parses a JWKS document. NULL (reason in why) when the document is not a
 * JSON object with a "keys" array or is larger than MB_JWKS_MAX_BYTES;
 * otherwise the usable keys (RSA of at least 2048 bits and EC P-256/384/521
 * public signing keys, each with a kid no other key of the document has);
 * every key left out is counted in ignored and named in notes. */
mb_keyset *mb_jwks_parse(const char *doc, size_t len, char *why, size_t whylen);
void mb_keyset_free(mb_keyset *ks);

/* Makes ks the current key set (taking it), unless it holds no key: a
 * document without a single usable key never evicts the keys we have.
 * Returns true when installed (ks freed otherwise). */
bool mb_jwks_install(mb_keyset *ks);
/* A malloc'd copy of the PEM of the current key kid and its algorithms, or
 * false when there is no such key. */
bool mb_jwks_lookup(const char *kid, unsigned *algs, unsigned char **pem, size_t *pem_len);
size_t mb_jwks_count(void);
/* Changes whenever a key set is installed (verified-token caches key on it). */
unsigned long mb_jwks_generation(void);
void mb_jwks_clear(void);
/* Called by the token check on an unknown kid (set by the fetcher): may
 * fetch the JWKS again; returns when that fetch is done. */
extern void (*mb_jwks_refetch_hook)(void);

/* --- the fetcher (src/identity/jwks_fetch.c) ------------------------------------------- */

/* First fetch (waits up to the fetch timeout) and the refresh thread. */
int mb_jwks_start(const mb_config *cfg);
void mb_jwks_stop(void);
/* False while JWKS mode has never had a key (readiness). */
bool mb_jwks_ready(void);
/* Prometheus text of the fetcher (malloc'd), or NULL. */
char *mb_identity_metrics(void);

/* --- revocation (src/identity/revocation.c) ------------------------------------------- */

/* Loads the revocations and listens for new ones on a connection of its own. */
int mb_revocation_start(const mb_config *cfg);
void mb_revocation_stop(void);
/* True when a token of (tid, sub) issued at iat is revoked. */
bool mb_revoked(const char *tid, const char *sub, long long iat);
/* Its Prometheus lines. */
void mb_revocation_metrics(FILE *f);

#endif
