/* JWT checks. libjwt 1.10 verifies the signature only: the algorithm, the
 * time claims and every other claim are checked here (STYLE field notes). */
#include "mb_auth.h"
#include "mb_identity.h"

#include <jansson.h>
#include <jwt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CLOCK_SKEW_S 60

static const struct {
    const char *name;
    unsigned bit;
} roles[] = {
    {"global_admin", MB_ROLE_GLOBAL_ADMIN}, {"user_admin", MB_ROLE_USER_ADMIN},
    {"admin_agent", MB_ROLE_ADMIN_AGENT},   {"mpn_partner_admin", MB_ROLE_MPN_PARTNER_ADMIN},
    {"operator", MB_ROLE_OPERATOR},
};

unsigned mb_role_bit(const char *name)
{
    for (size_t i = 0; i < sizeof(roles) / sizeof(roles[0]); i++)
        if (strcmp(roles[i].name, name) == 0)
            return roles[i].bit;
    return 0;
}

const char *mb_role_name(unsigned bit)
{
    for (size_t i = 0; i < sizeof(roles) / sizeof(roles[0]); i++)
        if (roles[i].bit == bit)
            return roles[i].name;
    return NULL;
}

/* Three non-empty base64url segments, nothing else. No base64 text is 1
 * character longer than a multiple of 4 (6 bits cannot make a byte): a
 * decoder that would take one anyway must never see it. */
static int well_formed(const char *t, size_t len)
{
    int dots = 0;
    size_t seg = 0;
    for (size_t i = 0; i < len; i++) {
        char ch = t[i];
        if (ch == '.') {
            if (seg == 0 || seg % 4 == 1)
                return 0;
            dots++;
            seg = 0;
        } else if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                   (ch >= '0' && ch <= '9') || ch == '-' || ch == '_') {
            seg++;
        } else {
            return 0;
        }
    }
    return dots == 2 && seg > 0 && seg % 4 != 1;
}

static int claim_time(json_t *claims, const char *name, int required, long long *out)
{
    json_t *v = json_object_get(claims, name);
    if (v == NULL)
        return required ? -1 : 0;
    if (!json_is_integer(v))
        return -1;
    *out = json_integer_value(v);
    return 1;
}

static int audience_ok(json_t *aud, const char *want)
{
    if (json_is_string(aud))
        return strcmp(json_string_value(aud), want) == 0;
    if (json_is_array(aud)) {
        size_t i;
        json_t *v;
        json_array_foreach(aud, i, v)
        {
            if (json_is_string(v) && strcmp(json_string_value(v), want) == 0)
                return 1;
        }
    }
    return 0;
}

/* The reasons of a refusal, as the detail of the 401 answer. */
#define WHY_MALFORMED "The bearer token is malformed."
#define WHY_CLAIMS "The token's claims are invalid (sub, roles or tid)."
#define WHY_EXPIRED "The token has expired."
#define WHY_NBF "The token is not valid yet (nbf)."
#define WHY_IAT_FUTURE "The token was issued in the future (iat)."
#define WHY_IAT_MISSING "The token has no iat claim (required: lifetimes are bounded)."
#define WHY_TTL "The token's lifetime (exp - iat) exceeds the maximum this service accepts."
#define WHY_ISSUER "The token's issuer (iss) is not accepted for its tenant (tid)."
#define WHY_AUDIENCE "The token's audience (aud) is not this service."
#define WHY_ALG "The token's algorithm (alg) is not accepted."
#define WHY_KID_MISSING "The token names no signing key (kid)."
#define WHY_KID_UNKNOWN "The token's signing key (kid) is unknown."
#define WHY_KEY_MISMATCH "The token's algorithm (alg) does not match its key's type."
#define WHY_SIGNATURE "The token's signature is invalid."
#define WHY_CRIT "The token requires header extensions (crit) this service does not support."

/* The expected iss: the template of JWT_ISSUER with {tid} replaced. */
static bool issuer_ok(const char *tmpl, const char *tid, const char *iss)
{
    const char *at = strstr(tmpl, "{tid}");
    if (at == NULL)
        return strcmp(tmpl, iss) == 0;
    if (tid == NULL || *tid == '\0')
        return false;
    size_t pre = (size_t)(at - tmpl), tl = strlen(tid);
    return strncmp(iss, tmpl, pre) == 0 && strncmp(iss + pre, tid, tl) == 0 &&
           strcmp(iss + pre + tl, at + 5) == 0;
}

