#include "mb_config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef MB_DEFAULT_SQL_DIR
#define MB_DEFAULT_SQL_DIR "sql"
#endif

#define DEMO_KEK "demo-key-encryption-key"

static char *env_dup(const char *name, const char *fallback)
{
    const char *v = getenv(name);
    if (v == NULL || *v == '\0')
        v = fallback;
    return v ? strdup(v) : NULL;
}

static int env_int(const char *name, int fallback, int min, int max, int *out)
{
    const char *v = getenv(name);
    if (v == NULL || *v == '\0') {
        *out = fallback;
        return 0;
    }
    char *end = NULL;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno != 0 || *end != '\0' || n < min || n > max)
        return -1;
    *out = (int)n;
    return 0;
}

static unsigned char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    unsigned char *buf = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n + 4096 > cap) {
            cap = cap ? cap * 2 : 8192;
            if (cap > (1u << 20)) {
                free(buf);
                fclose(f);
                return NULL;
            }
            unsigned char *nb = realloc(buf, cap + 1);
            if (nb == NULL) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = nb;
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (r == 0)
            break;
    }
    fclose(f);
    buf[n] = '\0';
    *len = n;
    return buf;
}

int mb_config_load(mb_config *cfg, char *err, size_t errlen)
{
    memset(cfg, 0, sizeof(*cfg));
    int body_kb = 0;
    if (env_int("PORT", 8080, 1, 65535, &cfg->port) != 0) {
        snprintf(err, errlen, "PORT must be 1..65535");
        return -1;
    }
    if (env_int("DB_POOL_SIZE", 8, 1, 256, &cfg->pool_size) != 0 ||
        env_int("HTTP_MAX_CONNECTIONS", 1024, 16, 65536, &cfg->max_connections) != 0 ||
        env_int("MAX_BODY_KB", 64, 1, 10240, &body_kb) != 0 ||
        env_int("SHUTDOWN_GRACE_SECONDS", 10, 0, 300, &cfg->shutdown_grace_s) != 0) {
        snprintf(err, errlen,
                 "DB_POOL_SIZE, HTTP_MAX_CONNECTIONS, MAX_BODY_KB or SHUTDOWN_GRACE_SECONDS out "
                 "of range");
        return -1;
    }
    cfg->max_body = (size_t)body_kb * 1024;
    /* issue 14: key pools arrive as text/csv files larger than JSON bodies */
    int csv_kb = 0, low = 0;
    if (env_int("CSV_MAX_BODY_KB", 16384, 1, 262144, &csv_kb) != 0 ||
        env_int("KEY_POOL_LOW_WATERMARK", 100, 0, 100000000, &low) != 0) {
        snprintf(err, errlen, "CSV_MAX_BODY_KB or KEY_POOL_LOW_WATERMARK out of range");
        return -1;
    }
    cfg->max_csv_body = (size_t)csv_kb * 1024;
    cfg->key_pool_low_watermark = low;
    cfg->database_url = env_dup("DATABASE_URL", "postgresql:///mpn");
    cfg->jwt_issuer = env_dup("JWT_ISSUER", "https://login.mpn.example");
    cfg->jwt_audience = env_dup("JWT_AUDIENCE", "mpn-benefits");
    cfg->cors_origins = env_dup("CORS_ORIGINS", "");
    cfg->sql_dir = env_dup("MPN_SQL_DIR", MB_DEFAULT_SQL_DIR);

    const char *alg = getenv("JWT_ALG");
    if (alg == NULL || *alg == '\0' || strcmp(alg, "HS256") == 0) {
        cfg->jwt_alg = MB_ALG_HS256;
        const char *secret = getenv("JWT_SECRET");
        if (secret == NULL || strlen(secret) < 32) {
            snprintf(err, errlen, "JWT_SECRET must be set (at least 32 bytes) for HS256");
            return -1;
        }
        cfg->jwt_key = (unsigned char *)strdup(secret);
        cfg->jwt_key_len = strlen(secret);
    } else if (strcmp(alg, "RS256") == 0) {
        cfg->jwt_alg = MB_ALG_RS256;
        const char *path = getenv("JWT_PUBLIC_KEY_FILE");
        if (path == NULL || (cfg->jwt_key = read_file(path, &cfg->jwt_key_len)) == NULL) {
            snprintf(err, errlen, "JWT_PUBLIC_KEY_FILE must name a readable PEM file for RS256");
            return -1;
        }
    } else {
        snprintf(err, errlen, "JWT_ALG must be HS256 or RS256");
        return -1;
    }

    const char *kek = getenv("KEY_ENCRYPTION_KEY");
    if (kek == NULL || *kek == '\0') {
        /* Only a demo may run on the well-known key. */
        const char *demo = getenv("MPN_DEMO");
        if (demo == NULL || strcmp(demo, "1") != 0) {
            snprintf(err, errlen, "KEY_ENCRYPTION_KEY must be set (or MPN_DEMO=1 for a demo)");
            return -1;
        }
        kek = DEMO_KEK;
    }
    cfg->kek = strdup(kek);
    cfg->kek_is_demo = strcmp(kek, DEMO_KEK) == 0;
    if (cfg->database_url == NULL || cfg->jwt_issuer == NULL || cfg->jwt_audience == NULL ||
        cfg->cors_origins == NULL || cfg->sql_dir == NULL || cfg->kek == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

void mb_config_free(mb_config *cfg)
{
    free(cfg->database_url);
    free(cfg->jwt_key);
    free(cfg->jwt_issuer);
    free(cfg->jwt_audience);
    free(cfg->kek);
    free(cfg->cors_origins);
    free(cfg->sql_dir);
    memset(cfg, 0, sizeof(*cfg));
}
