/* mpn-benefits: serve | migrate | seed-demo | token */
#include <dirent.h>
#include <errno.h>
#include <libpq-fe.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <yder.h>

#include "mb_auth.h"
#include "mb_config.h"
#include "mb_db.h"
#include "mb_events.h"
#include "mb_http.h"
#include "mb_log.h"

static void usage(void)
{
    fprintf(stderr,
            "usage: mpn-benefits <command>\n"
            "  serve                      run the HTTP service\n"
            "  worker                     run only the delivery worker (webhooks, mail)\n"
            "  migrate                    apply the numbered SQL files of MPN_SQL_DIR\n"
            "  seed-demo                  load the demo catalog, partners and key pools\n"
            "  token --sub S [--partner P] --role R [--role R ...] [--ttl SECONDS]\n"
            "                             print a development token (HS256, JWT_SECRET)\n"
            "configuration: DATABASE_URL PORT JWT_ALG JWT_SECRET JWT_PUBLIC_KEY_FILE JWT_ISSUER\n"
            "  JWT_AUDIENCE KEY_ENCRYPTION_KEY CORS_ORIGINS DB_POOL_SIZE HTTP_MAX_CONNECTIONS "
            "MAX_BODY_KB\n");
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (buf != NULL && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    if (buf != NULL)
        buf[n] = '\0';
    fclose(f);
    return buf;
}

static int exec_ok(PGconn *db, const char *sql, int n, const char *const *params)
{
    PGresult *r = PQexecParams(db, sql, n, NULL, params, NULL, NULL, 0);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
    if (!ok)
        fprintf(stderr, "mpn-benefits: %s", PQerrorMessage(db));
    mb_db_clear(&r);
    return ok;
}

/* Runs a whole SQL file (several statements) inside the current
 * transaction. */
static int exec_file(PGconn *db, const char *path)
{
    char *sql = slurp(path);
    if (sql == NULL) {
        fprintf(stderr, "mpn-benefits: cannot read %s: %s\n", path, strerror(errno));
        return 0;
    }
    PGresult *r = PQexec(db, sql);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
    if (!ok)
        fprintf(stderr, "mpn-benefits: %s: %s", path, PQerrorMessage(db));
    mb_db_clear(&r);
    free(sql);
    return ok;
}

static int is_migration(const struct dirent *d)
{
    const char *n = d->d_name;
    size_t l = strlen(n);
    return l > 8 && n[0] >= '0' && n[0] <= '9' && n[1] >= '0' && n[1] <= '9' && n[2] >= '0' &&
           n[2] <= '9' && n[3] == '_' && strcmp(n + l - 4, ".sql") == 0;
}

static PGconn *connect_db(const mb_config *cfg)
{
    const char *const keys[] = {"dbname", "options", "application_name", NULL};
    const char *const vals[] = {cfg->database_url, "-c TimeZone=UTC -c client_min_messages=warning",
                                "mpn-benefits-admin", NULL};
    PGconn *db = PQconnectdbParams(keys, vals, 1);
    if (PQstatus(db) != CONNECTION_OK) {
        fprintf(stderr, "mpn-benefits: cannot connect: %s", PQerrorMessage(db));
        PQfinish(db);
        return NULL;
    }
    return db;
}

/* Applies each numbered file once, in order, each in its own transaction,
 * under an advisory lock so that two replicas starting together do not race. */
static int cmd_migrate(const mb_config *cfg)
{
    PGconn *db = connect_db(cfg);
    if (db == NULL)
        return 1;
    int rc = 1;
    struct dirent **names = NULL;
    int n = scandir(cfg->sql_dir, &names, is_migration, alphasort);
    if (n < 0) {
        fprintf(stderr, "mpn-benefits: cannot list %s: %s\n", cfg->sql_dir, strerror(errno));
        PQfinish(db);
        return 1;
    }
    if (!exec_ok(db, "SELECT pg_advisory_lock(724011)", 0, NULL) ||
        !exec_ok(db,
                 "CREATE TABLE IF NOT EXISTS schema_migrations (version text PRIMARY KEY, "
                 "applied_at timestamptz NOT NULL DEFAULT now())",
                 0, NULL))
        goto out;
    int applied = 0;
    for (int i = 0; i < n; i++) {
        const char *version = names[i]->d_name;
        const char *p[] = {version};
        PGresult *r = PQexecParams(db, "SELECT 1 FROM schema_migrations WHERE version = $1", 1,
                                   NULL, p, NULL, NULL, 0);
        int done = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1;
        mb_db_clear(&r);
        if (done)
            continue;
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", cfg->sql_dir, version);
        if (!exec_ok(db, "BEGIN", 0, NULL))
            goto out;
        if (!exec_file(db, path) ||
            !exec_ok(db, "INSERT INTO schema_migrations (version) VALUES ($1)", 1, p)) {
            exec_ok(db, "ROLLBACK", 0, NULL);
            goto out;
        }
        if (!exec_ok(db, "COMMIT", 0, NULL))
            goto out;
        printf("applied %s\n", version);
        applied++;
    }
    printf("migrations up to date (%d applied now)\n", applied);
    rc = 0;
out:
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
    PQfinish(db);
    return rc;
}

static int cmd_seed(const mb_config *cfg)
{
    PGconn *db = connect_db(cfg);
    if (db == NULL)
        return 1;
    char path[4096];
    snprintf(path, sizeof(path), "%s/demo/seed.sql", cfg->sql_dir);
    const char *p[] = {cfg->kek};
    int ok = exec_ok(db, "BEGIN", 0, NULL) &&
             exec_ok(db, "SELECT set_config('mpn.kek', $1, true)", 1, p) && exec_file(db, path) &&
             exec_ok(db, "COMMIT", 0, NULL);
    if (!ok)
        exec_ok(db, "ROLLBACK", 0, NULL);
    else
        printf("demo data loaded\n");
    PQfinish(db);
    return ok ? 0 : 1;
}

static int cmd_token(const mb_config *cfg, int argc, char **argv)
{
    const char *sub = NULL, *partner = NULL;
    unsigned roles = 0;
    long ttl = 3600;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (v == NULL) {
            usage();
            return 2;
        }
        if (strcmp(a, "--sub") == 0) {
            sub = v;
        } else if (strcmp(a, "--partner") == 0) {
            partner = v;
        } else if (strcmp(a, "--role") == 0) {
            unsigned bit = mb_role_bit(v);
            if (bit == 0 && strcmp(v, "employee") != 0) {
                fprintf(stderr, "mpn-benefits: unknown role %s\n", v);
                return 2;
            }
            roles |= bit;
        } else if (strcmp(a, "--ttl") == 0) {
            ttl = strtol(v, NULL, 10);
            if (ttl <= 0 || ttl > 30L * 24 * 3600) {
                fprintf(stderr, "mpn-benefits: --ttl must be 1..2592000\n");
                return 2;
            }
        } else {
            usage();
            return 2;
        }
        i++;
    }
    if (sub == NULL) {
        usage();
        return 2;
    }
    char *tok = mb_auth_mint(cfg, sub, partner, roles, ttl, time(NULL));
    if (tok == NULL) {
        fprintf(stderr, "mpn-benefits: cannot mint a token (HS256 only)\n");
        return 1;
    }
    printf("%s\n", tok);
    free(tok);
    return 0;
}

