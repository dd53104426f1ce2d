/* Unit tests of the pure parts: token checks, configuration, validation,
 * cursors, the role matrix and the refund rule. */
#include <jansson.h>
#include <jwt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mb_auth.h"
#include "mb_config.h"
#include "mb_domain.h"

static int failures, checks;
#define CHECK(cond)                                                                                \
    do {                                                                                           \
        checks++;                                                                                  \
        if (!(cond)) {                                                                             \
            failures++;                                                                            \
            fprintf(stderr, "%s:%d: %s: CHECK(%s) failed\n", __FILE__, __LINE__, __func__, #cond); \
        }                                                                                          \
    } while (0)

#define SECRET "unit-test-secret-0123456789abcdef0123"
static mb_config cfg;
static const time_t NOW = 1800000000;

static char *sign(const char *alg_name, const char *key, json_t *claims)
{
    jwt_t *jwt = NULL;
    char *grants = json_dumps(claims, JSON_COMPACT);
    json_decref(claims);
    jwt_new(&jwt);
    jwt_add_grants_json(jwt, grants);
    free(grants);
    jwt_alg_t alg = jwt_str_alg(alg_name);
    jwt_set_alg(jwt, alg, alg == JWT_ALG_NONE ? NULL : (const unsigned char *)key,
                alg == JWT_ALG_NONE ? 0 : (int)strlen(key));
    char *tok = jwt_encode_str(jwt);
    jwt_free(jwt);
    char *hdr = malloc(strlen(tok) + 8);
    sprintf(hdr, "Bearer %s", tok);
    free(tok);
    return hdr;
}

static json_t *claims(void)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:[s], s:I, s:I, s:I}", "sub",
                     "22222222-2222-4222-8222-000000000001", "tid",
                     "11111111-1111-4111-8111-111111111111", "iss", "https://iss.example", "aud",
                     "mpn-benefits", "roles", "global_admin", "iat", (json_int_t)NOW, "nbf",
                     (json_int_t)NOW, "exp", (json_int_t)(NOW + 600));
}

static mb_err verify_claims(json_t *c)
{
    char *h = sign("HS256", SECRET, c);
    mb_principal who;
    mb_err e = mb_auth_verify(&cfg, h, NOW, &who);
    free(h);
    return e;
}

static void test_valid_token_yields_partner_and_roles(void)
{
    char *h = sign("HS256", SECRET, claims());
    mb_principal who;
    CHECK(mb_auth_verify(&cfg, h, NOW, &who) == MB_OK);
    CHECK(strcmp(who.tid, "11111111-1111-4111-8111-111111111111") == 0);
    CHECK(who.roles == MB_ROLE_GLOBAL_ADMIN);
    free(h);
}

static void test_wrong_secret_and_alg_none_are_refused(void)
{
    char *h = sign("HS256", "another-secret-0123456789abcdef0123", claims());
    mb_principal who;
    CHECK(mb_auth_verify(&cfg, h, NOW, &who) == MB_E_UNAUTHENTICATED);
    free(h);
    h = sign("none", NULL, claims());
    CHECK(mb_auth_verify(&cfg, h, NOW, &who) == MB_E_UNAUTHENTICATED);
    free(h);
    h = sign("HS512", SECRET, claims());
    CHECK(mb_auth_verify(&cfg, h, NOW, &who) == MB_E_UNAUTHENTICATED);
    free(h);
}

static void test_time_claims_are_checked(void)
{
    json_t *c = claims();
    json_object_set_new(c, "exp", json_integer(NOW - 120));
    CHECK(verify_claims(c) == MB_E_UNAUTHENTICATED);
    c = claims();
    json_object_set_new(c, "nbf", json_integer(NOW + 3600));
    CHECK(verify_claims(c) == MB_E_UNAUTHENTICATED);
    c = claims();
    json_object_set_new(c, "iat", json_integer(NOW + 3600));
    CHECK(verify_claims(c) == MB_E_UNAUTHENTICATED);
    c = claims();
    json_object_del(c, "exp");
    CHECK(verify_claims(c) == MB_E_UNAUTHENTICATED);
    c = claims();
    json_object_set_new(c, "exp", json_string("tomorrow"));
    CHECK(verify_claims(c) == MB_E_UNAUTHENTICATED);
}

