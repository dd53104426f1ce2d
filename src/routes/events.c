/* GET /v1/partners/{partnerId}/events (DESIGN §4b): the partner's events
 * oldest first, as a page or, with Accept: text/event-stream, as Server-Sent
 * Events that wait for the next ones (src/events/feed.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mb_events.h"
#include "mb_http.h"

#define EVENT_ROLES (MB_ROLE_GLOBAL_ADMIN | MB_ROLE_MPN_PARTNER_ADMIN | MB_ROLE_OPERATOR)
#define KEEPALIVE_MS 15000
#define SSE_BATCH "100"
/* A stream marks its partner every minute; the mark lasts three (sql/021_outbox_write.sql):
 * only then do its partner's writes NOTIFY. */
#define MARK_EVERY_S 60
static const char STREAM_OPENED_SQL[] = "SELECT stream_opened($1::uuid)";

static const char denied[] = "The event feed is available to the Global admin and the MPN "
                             "partner admin. Ask your Global admin.";

static void bad_query(mb_ctx *c, const char *field, const char *message)
{
    mb_reply_problem_x(c, MB_E_VALIDATION,
                       json_pack("{s:[{s:s,s:s}]}", "errors", "field", field, "message", message),
                       "Query '%s': %s.", field, message);
}

/* An event id (digits, as the feed gives them) into its number; false when
 * it is not one. */
static bool parse_id(const char *s, long long *out)
{
    size_t n = strlen(s);
    if (n == 0 || n > 18)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    *out = atoll(s);
    return true;
}

/* types=a,b → "{a,b}" (a text[] parameter); "" when absent. */
static bool parse_types(mb_ctx *c, char *out, size_t outlen)
{
    out[0] = '\0';
    const char *t = mb_query(c, "types");
    if (t == NULL)
        return true;
    size_t o = 0;
    const char *p = t;
    for (;;) {
        const char *e = strchr(p, ',');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        char one[48];
        if (l == 0 || l >= sizeof(one))
            goto bad;
        memcpy(one, p, l);
        one[l] = '\0';
        if (!mb_event_type_known(one) || o + l + 3 >= outlen)
            goto bad;
        o += (size_t)snprintf(out + o, outlen - o, "%c%s", o ? ',' : '{', one);
        if (e == NULL)
            break;
        p = e + 1;
    }
    snprintf(out + o, outlen - o, "}");
    return true;
bad:
    bad_query(c, "types", "a comma-separated list of event types");
    return false;
}

/* --- Server-Sent Events ------------------------------------------------------------------- */

typedef struct {
    char partner[37];
    char types[1024];
    long long last; /* the newest event looked at (sent, or filtered out) */
    bool hello;
    time_t marked; /* when stream_opened last ran for it (CLOCK_MONOTONIC seconds) */
    char *pend;    /* what is still to be written, from off */
    size_t len, off;
} sse;

static void sse_free(void *cls)
{
    sse *s = cls;
    free(s->pend);
    free(s);
    mb_feed_client(-1);
}

static void pend_set(sse *s, char *text, size_t len)
{
    free(s->pend);
    s->pend = text;
    s->len = len;
    s->off = 0;
}

static bool type_wanted(const sse *s, const char *type)
{
    if (s->types[0] == '\0')
        return true;
    size_t l = strlen(type);
    for (const char *p = strstr(s->types, type); p != NULL; p = strstr(p + 1, type))
        if ((p[-1] == '{' || p[-1] == ',') && (p[l] == '}' || p[l] == ','))
            return true;
    return false;
}

static time_t mono_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec;
}

/* Reads the next events after s->last (a pool connection only for this
 * query) into s->pend. Returns how many were read, or -1. */
static int sse_fetch(sse *s)
{
    char after[24];
    snprintf(after, sizeof(after), "%lld", s->last);
    const char *p[] = {s->partner, after, SSE_BATCH};
    mb_db db = {0};
    PGresult *r = NULL;
    mb_err e = MB_OK;
    time_t now = mono_s();
    if (now - s->marked >= MARK_EVERY_S) { /* its own statement: committed before the look */
        e = mb_db_exec(&db, &r, STREAM_OPENED_SQL, 1, p);
        mb_db_clear(&r);
        s->marked = now;
    }
    if (e == MB_OK)
        e = mb_db_exec(&db, &r,
                       "SELECT seq, event_id(seq), type, doc::text FROM event_docs "
                       "WHERE partner_id = $1::uuid AND seq > $2::bigint "
                       "ORDER BY seq LIMIT $3::int",
                       3, p);
    mb_db_release(&db);
    if (e != MB_OK)
        return -1;
    int n = PQntuples(r);
    size_t cap = 0;
    for (int i = 0; i < n; i++)
        cap += (size_t)PQgetlength(r, i, 3) + 96;
    char *out = malloc(cap + 1);
    size_t o = 0;
    for (int i = 0; out != NULL && i < n; i++) {
        s->last = atoll(PQgetvalue(r, i, 0));
        if (type_wanted(s, PQgetvalue(r, i, 2)))
            o += (size_t)snprintf(out + o, cap + 1 - o, "id: %s\nevent: %s\ndata: %s\n\n",
                                  PQgetvalue(r, i, 1), PQgetvalue(r, i, 2), PQgetvalue(r, i, 3));
    }
    mb_db_clear(&r);
    if (out == NULL)
        return -1;
    pend_set(s, out, o);
    return n;
}

