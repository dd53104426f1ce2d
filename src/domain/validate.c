/* Input validation, cursors and the refund rule: the checks that need
 * neither HTTP nor SQL. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mb_domain.h"

static bool fail(mb_verr *e, const char *field, const char *msg)
{
    snprintf(e->field, sizeof(e->field), "%s", field);
    snprintf(e->message, sizeof(e->message), "%s", msg);
    return false;
}

bool mb_is_uuid(const char *s)
{
    if (s == NULL || strlen(s) != 36)
        return false;
    for (int i = 0; i < 36; i++) {
        char ch = s[i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (ch != '-')
                return false;
        } else if (!isxdigit((unsigned char)ch)) {
            return false;
        }
    }
    return true;
}

bool mb_is_email(const char *s)
{
    size_t len = s ? strlen(s) : 0;
    if (len < 3 || len > 254)
        return false;
    const char *at = strchr(s, '@');
    if (at == NULL || at == s || strchr(at + 1, '@') != NULL)
        return false;
    const char *dot = strchr(at + 1, '.');
    if (dot == NULL || dot == at + 1 || dot[1] == '\0')
        return false;
    for (const char *p = s; *p; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch <= ' ' || ch == 0x7f || ch == '<' || ch == '>' || ch == '"' || ch == ',' ||
            ch == ';' || ch == '\\')
            return false;
    }
    return s[len - 1] != '.';
}

bool mb_is_phone(const char *s)
{
    /* E.164: + then 7 to 15 digits, no leading zero */
    if (s == NULL || s[0] != '+' || s[1] < '1' || s[1] > '9')
        return false;
    size_t n = 0;
    for (const char *p = s + 1; *p; p++, n++)
        if (!isdigit((unsigned char)*p))
            return false;
    return n >= 7 && n <= 15;
}

bool mb_is_lang_tag(const char *s)
{
    /* BCP 47, simplified: 2-3 letter language, then 2-8 alphanumerics parts */
    if (s == NULL)
        return false;
    size_t i = 0;
    while (s[i] >= 'a' && s[i] <= 'z')
        i++;
    if (i < 2 || i > 3)
        return false;
    while (s[i] == '-') {
        size_t j = ++i;
        while (isalnum((unsigned char)s[i]))
            i++;
        if (i - j < 2 || i - j > 8)
            return false;
    }
    return s[i] == '\0' && i <= 35;
}

bool mb_v_known(const json_t *obj, const char *const *names, mb_verr *e)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)obj, key, v)
    {
        bool ok = false;
        for (size_t i = 0; names[i] != NULL; i++)
            if (strcmp(names[i], key) == 0)
                ok = true;
        if (!ok) {
            /* Quote at most 60 bytes of the name, cut between two UTF-8
             * characters: half a character makes the 422 answer unbuildable
             * (jansson refuses invalid UTF-8) and the client got a 500. */
            char field[64];
            size_t n = strnlen(key, 60);
            if (key[n] != '\0')
                while (n > 0 && ((unsigned char)key[n] & 0xC0) == 0x80)
                    n--;
            memcpy(field, key, n);
            field[n] = '\0';
            return fail(e, field, "unknown field");
        }
    }
    return true;
}

static bool utf8_ok(const char *s, size_t len)
{
    /* jansson already rejects invalid UTF-8; refuse control characters */
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch < 0x20 && ch != '\t' && ch != '\n' && ch != '\r')
            return false;
    }
    return true;
}

bool mb_v_str(const json_t *obj, const char *name, bool required, size_t min, size_t max,
              const char **out, mb_verr *e)
{
    json_t *v = json_object_get(obj, name);
    *out = NULL;
    if (v == NULL || json_is_null(v)) {
        if (required)
            return fail(e, name, "is required");
        return true;
    }
    if (!json_is_string(v))
        return fail(e, name, "must be a string");
    size_t len = json_string_length(v);
    const char *s = json_string_value(v);
    if (len < min || len > max) {
        char msg[96];
        snprintf(msg, sizeof(msg), "must be %zu to %zu characters", min, max);
        return fail(e, name, msg);
    }
    if (strlen(s) != len || !utf8_ok(s, len))
        return fail(e, name, "must not contain control characters");
    *out = s;
    return true;
}

bool mb_v_uuid(const json_t *obj, const char *name, bool required, const char **out, mb_verr *e)
{
    if (!mb_v_str(obj, name, required, 36, 36, out, e)) {
        if (json_is_string(json_object_get(obj, name)))
            return fail(e, name, "must be a UUID");
        return false;
    }
    if (*out != NULL && !mb_is_uuid(*out))
        return fail(e, name, "must be a UUID");
    return true;
}

bool mb_v_email(const json_t *obj, const char *name, bool required, const char **out, mb_verr *e)
{
    if (!mb_v_str(obj, name, required, 3, 254, out, e))
        return false;
    if (*out != NULL && !mb_is_email(*out))
        return fail(e, name, "must be an email address");
    return true;
}