static void test_issuer_audience_subject_roles_are_checked(void)
{
    json_t *c = claims();
    json_object_set_new(c, "iss", json_string("https://evil.example"));
    CHECK(verify_claims(c) == MB_E_UNAUTHENTICATED);
    c = claims();
    json_object_set_new(c, "aud", json_string("someone-else"));
    CHECK(verify_claims(c) == MB_E_UNAUTHENTICATED);
    c = claims();
    json_object_set_new(c, "aud", json_pack("[s,s]", "x", "mpn-benefits"));
    CHECK(verify_claims(c) == MB_OK);
    c = claims();
    json_object_del(c, "sub");
    CHECK(verify_claims(c) == MB_E_UNAUTHENTICATED);
    c = claims();
    json_object_set_new(c, "roles", json_string("global_admin"));
    CHECK(verify_claims(c) == MB_E_UNAUTHENTICATED);
    c = claims();
    json_object_set_new(c, "roles", json_pack("[s]", "superuser"));
    CHECK(verify_claims(c) == MB_E_UNAUTHENTICATED);
    c = claims();
    json_object_set_new(c, "roles", json_array()); /* an employee */
    CHECK(verify_claims(c) == MB_OK);
    c = claims();
    json_object_del(c, "tid"); /* partner role without a partner */
    CHECK(verify_claims(c) == MB_E_UNAUTHENTICATED);
    c = claims();
    json_object_set_new(c, "tid", json_string("not-a-uuid"));
    CHECK(verify_claims(c) == MB_E_UNAUTHENTICATED);
}

static void test_operator_needs_no_partner_and_loses_role_with_one(void)
{
    json_t *c = claims();
    json_object_del(c, "tid");
    json_object_set_new(c, "roles", json_pack("[s]", "operator"));
    char *h = sign("HS256", SECRET, c);
    mb_principal who;
    CHECK(mb_auth_verify(&cfg, h, NOW, &who) == MB_OK);
    CHECK(who.roles == MB_ROLE_OPERATOR && who.tid[0] == '\0');
    free(h);
    c = claims();
    json_object_set_new(c, "roles", json_pack("[s,s]", "operator", "user_admin"));
    h = sign("HS256", SECRET, c);
    CHECK(mb_auth_verify(&cfg, h, NOW, &who) == MB_OK);
    CHECK(who.roles == MB_ROLE_USER_ADMIN);
    free(h);
}

static void test_malformed_headers_are_refused(void)
{
    mb_principal who;
    CHECK(mb_auth_verify(&cfg, NULL, NOW, &who) == MB_E_UNAUTHENTICATED);
    CHECK(mb_auth_verify(&cfg, "Bearer ", NOW, &who) == MB_E_UNAUTHENTICATED);
    CHECK(mb_auth_verify(&cfg, "Basic abc", NOW, &who) == MB_E_UNAUTHENTICATED);
    CHECK(mb_auth_verify(&cfg, "Bearer ...", NOW, &who) == MB_E_UNAUTHENTICATED);
    CHECK(mb_auth_verify(&cfg, "Bearer a.b.c.d", NOW, &who) == MB_E_UNAUTHENTICATED);
    CHECK(mb_auth_verify(&cfg, "Bearer a!.b.c", NOW, &who) == MB_E_UNAUTHENTICATED);
    char *big = malloc(MB_MAX_TOKEN + 64);
    strcpy(big, "Bearer ");
    memset(big + 7, 'a', MB_MAX_TOKEN + 10);
    big[7 + MB_MAX_TOKEN + 10] = '\0';
    big[20] = '.';
    big[40] = '.';
    CHECK(mb_auth_verify(&cfg, big, NOW, &who) == MB_E_UNAUTHENTICATED);
    free(big);
}

