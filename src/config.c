#include "mb_config.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

static const struct {
    const char *name;
    unsigned bit;
} alg_names[] = {
    {"HS256", MB_ALGBIT_HS256}, {"RS256", MB_ALGBIT_RS256}, {"RS384", MB_ALGBIT_RS384},
    {"RS512", MB_ALGBIT_RS512}, {"ES256", MB_ALGBIT_ES256}, {"ES384", MB_ALGBIT_ES384},
    {"ES512", MB_ALGBIT_ES512},
};

unsigned mb_alg_bit(const char *name)
{
    for (size_t i = 0; i < sizeof(alg_names) / sizeof(alg_names[0]); i++)
        if (strcmp(alg_names[i].name, name) == 0)
            return alg_names[i].bit;
    return 0;
}

/* JWT_ALG: one name or a comma-separated list. Returns the bits, or 0 when a
 * name is unknown. */
static unsigned parse_algs(const char *list)
{
    unsigned bits = 0;
    char name[16];
    for (const char *p = list; *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        const char *e = p;
        while (*e && *e != ',' && *e != ' ')
            e++;
        if (e == p)
            break;
        if ((size_t)(e - p) >= sizeof(name))
            return 0;
        memcpy(name, p, (size_t)(e - p));
        name[e - p] = '\0';
        unsigned b = mb_alg_bit(name);
        if (b == 0)
            return 0;
        bits |= b;
        p = e;
    }
    return bits;
}

/* The keys and claims tokens are checked against: JWT_JWKS_URL (public keys
 * of an identity provider), else JWT_PUBLIC_KEY_FILE (RS256), else the
 * HS256 JWT_SECRET of development. */
static int load_identity(mb_config *cfg, char *err, size_t errlen)
{
    const char *alg = getenv("JWT_ALG");
    const char *jwks = getenv("JWT_JWKS_URL");
    bool has_alg = alg != NULL && *alg != '\0';
    unsigned bits = has_alg ? parse_algs(alg) : 0;
    if (has_alg && bits == 0) {
        snprintf(err, errlen,
                 "JWT_ALG must list algorithms of HS256, RS256, RS384, RS512, ES256, ES384, ES512");
        return -1;
    }
    int ttl = 0;
    if (env_int("JWKS_REFETCH_MIN_SECONDS", 30, 1, 3600, &cfg->jwks_refetch_min_s) != 0) {
        snprintf(err, errlen, "JWKS_REFETCH_MIN_SECONDS must be 1..3600");
        return -1;
    }
    /* The bound is the production default (JWKS); with the development keys it
     * applies only when set, so that long-lived laptop tokens keep working. */
    if (env_int("JWT_MAX_TTL_SECONDS", jwks && *jwks ? 86400 : 0, 0, 366 * 86400, &ttl) != 0) {
        snprintf(err, errlen, "JWT_MAX_TTL_SECONDS must be 0..31622400");
        return -1;
    }
    cfg->max_ttl_s = ttl;
    const char *op = getenv("OPERATOR_TENANT_ID");
    if (op != NULL && *op != '\0') {
        bool uuid = strlen(op) == 36;
        for (int k = 0; uuid && k < 36; k++) {
            bool dash = k == 8 || k == 13 || k == 18 || k == 23;
            uuid = dash ? op[k] == '-'
                        : (op[k] >= '0' && op[k] <= '9') || (op[k] >= 'a' && op[k] <= 'f');
        }
        if (!uuid) {
            snprintf(err, errlen, "OPERATOR_TENANT_ID must be a UUID (lower case)");
            return -1;
        }
        cfg->operator_tenant_id = strdup(op);
    }
    if (jwks != NULL && *jwks != '\0') {
        /* Public keys only: an HMAC secret cannot come from a JWKS. */
        if (!has_alg)
            bits = MB_ALGBIT_RS256;
        if (bits & MB_ALGBIT_HS256) {
            snprintf(err, errlen, "JWT_ALG with JWT_JWKS_URL must list RS* or ES* algorithms only");
            return -1;
        }
        bool https = strncmp(jwks, "https://", 8) == 0;
        bool local = strncmp(jwks, "http://127.0.0.1:", 17) == 0 ||
                     strncmp(jwks, "http://localhost:", 17) == 0 ||
                     strncmp(jwks, "http://[::1]:", 13) == 0;
        if (!https && !local) {
            snprintf(err, errlen, "JWT_JWKS_URL must be https:// (http:// only on loopback)");
            return -1;
        }
        cfg->jwks_url = strdup(jwks);
        cfg->jwt_alg = MB_ALG_RS256;
        cfg->jwt_algs = bits;
        return 0;
    }
    if (!has_alg || bits == MB_ALGBIT_HS256) {
        cfg->jwt_alg = MB_ALG_HS256;
        cfg->jwt_algs = MB_ALGBIT_HS256;
        const char *secret = getenv("JWT_SECRET");
        if (secret == NULL || strlen(secret) < 32) {
            snprintf(err, errlen, "JWT_SECRET must be set (at least 32 bytes) for HS256");
            return -1;
        }
        cfg->jwt_key = (unsigned char *)strdup(secret);
        cfg->jwt_key_len = strlen(secret);
        return 0;
    }
    if (bits & MB_ALGBIT_HS256) {
        snprintf(err, errlen, "JWT_ALG: HS256 cannot be combined with public-key algorithms");
        return -1;
    }
    cfg->jwt_alg = MB_ALG_RS256;
    cfg->jwt_algs = bits;
    const char *path = getenv("JWT_PUBLIC_KEY_FILE");
    if (path == NULL || (cfg->jwt_key = read_file(path, &cfg->jwt_key_len)) == NULL) {
        snprintf(err, errlen, "JWT_PUBLIC_KEY_FILE must name a readable PEM file for %s", alg);
        return -1;
    }
    return 0;
}