bool mb_v_enum(const json_t *obj, const char *name, bool required, const char *const *allowed,
               const char **out, mb_verr *e)
{
    if (!mb_v_str(obj, name, required, 1, 64, out, e))
        return false;
    if (*out == NULL)
        return true;
    for (size_t i = 0; allowed[i] != NULL; i++)
        if (strcmp(allowed[i], *out) == 0)
            return true;
    char msg[160];
    size_t n = (size_t)snprintf(msg, sizeof(msg), "must be one of:");
    for (size_t i = 0; allowed[i] != NULL && n < sizeof(msg); i++)
        n += (size_t)snprintf(msg + n, sizeof(msg) - n, "%s %s", i ? "," : "", allowed[i]);
    *out = NULL;
    return fail(e, name, msg);
}

bool mb_v_int(const json_t *obj, const char *name, bool required, long long min, long long max,
              long long *out, bool *present, mb_verr *e)
{
    json_t *v = json_object_get(obj, name);
    if (present)
        *present = false;
    if (v == NULL || json_is_null(v)) {
        if (required)
            return fail(e, name, "is required");
        return true;
    }
    if (!json_is_integer(v))
        return fail(e, name, "must be an integer");
    long long n = json_integer_value(v);
    if (n < min || n > max) {
        char msg[96];
        snprintf(msg, sizeof(msg), "must be between %lld and %lld", min, max);
        return fail(e, name, msg);
    }
    *out = n;
    if (present)
        *present = true;
    return true;
}

bool mb_v_bool(const json_t *obj, const char *name, bool required, bool *out, bool *present,
               mb_verr *e)
{
    json_t *v = json_object_get(obj, name);
    if (present)
        *present = false;
    if (v == NULL || json_is_null(v)) {
        if (required)
            return fail(e, name, "is required");
        return true;
    }
    if (!json_is_boolean(v))
        return fail(e, name, "must be a boolean");
    *out = json_is_true(v);
    if (present)
        *present = true;
    return true;
}

bool mb_parse_limit(const char *s, int *out)
{
    if (s == NULL || *s == '\0') {
        *out = 50;
        return true;
    }
    int n = 0;
    for (const char *p = s; *p; p++) {
        if (!isdigit((unsigned char)*p) || p - s >= 3)
            return false;
        n = n * 10 + (*p - '0');
    }
    if (n < 1 || n > 200)
        return false;
    *out = n;
    return true;
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

bool mb_cursor_encode(const char *key, char *out, size_t outlen)
{
    size_t len = strlen(key), o = 0;
    for (size_t i = 0; i < len; i += 3) {
        unsigned v = (unsigned char)key[i] << 16;
        size_t n = len - i >= 3 ? 3 : len - i;
        if (n > 1)
            v |= (unsigned char)key[i + 1] << 8;
        if (n > 2)
            v |= (unsigned char)key[i + 2];
        if (o + 5 > outlen)
            return false;
        out[o++] = b64[(v >> 18) & 63];
        out[o++] = b64[(v >> 12) & 63];
        if (n > 1)
            out[o++] = b64[(v >> 6) & 63];
        if (n > 2)
            out[o++] = b64[v & 63];
    }
    out[o] = '\0';
    return true;
}

static int b64val(char ch)
{
    const char *p = ch ? strchr(b64, ch) : NULL;
    return p ? (int)(p - b64) : -1;
}

bool mb_cursor_decode(const char *cursor, char *out, size_t outlen)
{
    size_t len = cursor ? strlen(cursor) : 0, o = 0;
    if (len == 0 || len > 256 || len % 4 == 1)
        return false;
    for (size_t i = 0; i < len; i += 4) {
        size_t n = len - i >= 4 ? 4 : len - i;
        unsigned v = 0;
        for (size_t k = 0; k < 4; k++) {
            int d = k < n ? b64val(cursor[i + k]) : 0;
            if (d < 0)
                return false;
            v = (v << 6) | (unsigned)d;
        }
        char bytes[3] = {(char)(v >> 16), (char)(v >> 8), (char)v};
        for (size_t k = 0; k < n - 1; k++) {
            if (o + 1 >= outlen)
                return false;
            unsigned char ch = (unsigned char)bytes[k];
            if (ch < 0x20 || ch > 0x7e)
                return false;
            out[o++] = (char)ch;
        }
    }
    out[o] = '\0';
    return true;
}

int mb_refund_reasons(long long seconds_since_purchase, bool software_activated, bool active,
                      const char *reasons[3])
{
    int n = 0;
    if (!active)
        reasons[n++] = "purchase-not-active";
    if (seconds_since_purchase > 30LL * 24 * 3600)
        reasons[n++] = "refund-window-expired";
    if (software_activated)
        reasons[n++] = "software-benefits-activated";
    return n;
}