static void test_minted_token_verifies(void)
{
    char *tok = mb_auth_mint(&cfg, "op-1", NULL, MB_ROLE_OPERATOR, 60, time(NULL));
    CHECK(tok != NULL);
    char hdr[4096];
    snprintf(hdr, sizeof(hdr), "Bearer %s", tok);
    mb_principal who;
    CHECK(mb_auth_verify(&cfg, hdr, time(NULL), &who) == MB_OK);
    CHECK(who.roles == MB_ROLE_OPERATOR);
    free(tok);
}

static void test_validation_helpers(void)
{
    CHECK(mb_is_uuid("11111111-1111-4111-8111-111111111111"));
    CHECK(!mb_is_uuid("11111111-1111-4111-8111-11111111111"));
    CHECK(!mb_is_uuid("11111111x1111-4111-8111-111111111111"));
    CHECK(mb_is_email("a@b.co") && !mb_is_email("a@b") && !mb_is_email("@b.co") &&
          !mb_is_email("a b@c.de"));
    CHECK(mb_is_phone("+4930123456") && !mb_is_phone("030123456") && !mb_is_phone("+0123456789"));
    CHECK(mb_is_lang_tag("en-US") && mb_is_lang_tag("de") && !mb_is_lang_tag("EN") &&
          !mb_is_lang_tag("en-"));
    mb_verr e;
    json_t *o = json_pack("{s:s, s:i, s:b}", "name", "x", "n", 5, "flag", 1);
    const char *s;
    long long n;
    bool b, present;
    const char *const known[] = {"name", "n", "flag", NULL};
    const char *const few[] = {"name", NULL};
    CHECK(mb_v_known(o, known, &e));
    CHECK(!mb_v_known(o, few, &e));
    CHECK(mb_v_str(o, "name", true, 1, 10, &s, &e) && strcmp(s, "x") == 0);
    CHECK(!mb_v_str(o, "name", true, 2, 10, &s, &e) && strcmp(e.field, "name") == 0);
    CHECK(!mb_v_str(o, "missing", true, 1, 10, &s, &e));
    CHECK(mb_v_str(o, "missing", false, 1, 10, &s, &e) && s == NULL);
    CHECK(!mb_v_str(o, "n", true, 1, 10, &s, &e));
    CHECK(mb_v_int(o, "n", true, 1, 10, &n, &present, &e) && n == 5 && present);
    CHECK(!mb_v_int(o, "n", true, 6, 10, &n, &present, &e));
    CHECK(mb_v_bool(o, "flag", true, &b, &present, &e) && b);
    const char *const cats[] = {"software", "cloud", NULL};
    json_object_set_new(o, "category", json_string("hardware"));
    CHECK(!mb_v_enum(o, "category", true, cats, &s, &e));
    json_decref(o);
}

static void test_cursor_round_trip_and_garbage(void)
{
    char enc[128], dec[128];
    CHECK(mb_cursor_encode("11111111-1111-4111-8111-111111111111", enc, sizeof(enc)));
    CHECK(mb_cursor_decode(enc, dec, sizeof(dec)));
    CHECK(strcmp(dec, "11111111-1111-4111-8111-111111111111") == 0);
    CHECK(mb_cursor_encode("12345", enc, sizeof(enc)) && mb_cursor_decode(enc, dec, sizeof(dec)) &&
          strcmp(dec, "12345") == 0);
    CHECK(!mb_cursor_decode("", dec, sizeof(dec)));
    CHECK(!mb_cursor_decode("a", dec, sizeof(dec)));
    CHECK(!mb_cursor_decode("!!!!", dec, sizeof(dec)));
    CHECK(!mb_cursor_decode("AAAA", dec, sizeof(dec))); /* NUL bytes */
    int limit;
    CHECK(mb_parse_limit(NULL, &limit) && limit == 50);
    CHECK(mb_parse_limit("200", &limit) && limit == 200);
    CHECK(!mb_parse_limit("0", &limit) && !mb_parse_limit("201", &limit) &&
          !mb_parse_limit("-1", &limit) && !mb_parse_limit("9999999999", &limit) &&
          !mb_parse_limit("1e2", &limit));
}

