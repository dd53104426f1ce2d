/* JWT checks. libjwt 1.10 verifies the signature only: the algorithm, the
 * time claims and every other claim are checked here (STYLE field notes). */
#include "mb_auth.h"

#include <jansson.h>
#include <jwt.h>
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

/* Three non-empty base64url segments, nothing else. */
static int well_formed(const char *t, size_t len)
{
    int dots = 0;
    size_t seg = 0;
    for (size_t i = 0; i < len; i++) {
        char ch = t[i];
        if (ch == '.') {
            if (seg == 0)
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
    return dots == 2 && seg > 0;
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

static mb_err check_claims(const mb_config *cfg, json_t *claims, time_t now, mb_principal *who)
{
    long long exp = 0, nbf = 0, iat = 0;
    if (!json_is_object(claims))
        return MB_E_UNAUTHENTICATED;
    /* Arithmetic on now only: exp may be anything up to LLONG_MAX. */
    if (claim_time(claims, "exp", 1, &exp) < 0 || exp <= (long long)now - CLOCK_SKEW_S)
        return MB_E_UNAUTHENTICATED;
    int has = claim_time(claims, "nbf", 0, &nbf);
    if (has < 0 || (has > 0 && nbf > (long long)now + CLOCK_SKEW_S))
        return MB_E_UNAUTHENTICATED;
    has = claim_time(claims, "iat", 0, &iat);
    if (has < 0 || (has > 0 && iat > (long long)now + CLOCK_SKEW_S))
        return MB_E_UNAUTHENTICATED;

    json_t *iss = json_object_get(claims, "iss");
    if (!json_is_string(iss) || strcmp(json_string_value(iss), cfg->jwt_issuer) != 0)
        return MB_E_UNAUTHENTICATED;
    if (!audience_ok(json_object_get(claims, "aud"), cfg->jwt_audience))
        return MB_E_UNAUTHENTICATED;

    json_t *sub = json_object_get(claims, "sub");
    if (!json_is_string(sub))
        return MB_E_UNAUTHENTICATED;
    size_t sublen = json_string_length(sub);
    if (sublen == 0 || sublen >= sizeof(who->sub) || memchr(json_string_value(sub), 0, sublen))
        return MB_E_UNAUTHENTICATED;
    memcpy(who->sub, json_string_value(sub), sublen + 1);

    /* roles: an array of strings; unknown names are ignored, but a token that
     * names only unknown roles is refused rather than read as an employee. */
    json_t *rl = json_object_get(claims, "roles");
    if (!json_is_array(rl))
        return MB_E_UNAUTHENTICATED;
    size_t i, unknown = 0;
    json_t *r;
    who->roles = 0;
    json_array_foreach(rl, i, r)
    {
        if (!json_is_string(r))
            return MB_E_UNAUTHENTICATED;
        unsigned bit = mb_role_bit(json_string_value(r));
        if (bit == 0)
            unknown++;
        who->roles |= bit;
    }
    if (unknown > 0 && who->roles == 0)
        return MB_E_UNAUTHENTICATED;

    json_t *tid = json_object_get(claims, "tid");
    who->tid[0] = '\0';
    if (tid != NULL && !json_is_null(tid)) {
        if (!json_is_string(tid) || json_string_length(tid) != 36)
            return MB_E_UNAUTHENTICATED;
        memcpy(who->tid, json_string_value(tid), 37);
        for (int k = 0; k < 36; k++) {
            char ch = who->tid[k];
            int dash = (k == 8 || k == 13 || k == 18 || k == 23);
            if (dash ? ch != '-' : !((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f')))
                return MB_E_UNAUTHENTICATED;
        }
        /* The operator role belongs to the program, never to a partner. */
        who->roles &= ~(unsigned)MB_ROLE_OPERATOR;
    } else {
        /* Without a partner only the operator role means anything. */
        if (!(who->roles & MB_ROLE_OPERATOR))
            return MB_E_UNAUTHENTICATED;
        who->roles = MB_ROLE_OPERATOR;
    }
    return MB_OK;
}

/* RFC 7515 §4.1.11: the extensions a token lists in "crit" must be
 * understood, and this service understands none: any "crit" refuses it. */
static bool has_crit(jwt_t *jwt)
{
    char *crit = jwt_get_headers_json(jwt, "crit");
    bool present = crit != NULL;
    free(crit);
    return present;
}

mb_err mb_auth_verify(const mb_config *cfg, const char *authorization, time_t now,
                      mb_principal *who)
{
    memset(who, 0, sizeof(*who));
    if (authorization == NULL || strncasecmp(authorization, "Bearer ", 7) != 0)
        return MB_E_UNAUTHENTICATED;
    const char *token = authorization + 7;
    while (*token == ' ')
        token++;
    size_t len = strlen(token);
    if (len == 0 || len > MB_MAX_TOKEN || !well_formed(token, len))
        return MB_E_UNAUTHENTICATED;

    jwt_t *jwt = NULL;
    if (jwt_decode(&jwt, token, cfg->jwt_key, (int)cfg->jwt_key_len) != 0 || jwt == NULL)
        return MB_E_UNAUTHENTICATED;
    jwt_alg_t want = cfg->jwt_alg == MB_ALG_RS256 ? JWT_ALG_RS256 : JWT_ALG_HS256;
    mb_err rc = MB_E_UNAUTHENTICATED;
    if (jwt_get_alg(jwt) == want && !has_crit(jwt)) {
        char *grants = jwt_get_grants_json(jwt, NULL);
        if (grants != NULL) {
            json_t *claims = json_loads(grants, JSON_REJECT_DUPLICATES, NULL);
            rc = check_claims(cfg, claims, now, who);
            json_decref(claims);
            free(grants);
        }
    }
    jwt_free(jwt);
    if (rc != MB_OK)
        memset(who, 0, sizeof(*who));
    return rc;
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