static ssize_t sse_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    sse *s = cls;
    for (;;) {
        if (s->off < s->len) {
            size_t n = s->len - s->off < max ? s->len - s->off : max;
            memcpy(buf, s->pend + s->off, n);
            s->off += n;
            return (ssize_t)n;
        }
        if (!s->hello) {
            s->hello = true;
            pend_set(s, strdup(": events\nretry: 2000\n\n"), 22);
            if (s->pend == NULL)
                return U_STREAM_END;
            continue;
        }
        if (mb_http_draining())
            return U_STREAM_END;
        unsigned long epoch = mb_feed_epoch();
        int got = sse_fetch(s);
        if (got < 0)
            return U_STREAM_END; /* the client comes back with Last-Event-ID */
        if (got > 0)
            continue;
        /* Nothing new: wait, in short steps so that a drain ends the stream. */
        int w = 0;
        for (int waited = 0; w == 0 && waited < KEEPALIVE_MS && !mb_http_draining(); waited += 1000)
            w = mb_feed_wait(s->partner, s->last, epoch, 1000);
        if (w < 0 || mb_http_draining())
            return U_STREAM_END;
        if (w == 0)
            pend_set(s, strdup(":\n\n"), 3);
    }
}

static bool wants_stream(mb_ctx *c)
{
    const char *a = mb_header(c, "Accept");
    return a != NULL && strstr(a, "text/event-stream") != NULL;
}

static void events_stream(mb_ctx *c, long long after, const char *types)
{
    if (!mb_partner_gate(c, c->param[0], false, NULL))
        return;
    /* The mark first, committed before the stream's first look (sql/021 says why nothing
     * committed in between is missed). */
    const char *mp[] = {c->param[0]};
    PGresult *mr = NULL;
    mb_err me = mb_db_exec(&c->db, &mr, STREAM_OPENED_SQL, 1, mp);
    mb_db_clear(&mr);
    if (me != MB_OK) {
        mb_reply_err(c, me);
        return;
    }
    sse *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        mb_reply_err(c, MB_E_INTERNAL);
        return;
    }
    snprintf(s->partner, sizeof(s->partner), "%s", c->param[0]);
    snprintf(s->types, sizeof(s->types), "%s", types);
    s->last = after;
    s->marked = mono_s();
    mb_feed_client(1);
    /* The gate's connection goes back now: a waiting client holds none. */
    mb_db_release(&c->db);
    mb_http_long_lived(c, 0);
    if (ulfius_set_stream_response(c->resp, 200, sse_read, sse_free, U_STREAM_SIZE_UNKNOWN,
                                   16 * 1024, s) != U_OK) {
        sse_free(s);
        mb_reply_err(c, MB_E_INTERNAL);
        return;
    }
    mb_set_header(c, "Content-Type", "text/event-stream");
    mb_set_header(c, "Cache-Control", "no-store");
    mb_set_header(c, "X-Accel-Buffering", "no");
}

/* --- the page ------------------------------------------------------------------------------ */

static void events_list(mb_ctx *c)
{
    if (!(c->who.roles & EVENT_ROLES)) {
        mb_reply_problem(c, MB_E_FORBIDDEN_ROLE, "%s", denied);
        return;
    }
    int limit;
    char cur[64];
    if (!mb_page_args(c, &limit, cur, sizeof(cur), true))
        return;
    long long after = 0;
    const char *a = mb_query(c, "after");
    if (a != NULL && !parse_id(a, &after)) {
        bad_query(c, "after", "an event id");
        return;
    }
    const char *last_id = mb_header(c, "Last-Event-ID");
    bool stream = wants_stream(c);
    if (stream && last_id != NULL && last_id[0] != '\0' && !parse_id(last_id, &after)) {
        mb_reply_problem(c, MB_E_VALIDATION, "Header 'Last-Event-ID' is not an event id.");
        return;
    }
    if (cur[0] != '\0')
        after = atoll(cur);
    char types[1024];
    if (!parse_types(c, types, sizeof(types)))
        return;
    if (stream) {
        events_stream(c, after, types);
        return;
    }
    char after_s[24];
    snprintf(after_s, sizeof(after_s), "%lld", after);
    const char *p[] = {c->param[0], after_s, types[0] ? types : NULL};
    mb_reply_gated_list(c, false, NULL,
                        "SELECT " MB_GATE_COLUMN ", d.doc, d.seq::text FROM (SELECT doc, seq "
                        "FROM event_docs WHERE partner_id = $1::uuid AND seq > $2::bigint "
                        "AND ($3::text[] IS NULL OR type = ANY ($3::text[])) "
                        "ORDER BY seq LIMIT $4::int) d ORDER BY d.seq",
                        3, p, limit);
}

const mb_route mb_routes_events[] = {
    {"GET", "/v1/partners/:partnerId/events", events_list, 0},
    {NULL, NULL, NULL, 0},
};