static void test_role_matrix_rows(void)
{
    CHECK(mb_roles_allow(MB_ROLE_ADMIN_AGENT, MB_ACT_PURCHASE));
    CHECK(!mb_roles_allow(MB_ROLE_USER_ADMIN, MB_ACT_PURCHASE));
    CHECK(!mb_roles_allow(MB_ROLE_MPN_PARTNER_ADMIN, MB_ACT_ASSIGN_OTHERS));
    CHECK(mb_roles_allow(MB_ROLE_GLOBAL_ADMIN, MB_ACT_ASSIGN_OTHERS));
    CHECK(mb_roles_allow(MB_ROLE_USER_ADMIN, MB_ACT_MANAGE_USERS));
    CHECK(!mb_roles_allow(MB_ROLE_ADMIN_AGENT, MB_ACT_TECHNICAL));
    CHECK(!mb_roles_allow(MB_ROLE_GLOBAL_ADMIN, MB_ACT_OPERATE));
    CHECK(!mb_roles_allow(0, MB_ACT_READ));
    CHECK(strstr(mb_action_denied_detail(MB_ACT_TECHNICAL), "Global admin") != NULL);
}

static void test_refund_rule(void)
{
    const char *r[3];
    CHECK(mb_refund_reasons(29LL * 86400, false, true, r) == 0);
    CHECK(mb_refund_reasons(31LL * 86400, false, true, r) == 1 &&
          strcmp(r[0], "refund-window-expired") == 0);
    CHECK(mb_refund_reasons(86400, true, true, r) == 1 &&
          strcmp(r[0], "software-benefits-activated") == 0);
    CHECK(mb_refund_reasons(31LL * 86400, true, true, r) == 2);
}

/* The edges of R10: exactly 30 days is still inside the window, one second more is not; a
 * software benefit activated refuses at any age, alone or with the window. */
static void test_refund_rule_edges(void)
{
    const char *r[3];
    const long long days30 = 30LL * 24 * 3600;
    CHECK(mb_refund_reasons(days30, false, true, r) == 0);
    CHECK(mb_refund_reasons(days30 + 1, false, true, r) == 1 &&
          strcmp(r[0], "refund-window-expired") == 0);
    CHECK(mb_refund_reasons(days30 - 1, false, true, r) == 0);
    CHECK(mb_refund_reasons(0, false, true, r) == 0);
    CHECK(mb_refund_reasons(days30, true, true, r) == 1 &&
          strcmp(r[0], "software-benefits-activated") == 0);
    CHECK(mb_refund_reasons(0, true, true, r) == 1 &&
          strcmp(r[0], "software-benefits-activated") == 0);
    CHECK(mb_refund_reasons(days30 + 1, true, true, r) == 2 &&
          strcmp(r[0], "refund-window-expired") == 0 &&
          strcmp(r[1], "software-benefits-activated") == 0);
    CHECK(mb_refund_reasons(days30, false, false, r) == 1 &&
          strcmp(r[0], "purchase-not-active") == 0);
}

/* A claim set of claims() with one time claim moved to NOW + delta. */
static mb_err verify_time(const char *name, long long delta)
{
    json_t *c = claims();
    json_object_set_new(c, name, json_integer(NOW + delta));
    return verify_claims(c);
}

