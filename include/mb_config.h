/* Configuration from environment variables, with safe defaults. */
#ifndef MB_CONFIG_H
#define MB_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

typedef enum { MB_ALG_HS256 = 0, MB_ALG_RS256 = 1 } mb_alg;

typedef struct {
    int port;
    char *database_url;
    mb_alg jwt_alg;
    unsigned char *jwt_key; /* HS256 secret or RS256 public key PEM; never logged */
    size_t jwt_key_len;
    char *jwt_issuer;
    char *jwt_audience;
    char *kek; /* KEY_ENCRYPTION_KEY; never logged */
    bool kek_is_demo;
    char *cors_origins; /* comma-separated, "*" allowed */
    int pool_size;
    int max_connections;            /* connections served at once (a thread each) */
    int max_connections_per_client; /* of those, from one client address */
    int idle_timeout_s;
    bool log_json;                                                   /* LOG_FORMAT=json */
    int cache_mb; /* bound of the cache of rendered partner reads */ /* a served connection with no
                                                                        traffic is closed */
    int max_running;      /* HTTP_MAX_RUNNING: requests past the line at once; 0: no line */
    int header_timeout_s; /* a new connection must send a whole head by then */
    size_t max_body;
    char *sql_dir;
    int shutdown_grace_s;
    /* Identity from a real identity provider (issue 11). Zero values keep the
     * single-key behaviour of jwt_alg/jwt_key. */
    unsigned jwt_algs;        /* MB_ALGBIT_* accepted; 0: the one of jwt_alg */
    char *jwks_url;           /* JWT_JWKS_URL; NULL: jwt_key */
    long long max_ttl_s;      /* JWT_MAX_TTL_SECONDS; 0: no bound (and iat optional) */
    char *operator_tenant_id; /* OPERATOR_TENANT_ID; NULL: none */
    int jwks_refetch_min_s;   /* JWKS_REFETCH_MIN_SECONDS (default 30) */
    size_t max_csv_body;              /* CSV_MAX_BODY_KB: text/csv uploads (issue 14) */
    long long key_pool_low_watermark; /* KEY_POOL_LOW_WATERMARK (issue 14) */
    /* Rate limits (issue 15): requests per window per token subject and per
     * partner, in each process; 0 turns one off. */
    int rate_limit_per_subject; /* RATE_LIMIT_PER_SUBJECT */
    int rate_limit_per_partner; /* RATE_LIMIT_PER_PARTNER */
    int rate_limit_window_s;    /* RATE_LIMIT_WINDOW_SECONDS */
} mb_config;

/* The signature algorithms of JWT_ALG (a comma-separated list). */
enum {
    MB_ALGBIT_HS256 = 1u << 0,
    MB_ALGBIT_RS256 = 1u << 1,
    MB_ALGBIT_RS384 = 1u << 2,
    MB_ALGBIT_RS512 = 1u << 3,
    MB_ALGBIT_ES256 = 1u << 4,
    MB_ALGBIT_ES384 = 1u << 5,
    MB_ALGBIT_ES512 = 1u << 6,
};
/* The bit of an algorithm name ("RS256"), or 0. */
unsigned mb_alg_bit(const char *name);

/* Reads the environment into cfg. Returns 0, or -1 with a reason in err. */
int mb_config_load(mb_config *cfg, char *err, size_t errlen);
void mb_config_free(mb_config *cfg);
/* For serve: refuses the development secrets of scripts/lib.sh and any secret
 * under 32 bytes unless MPN_DEMO=1. Returns 0, or -1 with a reason in err. */
int mb_config_check_secrets(const mb_config *cfg, char *err, size_t errlen);

#endif
