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
    int max_connections; /* open HTTP connections (one thread each) */
    size_t max_body;
    char *sql_dir;
    int shutdown_grace_s;
    size_t max_csv_body;              /* CSV_MAX_BODY_KB: text/csv uploads (issue 14) */
    long long key_pool_low_watermark; /* KEY_POOL_LOW_WATERMARK (issue 14) */
} mb_config;

/* Reads the environment into cfg. Returns 0, or -1 with a reason in err. */
int mb_config_load(mb_config *cfg, char *err, size_t errlen);
void mb_config_free(mb_config *cfg);

#endif