/* Only the delivery worker, until SIGINT/SIGTERM. */
static int cmd_worker(const mb_config *cfg)
{
    y_init_logs("mpn-benefits", Y_LOG_MODE_CONSOLE, Y_LOG_LEVEL_INFO, NULL, "worker starting");
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    int rc = 1;
    if (mb_pool_init(cfg->database_url, cfg->pool_size < 4 ? cfg->pool_size : 4) == 0) {
        if (mb_worker_start(cfg->kek) == 0) {
            int sig = 0;
            sigwait(&set, &sig);
            y_log_message(Y_LOG_LEVEL_INFO, "signal %d: stopping", sig);
            mb_worker_stop();
            rc = 0;
        }
        mb_pool_close();
    }
    y_close_logs();
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage();
        return 2;
    }
    const char *cmd = argv[1];
    /* glibc gives threads that contend for malloc arenas of their own, up to 8 per CPU, and
     * keeps what they free: with a thread per connection and 256 busy connections the bench's
     * peak RSS was 66 MB with the default, 61 MB with two arenas (README Performance). Four
     * are enough for the requests that run at once (HTTP_MAX_RUNNING); MALLOC_ARENA_MAX, when
     * set, decides. */
    if (getenv("MALLOC_ARENA_MAX") == NULL)
        mallopt(M_ARENA_MAX, 4);
    mb_config cfg;
    char err[256];
    if (mb_config_load(&cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "mpn-benefits: configuration: %s\n", err);
        mb_config_free(&cfg); /* what was loaded before the failure */
        return 2;
    }
    int rc;
    if (strcmp(cmd, "serve") == 0 && mb_config_check_secrets(&cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "mpn-benefits: configuration: %s\n", err);
        mb_config_free(&cfg);
        return 2;
    }
    if (strcmp(cmd, "serve") == 0) {
        mb_log_init(cfg.log_json, "starting");
        if (cfg.kek_is_demo)
            y_log_message(Y_LOG_LEVEL_WARNING, "running on the demo KEY_ENCRYPTION_KEY");
        if (mb_pool_init(cfg.database_url, cfg.pool_size) != 0) {
            fprintf(stderr, "mpn-benefits: out of memory\n");
            rc = 1;
        } else if (mb_feed_start(cfg.database_url) != 0) {
            fprintf(stderr, "mpn-benefits: cannot start the event feed\n");
            mb_pool_close();
            rc = 1;
        } else {
            /* Deliveries run in every serve process unless WORKER=0. */
            bool worker = !getenv("WORKER") || strcmp(getenv("WORKER"), "0") != 0;
            if (worker && mb_worker_start(cfg.kek) != 0)
                y_log_message(Y_LOG_LEVEL_ERROR, "cannot start the delivery worker");
            rc = mb_serve(&cfg);
            if (worker)
                mb_worker_stop();
            mb_feed_stop();
            mb_pool_close();
        }
        y_close_logs();
    } else if (strcmp(cmd, "worker") == 0) {
        rc = cmd_worker(&cfg);
    } else if (strcmp(cmd, "migrate") == 0) {
        rc = cmd_migrate(&cfg);
    } else if (strcmp(cmd, "seed-demo") == 0) {
        rc = cmd_seed(&cfg);
    } else if (strcmp(cmd, "token") == 0) {
        rc = cmd_token(&cfg, argc - 2, argv + 2);
    } else {
        usage();
        rc = 2;
    }
    mb_config_free(&cfg);
    return rc;
}
