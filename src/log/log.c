/* Logs: Yder's console lines, or with LOG_FORMAT=json one JSON object a line
 * (Yder's messages through its callback, and the access log), and the W3C
 * trace context that ties a request's lines to its caller's trace. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>
#include <yder.h>

#include "mb_log.h"

static bool json_mode;

static void stamp_now(char out[32])
{
    static _Thread_local time_t at;
    static _Thread_local char stamp[32];
    time_t now = time(NULL);
    if (now != at) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ", &tm);
        at = now;
    }
    memcpy(out, stamp, 32);
}

/* Appends s to out as the inside of a JSON string; control characters and
 * invalid bytes become '?', so a line is always one line of valid JSON. */
static size_t json_escape(char *out, size_t cap, const char *s)
{
    size_t o = 0;
    for (; s != NULL && *s && o + 7 < cap; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') {
            out[o++] = '\\';
            out[o++] = (char)ch;
        } else if (ch < 0x20 || ch == 0x7f || ch >= 0x80) {
            out[o++] = '?'; /* no UTF-8 check here: logs stay ASCII */
        } else {
            out[o++] = (char)ch;
        }
    }
    out[o] = '\0';
    return o;
}

static void write_line(bool error, const char *line, size_t len)
{
    ssize_t w = write(error ? STDERR_FILENO : STDOUT_FILENO, line, len);
    (void)w; /* nowhere to report a failing log */
}

static void yder_json(void *cls, const char *app, const time_t date, const unsigned long level,
                      const char *message)
{
    (void)cls;
    (void)date;
    static const char *const names[] = {"none", "error", "warning", "info", "debug"};
    unsigned long l = level;
    const char *name = l == Y_LOG_LEVEL_ERROR     ? names[1]
                       : l == Y_LOG_LEVEL_WARNING ? names[2]
                       : l == Y_LOG_LEVEL_INFO    ? names[3]
                                                  : names[4];
    char stamp[32], msg[1024], appe[64], line[1280];
    stamp_now(stamp);
    json_escape(msg, sizeof(msg), message);
    json_escape(appe, sizeof(appe), app);
    int n = snprintf(line, sizeof(line),
                     "{\"time\":\"%s\",\"level\":\"%s\",\"app\":\"%s\",\"msg\":\"%s\"}\n", stamp,
                     name, appe, msg);
    if (n > 0)
        write_line(level == Y_LOG_LEVEL_ERROR, line,
                   (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
}

int mb_log_init(bool json, const char *message)
{
    json_mode = json;
    if (!json)
        return y_init_logs("mpn-benefits", Y_LOG_MODE_CONSOLE, Y_LOG_LEVEL_INFO, NULL, message)
                   ? 0
                   : -1;
    if (!y_init_logs("mpn-benefits", Y_LOG_MODE_CALLBACK, Y_LOG_LEVEL_INFO, NULL, NULL))
        return -1;
    return y_set_logs_callback(yder_json, NULL, message) ? 0 : -1;
}

void mb_log_access(const mb_access *a)
{
    char stamp[32];
    stamp_now(stamp);
    bool error = a->status >= 500;
    char line[768];
    int n;
    if (json_mode) {
        char actor[300], route[200];
        json_escape(actor, sizeof(actor), a->actor);
        json_escape(route, sizeof(route), a->route);
        n = snprintf(
            line, sizeof(line),
            "{\"time\":\"%s\",\"level\":\"%s\",\"app\":\"mpn-benefits\",\"msg\":\"request\","
            "\"request_id\":\"%s\",\"trace_id\":\"%s\",\"method\":\"%s\",\"route\":\"%s\","
            "\"status\":%ld,\"ms\":%.2f,\"db_trips\":%u,\"actor\":\"%s\"%s%s%s}\n",
            stamp, error ? "error" : "info", a->request_id, a->trace_id, a->method, route,
            a->status, a->ms, a->db_trips, actor, a->code ? ",\"code\":\"" : "",
            a->code ? a->code : "", a->code ? "\"" : "");
    } else {
        n = snprintf(line, sizeof(line),
                     "%s - mpn-benefits %s: request_id=%s trace_id=%s method=%s route=%s "
                     "status=%ld ms=%.2f db_trips=%u actor=%s%s%s\n",
                     stamp, error ? "ERROR" : "INFO", a->request_id, a->trace_id, a->method,
                     a->route, a->status, a->ms, a->db_trips, a->actor, a->code ? " code=" : "",
                     a->code ? a->code : "");
        /* a token's sub may hold anything: one line, whatever it holds */
        for (int i = 0; i < n - 1 && i < (int)sizeof(line) - 1; i++)
            if ((unsigned char)line[i] < 0x20 || line[i] == 0x7f)
                line[i] = '?';
    }
    if (n <= 0)
        return;
    size_t len = (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1;
    line[len - 1] = '\n';
    write_line(error, line, len);
}

static bool lower_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

static bool all_zero(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != '0')
            return false;
    return true;
}

static void random_hex(char *out, size_t bytes)
{
    static _Thread_local uint64_t st;
    static const char hx[] = "0123456789abcdef";
    if (st == 0 && getrandom(&st, sizeof(st), 0) != (ssize_t)sizeof(st))
        st = (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)&st;
    for (size_t i = 0; i < bytes; i++) {
        st ^= st << 13; /* xorshift64: ids need to be unique, not secret */
        st ^= st >> 7;
        st ^= st << 17;
        unsigned char b = (unsigned char)(st >> 24);
        if (i == 0 && b == 0)
            b = 1; /* never all zeros */
        out[2 * i] = hx[b >> 4];
        out[2 * i + 1] = hx[b & 15];
    }
    out[2 * bytes] = '\0';
}

void mb_trace_context(const char *traceparent, mb_trace *t)
{
    /* version 00: "00-" 32 hex "-" 16 hex "-" 2 hex; a later version may add
     * fields after these (W3C Trace Context, "future versions"). */
    const char *p = traceparent;
    size_t n = p != NULL ? strlen(p) : 0;
    bool ok = n >= 55 && lower_hex(p, 2) && !(p[0] == 'f' && p[1] == 'f') && p[2] == '-' &&
              lower_hex(p + 3, 32) && !all_zero(p + 3, 32) && p[35] == '-' &&
              lower_hex(p + 36, 16) && !all_zero(p + 36, 16) && p[52] == '-' &&
              lower_hex(p + 53, 2);
    if (ok && n > 55) /* version 00 has exactly these fields; later ones may add more */
        ok = !all_zero(p, 2) && p[55] == '-';
    if (ok) {
        memcpy(t->trace_id, p + 3, 32);
        t->trace_id[32] = '\0';
        memcpy(t->flags, p + 53, 2);
        t->flags[2] = '\0';
    } else {
        random_hex(t->trace_id, 16);
        memcpy(t->flags, "01", 3);
    }
    random_hex(t->span_id, 8);
    snprintf(t->header, sizeof(t->header), "00-%s-%s-%s", t->trace_id, t->span_id, t->flags);
}