int mb_config_load(mb_config *cfg, char *err, size_t errlen)
{
    memset(cfg, 0, sizeof(*cfg));
    int body_kb = 0;
    if (env_int("PORT", 8080, 1, 65535, &cfg->port) != 0) {
        snprintf(err, errlen, "PORT must be 1..65535");
        return -1;
    }
    /* PostgreSQL runs short queries best with about one backend per CPU plus
     * one: more connections only queue inside it and stretch the tail (the
     * list's p99 went from 13 ms to 125 ms with 8 on 2 CPUs). Its CPUs are
     * unknown from here, so the default takes this machine's. */
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int pool_default = ncpu < 1 ? 3 : ncpu > 31 ? 32 : (int)ncpu + 1;
    if (env_int("DB_POOL_SIZE", pool_default, 1, 256, &cfg->pool_size) != 0 ||
        env_int("HTTP_MAX_CONNECTIONS", 1024, 16, 65536, &cfg->max_connections) != 0 ||
        env_int("MAX_BODY_KB", 64, 1, 10240, &body_kb) != 0 ||
        env_int("SHUTDOWN_GRACE_SECONDS", 10, 0, 300, &cfg->shutdown_grace_s) != 0 ||
        env_int("HTTP_IDLE_TIMEOUT_SECONDS", 15, 1, 3600, &cfg->idle_timeout_s) != 0 ||
        env_int("HTTP_HEADER_TIMEOUT_SECONDS", 30, 1, 3600, &cfg->header_timeout_s) != 0) {
        snprintf(err, errlen,
                 "DB_POOL_SIZE, HTTP_MAX_CONNECTIONS, MAX_BODY_KB, SHUTDOWN_GRACE_SECONDS, "
                 "HTTP_IDLE_TIMEOUT_SECONDS or HTTP_HEADER_TIMEOUT_SECONDS out of range");
        return -1;
    }
    cfg->max_body = (size_t)body_kb * 1024;
    const char *log_format = getenv("LOG_FORMAT");
    if (log_format != NULL && *log_format != '\0' && strcmp(log_format, "text") != 0 &&
        strcmp(log_format, "json") != 0) {
        snprintf(err, errlen, "LOG_FORMAT must be text or json");
        return -1;
    }
    cfg->log_json = log_format != NULL && strcmp(log_format, "json") == 0;
    if (env_int("CACHE_MB", 16, 0, 4096, &cfg->cache_mb) != 0) {
        snprintf(err, errlen, "CACHE_MB out of range (0..4096)");
        return -1;
    }
    /* Requests running at once (src/admit/): enough to keep the CPUs and the pool busy while
     * most wait on PostgreSQL (a version read, a page), few enough that arrival order, not the
     * scheduler, decides. 12 per CPU since the hand-off got cheap (README, Performance). */
    long cpus = ncpu < 1 ? 2 : ncpu > 64 ? 64 : ncpu;
    if (env_int("HTTP_MAX_RUNNING", (int)(12 * cpus) + cfg->pool_size, 0, 65536,
                &cfg->max_running) != 0) {
        snprintf(err, errlen, "HTTP_MAX_RUNNING out of range (0..65536)");
        return -1;
    }
    if (env_int("HTTP_MAX_CONNECTIONS_PER_CLIENT", (cfg->max_connections + 3) / 4, 1, 65536,
                &cfg->max_connections_per_client) != 0) {
        snprintf(err, errlen, "HTTP_MAX_CONNECTIONS_PER_CLIENT out of range");
        return -1;
    }
    /* issue 14: key pools arrive as text/csv files larger than JSON bodies */
    int csv_kb = 0, low = 0;
    if (env_int("CSV_MAX_BODY_KB", 16384, 1, 262144, &csv_kb) != 0 ||
        env_int("KEY_POOL_LOW_WATERMARK", 100, 0, 100000000, &low) != 0) {
        snprintf(err, errlen, "CSV_MAX_BODY_KB or KEY_POOL_LOW_WATERMARK out of range");
        return -1;
    }
    cfg->max_csv_body = (size_t)csv_kb * 1024;
    /* issue 15: far above what one caller of an interactive API sends (the
     * suite and the bench never reach them); README says how to size them */
    if (env_int("RATE_LIMIT_PER_SUBJECT", 10000, 0, 100000000, &cfg->rate_limit_per_subject) != 0 ||
        env_int("RATE_LIMIT_PER_PARTNER", 30000, 0, 100000000, &cfg->rate_limit_per_partner) != 0 ||
        env_int("RATE_LIMIT_WINDOW_SECONDS", 60, 1, 86400, &cfg->rate_limit_window_s) != 0) {
        snprintf(err, errlen,
                 "RATE_LIMIT_PER_SUBJECT or RATE_LIMIT_PER_PARTNER (0..100000000, 0: off) or "
                 "RATE_LIMIT_WINDOW_SECONDS (1..86400) out of range");
        return -1;
    }
    cfg->key_pool_low_watermark = low;
    cfg->database_url = env_dup("DATABASE_URL", "postgresql:///mpn");
    cfg->jwt_issuer = env_dup("JWT_ISSUER", "https://login.mpn.example");
    cfg->jwt_audience = env_dup("JWT_AUDIENCE", "mpn-benefits");
    cfg->cors_origins = env_dup("CORS_ORIGINS", "");
    cfg->sql_dir = env_dup("MPN_SQL_DIR", MB_DEFAULT_SQL_DIR);

    if (load_identity(cfg, err, errlen) != 0)
        return -1;

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

/* The development secrets of scripts/lib.sh: public, so never for a real service. */
static const char *const dev_secrets[] = {"dev-secret-change-me-0123456789abcdef", DEMO_KEK};

int mb_config_check_secrets(const mb_config *cfg, char *err, size_t errlen)
{
    const char *demo = getenv("MPN_DEMO");
    if (demo != NULL && strcmp(demo, "1") == 0)
        return 0;
    const struct {
        const char *name, *value;
    } secrets[] = {{"JWT_SECRET", getenv("JWT_SECRET")}, {"KEY_ENCRYPTION_KEY", cfg->kek}};
    for (size_t i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++) {
        const char *v = secrets[i].value;
        if (v == NULL || *v == '\0')
            continue; /* not in use (mb_config_load requires what is needed) */
        for (size_t d = 0; d < sizeof(dev_secrets) / sizeof(dev_secrets[0]); d++)
            if (strcmp(v, dev_secrets[d]) == 0) {
                snprintf(err, errlen,
                         "%s is a development value from scripts/lib.sh; set a secret of your "
                         "own (32 bytes or more), or MPN_DEMO=1 on a laptop",
                         secrets[i].name);
                return -1;
            }
        if (strlen(v) < 32) {
            snprintf(err, errlen, "%s is shorter than 32 bytes (or set MPN_DEMO=1 on a laptop)",
                     secrets[i].name);
            return -1;
        }
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
    free(cfg->jwks_url);
    free(cfg->operator_tenant_id);
    memset(cfg, 0, sizeof(*cfg));
}