/* 60 s of clock skew, both ways, to the second: exp may lie up to 59 s in the past (at 60 s it
 * is expired), nbf and iat up to 60 s in the future (61 s is refused). */
static void test_clock_skew_boundary(void)
{
    CHECK(verify_time("exp", -59) == MB_OK);
    CHECK(verify_time("exp", -60) == MB_E_UNAUTHENTICATED);
    CHECK(verify_time("exp", -61) == MB_E_UNAUTHENTICATED);
    CHECK(verify_time("exp", 1) == MB_OK);
    CHECK(verify_time("nbf", 60) == MB_OK);
    CHECK(verify_time("nbf", 61) == MB_E_UNAUTHENTICATED);
    CHECK(verify_time("iat", 60) == MB_OK);
    CHECK(verify_time("iat", 61) == MB_E_UNAUTHENTICATED);
}

/* The size limit alone: correctly signed, well-formed tokens whose only fault is their size. A
 * token of exactly MB_MAX_TOKEN characters passes, any longer one is refused. */
static void test_size_limit_on_well_formed_tokens(void)
{
    int at_limit = 0, over = 0, under = 0;
    for (size_t pad = MB_MAX_TOKEN * 3 / 4 - 300; pad < MB_MAX_TOKEN * 3 / 4 + 10; pad++) {
        char *p = malloc(pad + 1);
        memset(p, 'x', pad);
        p[pad] = '\0';
        json_t *c = claims();
        json_object_set_new(c, "pad", json_string(p));
        free(p);
        char *h = sign("HS256", SECRET, c);
        size_t len = strlen(h) - 7; /* without "Bearer " */
        if (len + 8 < MB_MAX_TOKEN || len > MB_MAX_TOKEN + 8) {
            free(h);
            continue;
        }
        mb_principal who;
        mb_err e = mb_auth_verify(&cfg, h, NOW, &who);
        if (len <= MB_MAX_TOKEN) {
            CHECK(e == MB_OK && who.roles == MB_ROLE_GLOBAL_ADMIN);
            under++;
            at_limit += len == MB_MAX_TOKEN;
        } else {
            CHECK(e == MB_E_UNAUTHENTICATED);
            over++;
        }
        free(h);
    }
    CHECK(at_limit > 0 && under > 1 && over > 1);
}

static void test_config_requires_secrets(void)
{
    mb_config c;
    char err[256];
    unsetenv("JWT_SECRET");
    CHECK(mb_config_load(&c, err, sizeof(err)) != 0);
    mb_config_free(&c);
    setenv("JWT_SECRET", "short", 1);
    CHECK(mb_config_load(&c, err, sizeof(err)) != 0);
    mb_config_free(&c);
    setenv("JWT_SECRET", SECRET, 1);
    unsetenv("KEY_ENCRYPTION_KEY");
    unsetenv("MPN_DEMO");
    CHECK(mb_config_load(&c, err, sizeof(err)) != 0 && strstr(err, "KEY_ENCRYPTION_KEY"));
    mb_config_free(&c);
    setenv("KEY_ENCRYPTION_KEY", "k", 1);
    setenv("PORT", "99999", 1);
    CHECK(mb_config_load(&c, err, sizeof(err)) != 0);
    mb_config_free(&c);
    unsetenv("PORT");
    setenv("JWT_ALG", "none", 1);
    CHECK(mb_config_load(&c, err, sizeof(err)) != 0);
    mb_config_free(&c);
    unsetenv("JWT_ALG");
    CHECK(mb_config_load(&c, err, sizeof(err)) == 0 && c.port == 8080 && c.jwt_alg == MB_ALG_HS256);
    mb_config_free(&c);
}