static bool uuid_ok(const char *s)
{
    for (int k = 0; k < 36; k++) {
        char ch = s[k];
        int dash = (k == 8 || k == 13 || k == 18 || k == 23);
        if (dash ? ch != '-' : !((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f')))
            return false;
    }
    return s[36] == '\0';
}

static const char *check_claims(const mb_config *cfg, json_t *claims, time_t now, mb_principal *who)
{
    long long exp = 0, nbf = 0, iat = 0;
    if (!json_is_object(claims))
        return WHY_MALFORMED;
    /* Arithmetic on now only: exp may be anything up to LLONG_MAX. */
    if (claim_time(claims, "exp", 1, &exp) < 0)
        return WHY_CLAIMS;
    if (exp <= (long long)now - CLOCK_SKEW_S)
        return WHY_EXPIRED;
    int has = claim_time(claims, "nbf", 0, &nbf);
    if (has < 0)
        return WHY_CLAIMS;
    if (has > 0 && nbf > (long long)now + CLOCK_SKEW_S)
        return WHY_NBF;
    has = claim_time(claims, "iat", 0, &iat);
    if (has < 0)
        return WHY_CLAIMS;
    if (has > 0 && iat > (long long)now + CLOCK_SKEW_S)
        return WHY_IAT_FUTURE;
    if (cfg->max_ttl_s > 0) {
        if (has == 0)
            return WHY_IAT_MISSING;
        /* iat <= now + skew here, so exp - iat cannot overflow unless exp is
         * near LLONG_MAX: compare without subtracting. */
        if (exp > iat + cfg->max_ttl_s)
            return WHY_TTL;
    }
    who->iat = has > 0 ? iat : 0;

    json_t *iss = json_object_get(claims, "iss");
    if (!json_is_string(iss))
        return WHY_ISSUER;
    if (!audience_ok(json_object_get(claims, "aud"), cfg->jwt_audience))
        return WHY_AUDIENCE;

    json_t *sub = json_object_get(claims, "sub");
    if (!json_is_string(sub))
        return WHY_CLAIMS;
    size_t sublen = json_string_length(sub);
    if (sublen == 0 || sublen >= sizeof(who->sub) || memchr(json_string_value(sub), 0, sublen))
        return WHY_CLAIMS;
    memcpy(who->sub, json_string_value(sub), sublen + 1);

    /* roles: an array of strings; unknown names are ignored, but a token that
     * names only unknown roles is refused rather than read as an employee. */
    json_t *rl = json_object_get(claims, "roles");
    if (!json_is_array(rl))
        return WHY_CLAIMS;
    size_t i, unknown = 0;
    json_t *r;
    who->roles = 0;
    json_array_foreach(rl, i, r)
    {
        if (!json_is_string(r))
            return WHY_CLAIMS;
        unsigned bit = mb_role_bit(json_string_value(r));
        if (bit == 0)
            unknown++;
        who->roles |= bit;
    }
    if (unknown > 0 && who->roles == 0)
        return WHY_CLAIMS;

    json_t *tid = json_object_get(claims, "tid");
    who->tid[0] = '\0';
    char tidbuf[37] = "";
    if (tid != NULL && !json_is_null(tid)) {
        if (!json_is_string(tid) || json_string_length(tid) != 36)
            return WHY_CLAIMS;
        memcpy(tidbuf, json_string_value(tid), 37);
        if (!uuid_ok(tidbuf))
            return WHY_CLAIMS;
    }
    /* The operator's tenant (OPERATOR_TENANT_ID) is no partner: its tokens
     * are operator tokens, like tokens without tid. */
    bool op_tenant = cfg->operator_tenant_id != NULL && tidbuf[0] != '\0' &&
                     strcmp(tidbuf, cfg->operator_tenant_id) == 0;
    const char *iss_tid = tidbuf[0] ? tidbuf : cfg->operator_tenant_id;
    if (!issuer_ok(cfg->jwt_issuer, iss_tid, json_string_value(iss)))
        return WHY_ISSUER;
    if (tidbuf[0] != '\0' && !op_tenant) {
        memcpy(who->tid, tidbuf, 37);
        /* The operator role belongs to the program, never to a partner. */
        who->roles &= ~(unsigned)MB_ROLE_OPERATOR;
    } else {
        /* Without a partner only the operator role means anything. */
        if (!(who->roles & MB_ROLE_OPERATOR))
            return WHY_CLAIMS;
        who->roles = MB_ROLE_OPERATOR;
    }
    return NULL;
}

/* base64url without padding into a malloc'd NUL-terminated buffer. */
static char *b64url_decode(const char *p, size_t n, size_t *out_len)
{
    char *raw = malloc(n * 3 / 4 + 3);
    if (raw == NULL)
        return NULL;
    size_t o = 0;
    unsigned acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = p[i];
        int v = ch >= 'A' && ch <= 'Z'   ? ch - 'A'
                : ch >= 'a' && ch <= 'z' ? ch - 'a' + 26
                : ch >= '0' && ch <= '9' ? ch - '0' + 52
                : ch == '-'              ? 62
                : ch == '_'              ? 63
                                         : -1;
        if (v < 0) {
            free(raw);
            return NULL;
        }
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            raw[o++] = (char)(acc >> bits);
        }
    }
    raw[o] = '\0';
    *out_len = o;
    return raw;
}

static const struct {
    const char *name;
    unsigned bit;
    jwt_alg_t alg;
} algs[] = {
    {"HS256", MB_ALGBIT_HS256, JWT_ALG_HS256}, {"RS256", MB_ALGBIT_RS256, JWT_ALG_RS256},
    {"RS384", MB_ALGBIT_RS384, JWT_ALG_RS384}, {"RS512", MB_ALGBIT_RS512, JWT_ALG_RS512},
    {"ES256", MB_ALGBIT_ES256, JWT_ALG_ES256}, {"ES384", MB_ALGBIT_ES384, JWT_ALG_ES384},
    {"ES512", MB_ALGBIT_ES512, JWT_ALG_ES512},
};

/* The token's header, read before any key is chosen: its alg must be one we
 * accept (libjwt takes it from the token), its kid picks the JWKS key, and
 * any "crit" refuses it (RFC 7515 §4.1.11: this service understands no
 * extension). */
static const char *read_header(const mb_config *cfg, const char *token, unsigned *alg_bit,
                               jwt_alg_t *alg, char *kid, size_t kidlen)
{
    size_t hl = (size_t)(strchr(token, '.') - token), n = 0;
    char *raw = b64url_decode(token, hl, &n);
    json_t *h = raw ? json_loadb(raw, n, JSON_REJECT_DUPLICATES, NULL) : NULL;
    free(raw);
    const char *why = NULL;
    json_t *a = json_object_get(h, "alg"), *k = json_object_get(h, "kid");
    unsigned accepted = cfg->jwt_algs                  ? cfg->jwt_algs
                        : cfg->jwt_alg == MB_ALG_RS256 ? MB_ALGBIT_RS256
                                                       : MB_ALGBIT_HS256;
    *alg_bit = 0;
    if (!json_is_object(h)) {
        why = WHY_MALFORMED;
    } else if (json_object_get(h, "crit") != NULL) {
        why = WHY_CRIT;
    } else if (!json_is_string(a)) {
        why = WHY_ALG;
    } else {
        for (size_t i = 0; i < sizeof(algs) / sizeof(algs[0]); i++)
            if (strcmp(algs[i].name, json_string_value(a)) == 0) {
                *alg_bit = algs[i].bit;
                *alg = algs[i].alg;
            }
        if ((*alg_bit & accepted) == 0)
            why = WHY_ALG;
    }
    kid[0] = '\0';
    if (why == NULL && k != NULL) {
        if (json_is_string(k) && json_string_length(k) > 0 && json_string_length(k) < kidlen &&
            memchr(json_string_value(k), 0, json_string_length(k)) == NULL)
            memcpy(kid, json_string_value(k), json_string_length(k) + 1);
        else
            why = cfg->jwks_url ? WHY_KID_UNKNOWN : NULL;
    }
    json_decref(h);
    return why;
}

/* The key that must have signed the token: the configured one, or the JWKS
 * key its kid names (one refetch of the JWKS when the kid is unknown). */
static const char *pick_key(const mb_config *cfg, const char *kid, unsigned alg_bit,
                            unsigned char **key, size_t *key_len, bool *owned)
{
    *owned = false;
    if (cfg->jwks_url == NULL) {
        *key = cfg->jwt_key;
        *key_len = cfg->jwt_key_len;
        return NULL;
    }
    if (kid[0] == '\0')
        return WHY_KID_MISSING;
    unsigned key_algs = 0;
    if (!mb_jwks_lookup(kid, &key_algs, key, key_len)) {
        if (mb_jwks_refetch_hook == NULL)
            return WHY_KID_UNKNOWN;
        mb_jwks_refetch_hook();
        if (!mb_jwks_lookup(kid, &key_algs, key, key_len))
            return WHY_KID_UNKNOWN;
    }
    *owned = true;
    /* An RSA key never verifies an ES or HS token, nor a P-256 key an ES384 one. */
    return (key_algs & alg_bit) ? NULL : WHY_KEY_MISMATCH;
}

mb_err mb_auth_check(const mb_config *cfg, const char *authorization, time_t now, mb_principal *who,
                     const char **why_out)
{
    const char *why = WHY_MALFORMED;
    memset(who, 0, sizeof(*who));
    if (authorization == NULL || strncasecmp(authorization, "Bearer ", 7) != 0) {
        why = "Send a bearer token in the Authorization header.";
        goto out;
    }
    const char *token = authorization + 7;
    while (*token == ' ')
        token++;
    size_t len = strlen(token);
    if (len == 0 || len > MB_MAX_TOKEN || !well_formed(token, len))
        goto out;
    unsigned alg_bit = 0;
    jwt_alg_t alg = JWT_ALG_NONE;
    char kid[129];
    why = read_header(cfg, token, &alg_bit, &alg, kid, sizeof(kid));
    if (why != NULL)
        goto out;
    unsigned char *key = NULL;
    size_t key_len = 0;
    bool owned = false;
    why = pick_key(cfg, kid, alg_bit, &key, &key_len, &owned);
    jwt_t *jwt = NULL;
    if (why == NULL) {
        /* never a NULL key: libjwt would accept alg none */
        if (key == NULL || jwt_decode(&jwt, token, key, (int)key_len) != 0 || jwt == NULL ||
            jwt_get_alg(jwt) != alg)
            why = WHY_SIGNATURE;
    }
    if (owned)
        free(key);
    if (why == NULL) {
        char *grants = jwt_get_grants_json(jwt, NULL);
        json_t *claims = grants ? json_loads(grants, JSON_REJECT_DUPLICATES, NULL) : NULL;
        why = claims ? check_claims(cfg, claims, now, who) : WHY_MALFORMED;
        json_decref(claims);
        free(grants);
    }
    jwt_free(jwt);
out:
    if (why_out != NULL)
        *why_out = why;
    if (why != NULL) {
        memset(who, 0, sizeof(*who));
        return MB_E_UNAUTHENTICATED;
    }
    return MB_OK;
}

mb_err mb_auth_verify(const mb_config *cfg, const char *authorization, time_t now,
                      mb_principal *who)
{
    return mb_auth_check(cfg, authorization, now, who, NULL);
}

char *mb_auth_mint(const mb_config *cfg, const char *sub, const char *tid, unsigned role_bits,
                   long ttl_s, time_t now)
{
    if (cfg->jwt_alg != MB_ALG_HS256)
        return NULL;
    json_t *claims = json_pack("{s:s, s:s, s:s, s:I, s:I, s:I}", "sub", sub, "iss", cfg->jwt_issuer,
                               "aud", cfg->jwt_audience, "iat", (json_int_t)now, "nbf",
                               (json_int_t)now, "exp", (json_int_t)(now + ttl_s));
    json_t *rl = json_array();
    for (size_t i = 0; i < sizeof(roles) / sizeof(roles[0]); i++)
        if (role_bits & roles[i].bit)
            json_array_append_new(rl, json_string(roles[i].name));
    json_object_set_new(claims, "roles", rl);
    if (tid != NULL && *tid != '\0')
        json_object_set_new(claims, "tid", json_string(tid));
    char *grants = json_dumps(claims, JSON_COMPACT);
    json_decref(claims);
    char *out = NULL;
    jwt_t *jwt = NULL;
    if (grants != NULL && jwt_new(&jwt) == 0 && jwt_add_grants_json(jwt, grants) == 0 &&
        jwt_set_alg(jwt, JWT_ALG_HS256, cfg->jwt_key, (int)cfg->jwt_key_len) == 0)
        out = jwt_encode_str(jwt);
    jwt_free(jwt);
    free(grants);
    return out;
}