static void test_unknown_field_name_is_cut_between_characters(void)
{
    /* 1 + 40 two-byte characters: a cut at byte 60 would split one (found by
     * tests/fuzz/fuzz_json_body; the 422 then could not be built: a 500). */
    char key[128] = "a";
    for (int i = 0; i < 40; i++)
        strcat(key, "\xc3\xa9");
    json_t *o = json_object();
    json_object_set_new(o, key, json_integer(1));
    const char *const names[] = {"x", NULL};
    mb_verr e;
    CHECK(!mb_v_known(o, names, &e));
    CHECK(strlen(e.field) == 59 && strncmp(e.field, key, 59) == 0);
    json_t *s = json_string(e.field);
    CHECK(s != NULL);
    json_decref(s);
    json_decref(o);
}

static void test_pool_default_and_secret_checks(void)
{
    mb_config c;
    char err[256];
    unsetenv("DB_POOL_SIZE");
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    CHECK(mb_config_load(&c, err, sizeof(err)) == 0 && c.pool_size == (n > 31 ? 32 : (int)n + 1));
    mb_config_free(&c);
    setenv("DB_POOL_SIZE", "5", 1);
    CHECK(mb_config_load(&c, err, sizeof(err)) == 0 && c.pool_size == 5);
    mb_config_free(&c);
    unsetenv("DB_POOL_SIZE");
    /* serve's secret checks: short or development values only with MPN_DEMO=1 */
    setenv("KEY_ENCRYPTION_KEY", "0123456789abcdef0123456789abcdef-unit", 1);
    unsetenv("MPN_DEMO");
    CHECK(mb_config_load(&c, err, sizeof(err)) == 0 &&
          mb_config_check_secrets(&c, err, sizeof(err)) == 0);
    mb_config_free(&c);
    setenv("KEY_ENCRYPTION_KEY", "demo-key-encryption-key", 1);
    CHECK(mb_config_load(&c, err, sizeof(err)) == 0 &&
          mb_config_check_secrets(&c, err, sizeof(err)) != 0 &&
          strstr(err, "KEY_ENCRYPTION_KEY is a development value") != NULL);
    mb_config_free(&c);
    setenv("MPN_DEMO", "1", 1);
    CHECK(mb_config_load(&c, err, sizeof(err)) == 0 &&
          mb_config_check_secrets(&c, err, sizeof(err)) == 0);
    mb_config_free(&c);
    unsetenv("MPN_DEMO");
    setenv("KEY_ENCRYPTION_KEY", "31-bytes-0123456789abcdef012345", 1);
    CHECK(mb_config_load(&c, err, sizeof(err)) == 0 &&
          mb_config_check_secrets(&c, err, sizeof(err)) != 0 && strstr(err, "shorter than 32"));
    mb_config_free(&c);
}

int main(void)
{
    setenv("JWT_SECRET", SECRET, 1);
    setenv("JWT_ISSUER", "https://iss.example", 1);
    setenv("JWT_AUDIENCE", "mpn-benefits", 1);
    setenv("KEY_ENCRYPTION_KEY", "unit-kek", 1);
    unsetenv("JWT_ALG");
    unsetenv("PORT");
    char err[256];
    if (mb_config_load(&cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "config: %s\n", err);
        return 1;
    }
    test_valid_token_yields_partner_and_roles();
    test_wrong_secret_and_alg_none_are_refused();
    test_time_claims_are_checked();
    test_issuer_audience_subject_roles_are_checked();
    test_operator_needs_no_partner_and_loses_role_with_one();
    test_malformed_headers_are_refused();
    test_minted_token_verifies();
    test_validation_helpers();
    test_cursor_round_trip_and_garbage();
    test_unknown_field_name_is_cut_between_characters();
    test_role_matrix_rows();
    test_refund_rule();
    test_refund_rule_edges();
    test_clock_skew_boundary();
    test_size_limit_on_well_formed_tokens();
    test_config_requires_secrets();
    test_pool_default_and_secret_checks();
    mb_config_free(&cfg);
    printf("unit: %d checks, %d failed\n", checks, failures);
    return failures ? 1 : 0;
}
