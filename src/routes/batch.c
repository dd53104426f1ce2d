/* Batch seat assignment (issue 14): the Global admin adds and removes many
 * Visual Studio seats in one request, as JSON ({add, remove, dry_run, atomic})
 * or as text/csv (columns email,op; dry_run and atomic as query parameters).
 *
 * Every row gets its own result: one bad row never hides the others'. The
 * benefit row is locked FOR UPDATE for the whole batch, as a single assignment
 * locks it (src/routes/seats.c), so batches and single assignments on any
 * number of processes take turns and the seat count checked here is exact;
 * the CHECK (used <= quantity) under the seat trigger stays the last word.
 * Rows are checked before they are written, so no statement fails halfway.
 * Removes run before adds (a batch can reassign a seat). A dry run does the
 * work in a savepoint and rolls it back; atomic: true answers 409
 * batch-failed, and the dispatcher rolls everything back, when a row fails. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mb_events.h"
#include "mb_http.h"
#include "mb_store.h"
#include "refund.h"

#define BATCH_MAX_ROWS 1000
#define VALUE_MAX 254

typedef struct {
    char value[VALUE_MAX + 1]; /* user id or email as given */
    bool remove;
    int line;  /* CSV line, or -1 */
    int index; /* position in its JSON array, or -1 */
    /* the result */
    char user_id[40];
    int status;
    const char *code;
    char detail[160];
} batch_row;

typedef struct {
    batch_row *rows;
    size_t n, cap;
} batch;

static void row_fail(batch_row *r, mb_err e, const char *detail)
{
    r->status = mb_err_status(e);
    r->code = mb_err_code(e);
    snprintf(r->detail, sizeof(r->detail), "%s", detail);
}

static batch_row *row_add(batch *b, const char *value, size_t len, bool remove, int line, int index)
{
    if (b->n == b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 64;
        batch_row *r = realloc(b->rows, cap * sizeof(*r));
        if (r == NULL)
            return NULL;
        b->rows = r;
        b->cap = cap;
    }
    batch_row *r = &b->rows[b->n++];
    memset(r, 0, sizeof(*r));
    r->remove = remove;
    r->line = line;
    r->index = index;
    if (len > VALUE_MAX || strlen(value) != len) {
        row_fail(r, MB_E_VALIDATION, "Give a user id or an email address (at most 254 bytes).");
        return r;
    }
    memcpy(r->value, value, len);
    r->value[len] = '\0';
    return r;
}

/* --- input ---------------------------------------------------------------------------------- */

static bool rows_from_json(mb_ctx *c, batch *b, bool *dry_run, bool *atomic)
{
    json_t *body = mb_body(c, false);
    if (body == NULL)
        return false;
    static const char *const known[] = {"add", "remove", "dry_run", "atomic", NULL};
    mb_verr e;
    bool ok = mb_v_known(body, known, &e) && mb_v_bool(body, "dry_run", false, dry_run, NULL, &e) &&
              mb_v_bool(body, "atomic", false, atomic, NULL, &e);
    static const char *const lists[] = {"add", "remove"};
    size_t total = 0;
    for (int l = 0; ok && l < 2; l++) {
        json_t *a = json_object_get(body, lists[l]);
        if (a == NULL || json_is_null(a))
            continue;
        snprintf(e.field, sizeof(e.field), "%s", lists[l]);
        if (!json_is_array(a)) {
            snprintf(e.message, sizeof(e.message), "must be an array of user ids or emails");
            ok = false;
            break;
        }
        size_t i;
        json_t *v;
        json_array_foreach(a, i, v)
        {
            if (!json_is_string(v)) {
                snprintf(e.field, sizeof(e.field), "%s[%zu]", lists[l], i);
                snprintf(e.message, sizeof(e.message), "must be a user id or an email");
                ok = false;
                break;
            }
            if (row_add(b, json_string_value(v), json_string_length(v), l == 1, -1, (int)i) ==
                NULL) {
                json_decref(body);
                mb_reply_err(c, MB_E_INTERNAL);
                return false;
            }
        }
        total += json_array_size(a);
    }
    if (ok && (total < 1 || total > BATCH_MAX_ROWS)) {
        snprintf(e.field, sizeof(e.field), "add");
        snprintf(e.message, sizeof(e.message), "add and remove must hold 1 to %d rows together",
                 BATCH_MAX_ROWS);
        ok = false;
    }
    json_decref(body);
    if (!ok)
        mb_reply_verr(c, &e);
    return ok;
}

/* One RFC 4180 record from s (len bytes) at *pos: fields into f[0..max), their
 * count into *nf (fields past max are counted, not kept). CRLF, LF and CR end
 * a record; "" is a quote inside a quoted field. *line advances by the line
 * ends consumed. False for a quote left open. */
static bool csv_record(const char *s, size_t len, size_t *pos, char f[][VALUE_MAX + 2], int max,
                       int *nf, int *line)
{
    size_t p = *pos;
    int n = 0;
    for (;;) {
        char buf[VALUE_MAX + 2];
        size_t o = 0;
        bool quoted = p < len && s[p] == '"';
        if (quoted) {
            p++;
            for (;;) {
                if (p >= len)
                    return false;
                if (s[p] == '"' && p + 1 < len && s[p + 1] == '"') {
                    if (o < sizeof(buf) - 1)
                        buf[o++] = '"';
                    p += 2;
                } else if (s[p] == '"') {
                    p++;
                    break;
                } else {
                    if (s[p] == '\n' || (s[p] == '\r' && !(p + 1 < len && s[p + 1] == '\n')))
                        (*line)++;
                    if (o < sizeof(buf) - 1)
                        buf[o++] = s[p];
                    p++;
                }
            }
        }
        /* unquoted (or text after a closing quote, kept as is) */
        while (p < len && s[p] != ',' && s[p] != '\n' && s[p] != '\r') {
            if (o < sizeof(buf) - 1)
                buf[o++] = s[p];
            p++;
        }
        buf[o] = '\0';
        if (n < max)
            memcpy(f[n], buf, o + 1);
        n++;
        if (p < len && s[p] == ',') {
            p++;
            continue;
        }
        break;
    }
    if (p < len && s[p] == '\r')
        p++;
    if (p < len && s[p] == '\n')
        p++;
    (*line)++;
    *pos = p;
    *nf = n;
    return true;
}

static void trim(char *s)
{
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = '\0';
    size_t k = strspn(s, " \t");
    memmove(s, s + k, n - k + 1);
}

static void csv_problem(mb_ctx *c, int line, const char *fmt, const char *what)
{
    char field[32];
    snprintf(field, sizeof(field), "line %d", line);
    mb_reply_problem_x(c, MB_E_VALIDATION,
                       json_pack("{s:[{s:s,s:s}]}", "errors", "field", field, "message", what), fmt,
                       line, what);
}

static bool query_bool(mb_ctx *c, const char *name, bool *out)
{
    const char *v = mb_query(c, name);
    *out = false;
    if (v == NULL || strcmp(v, "false") == 0)
        return true;
    if (strcmp(v, "true") == 0) {
        *out = true;
        return true;
    }
    mb_reply_problem_x(
        c, MB_E_VALIDATION,
        json_pack("{s:[{s:s,s:s}]}", "errors", "field", name, "message", "true or false"),
        "Query '%s' must be true or false.", name);
    return false;
}

static bool rows_from_csv(mb_ctx *c, batch *b, bool *dry_run, bool *atomic)
{
    if (!query_bool(c, "dry_run", dry_run) || !query_bool(c, "atomic", atomic))
        return false;
    const char *s = c->req->binary_body;
    size_t len = c->req->binary_body_length, pos = 0;
    if (len >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0)
        pos = 3; /* a UTF-8 byte order mark, as spreadsheets write */
    bool header = false;
    int line = 1;
    while (pos < len) {
        char f[2][VALUE_MAX + 2];
        int nf = 0, start = line;
        if (!csv_record(s, len, &pos, f, 2, &nf, &line)) {
            csv_problem(c, start, "Line %d: %s.", "a quoted field is never closed");
            return false;
        }
        if (nf == 1 && f[0][0] == '\0')
            continue; /* an empty line */
        for (int i = 0; i < 2 && i < nf; i++)
            trim(f[i]);
        if (!header) {
            if (nf != 2 || strcasecmp(f[0], "email") != 0 || strcasecmp(f[1], "op") != 0) {
                csv_problem(c, start, "Line %d: %s.", "the header must be email,op");
                return false;
            }
            header = true;
            continue;
        }
        if (b->n >= BATCH_MAX_ROWS) {
            csv_problem(c, start, "Line %d: %s.", "a batch takes at most 1000 rows");
            return false;
        }
        bool remove = nf == 2 && strcasecmp(f[1], "remove") == 0;
        batch_row *r = row_add(b, f[0], strlen(f[0]), remove, start, -1);
        if (r == NULL) {
            mb_reply_err(c, MB_E_INTERNAL);
            return false;
        }
        if (nf != 2)
            row_fail(r, MB_E_VALIDATION, "A row has two columns: email,op.");
        else if (!remove && strcasecmp(f[1], "add") != 0)
            row_fail(r, MB_E_VALIDATION, "Column 'op' must be add or remove.");
    }
    if (!header || b->n == 0) {
        csv_problem(c, line, "Line %d: %s.",
                    header ? "no rows after the header" : "the header must be email,op");
        return false;
    }
    return true;
}

/* --- work ------------------------------------------------------------------------------------ */

/* Resolves the row's user in the partner, locked against deletion until the
 * transaction ends. False (and the row's result) when there is none. */
static bool resolve(mb_ctx *c, batch_row *r, mb_err *fatal)
{
    bool uuid = mb_is_uuid(r->value);
    if (!uuid && !mb_is_email(r->value)) {
        row_fail(r, MB_E_VALIDATION, "Give a user id or an email address.");
        return false;
    }
    const char *p[] = {c->param[0], uuid ? r->value : NULL, uuid ? NULL : r->value};
    PGresult *res = NULL;
    *fatal = mb_db_exec(&c->db, &res,
                        "SELECT id::text FROM users WHERE partner_id = $1::uuid "
                        "AND (id = $2::uuid OR lower(email) = lower($3)) FOR KEY SHARE",
                        3, p);
    if (*fatal != MB_OK)
        return false;
    bool found = PQntuples(res) == 1;
    if (found)
        snprintf(r->user_id, sizeof(r->user_id), "%s", PQgetvalue(res, 0, 0));
    mb_db_clear(&res);
    if (!found)
        row_fail(r, MB_E_USER_NOT_IN_PARTNER,
                 "Not a user of this partner: add the user in Account settings first.");
    return found;
}

static mb_err apply_row(mb_ctx *c, const mb_benefit *b, batch_row *r)
{
    mb_err e = MB_OK;
    if (r->status != 0 || !resolve(c, r, &e))
        return e;
    const char *p[] = {b->id, r->user_id, mb_actor(c)};
    PGresult *res = NULL;
    if (r->remove) {
        e = mb_db_exec(&c->db, &res,
                       "DELETE FROM seat_assignments WHERE benefit_id = $1::uuid "
                       "AND user_id = $2::uuid RETURNING 1",
                       2, p);
        if (e != MB_OK)
            return e;
        bool removed = PQntuples(res) == 1;
        mb_db_clear(&res);
        if (!removed) {
            row_fail(r, MB_E_NOT_FOUND, "That user holds no seat of this benefit.");
            return MB_OK;
        }
        r->status = 204;
    } else {
        e = mb_db_exec(&c->db, &res,
                       "SELECT EXISTS (SELECT 1 FROM seat_assignments WHERE benefit_id = $1::uuid "
                       "AND user_id = $2::uuid), (SELECT used < quantity FROM benefits "
                       "WHERE id = $1::uuid)",
                       2, p);
        if (e != MB_OK)
            return e;
        bool held = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
        bool room = strcmp(PQgetvalue(res, 0, 1), "t") == 0;
        mb_db_clear(&res);
        if (held) {
            row_fail(r, MB_E_ALREADY_ASSIGNED, "This user already holds a seat of this benefit.");
            return MB_OK;
        }
        if (!room) {
            row_fail(r, MB_E_NO_SEATS, "Every seat of this benefit is assigned.");
            return MB_OK;
        }
        e = mb_db_exec(&c->db, NULL,
                       "INSERT INTO seat_assignments (benefit_id, user_id, assigned_by) "
                       "VALUES ($1::uuid, $2::uuid, $3)",
                       3, p);
        if (e != MB_OK)
            return e;
        r->status = 201;
    }
    /* one audit row and one event per applied row, as a single assignment writes */
    const char *type = r->remove ? "seat.removed" : "seat.assigned";
    char details[96];
    snprintf(details, sizeof(details), "{\"user_id\":\"%s\",\"batch\":true}", r->user_id);
    e = mb_audit(c, c->param[0], type, "benefit", b->id, details);
    if (e != MB_OK)
        return e;
    snprintf(details, sizeof(details), "{\"user_id\":\"%s\"}", r->user_id);
    return mb_event(&c->db, c->param[0], type, "benefit", b->id, c->request_id, details);
}

static json_t *results_json(const batch *b, size_t *failed)
{
    json_t *list = json_array();
    *failed = 0;
    for (size_t i = 0; i < b->n; i++) {
        const batch_row *r = &b->rows[i];
        bool email = !mb_is_uuid(r->value);
        json_t *o =
            json_pack("{s:s?, s:s, s:i, s:s?}", "user_id", r->user_id[0] ? r->user_id : NULL, "op",
                      r->remove ? "remove" : "add", "status", r->status, "code", r->code);
        if (o == NULL)
            continue;
        if (email)
            json_object_set_new(o, "email", json_string(r->value));
        if (r->line > 0)
            json_object_set_new(o, "line", json_integer(r->line));
        if (r->index >= 0)
            json_object_set_new(o, "index", json_integer(r->index));
        if (r->detail[0])
            json_object_set_new(o, "detail", json_string(r->detail));
        if (r->status >= 400)
            (*failed)++;
        json_array_append_new(list, o);
    }
    return list;
}

/* POST /v1/partners/{partnerId}/benefits/{benefitId}/assignments/batch */
static void batch_assign(mb_ctx *c)
{
    if (!mb_require(c, MB_ACT_ASSIGN_OTHERS) || !mb_partner_gate(c, c->param[0], true, NULL))
        return;
    const char *ct = mb_header(c, "Content-Type");
    bool csv = ct != NULL && strncasecmp(ct, "text/csv", 8) == 0 &&
               (ct[8] == '\0' || ct[8] == ';' || ct[8] == ' ');
    batch b = {0};
    bool dry_run = false, atomic = false;
    if (!(csv ? rows_from_csv(c, &b, &dry_run, &atomic) : rows_from_json(c, &b, &dry_run, &atomic)))
        goto out;
    mb_benefit ben;
    if (!mb_load_url_benefit(c, true, &ben))
        goto out;
    if (strcmp(ben.category, "visual_studio") != 0) {
        mb_reply_problem_x(c, MB_E_VALIDATION,
                           json_pack("{s:[{s:s,s:s}]}", "errors", "field", "benefitId", "message",
                                     "has no seats to assign in bulk"),
                           "Batch assignment is for Visual Studio subscriptions; usage-based cloud "
                           "is activated by assigning yourself, and this benefit is %s.",
                           ben.category);
        goto out;
    }
    if (mb_benefit_closed(&ben)) {
        mb_reply_problem(c, MB_E_BENEFIT_EXPIRED,
                         "This benefit is %s; renew the package to assign seats again.",
                         ben.status);
        goto out;
    }
    if (!mb_no_pending_cancellation(c, ben.purchase_id))
        goto out;
    mb_err e = dry_run ? mb_db_exec(&c->db, NULL, "SAVEPOINT batch_dry_run", 0, NULL) : MB_OK;
    for (int pass = 0; pass < 2 && e == MB_OK; pass++) /* removes, then adds */
        for (size_t i = 0; i < b.n && e == MB_OK; i++)
            if (b.rows[i].remove == (pass == 0))
                e = apply_row(c, &ben, &b.rows[i]);
    /* the seat trigger keeps the benefit's status (sql/016_seat_status.sql) */
    if (e == MB_OK && dry_run)
        e = mb_db_exec(&c->db, NULL, "ROLLBACK TO SAVEPOINT batch_dry_run", 0, NULL);
    if (e != MB_OK) {
        mb_reply_err(c, e);
        goto out;
    }
    size_t failed = 0;
    json_t *results = results_json(&b, &failed);
    bool applied = !dry_run && !(atomic && failed > 0);
    char details[160];
    snprintf(details, sizeof(details),
             "{\"rows\":%zu,\"failed\":%zu,\"dry_run\":%s,\"atomic\":%s,\"csv\":%s}", b.n, failed,
             dry_run ? "true" : "false", atomic ? "true" : "false", csv ? "true" : "false");
    if (atomic && failed > 0 && !dry_run) {
        /* Not 2xx: the dispatcher rolls the whole batch back. */
        mb_reply_problem_x(c, MB_E_BATCH_FAILED,
                           json_pack("{s:o, s:b}", "results", results, "applied", 0),
                           "%zu of %zu rows failed and the batch is atomic: nothing was applied "
                           "(see 'results').",
                           failed, b.n);
        goto out;
    }
    e = mb_audit(c, c->param[0], dry_run ? "seats.batch_previewed" : "seats.batch", "benefit",
                 ben.id, details);
    if (e != MB_OK) {
        json_decref(results);
        mb_reply_err(c, e);
        goto out;
    }
    json_t *doc =
        json_pack("{s:s, s:b, s:b, s:b, s:{s:I, s:I}, s:o}", "benefit_id", ben.id, "dry_run",
                  dry_run, "atomic", atomic, "applied", applied, "summary", "succeeded",
                  (json_int_t)(b.n - failed), "failed", (json_int_t)failed, "results", results);
    mb_reply_jansson(c, 200, doc);
out:
    free(b.rows);
}

const mb_route mb_routes_batch[] = {
    {"POST", "/v1/partners/:partnerId/benefits/:benefitId/assignments/batch", batch_assign,
     MB_R_TX | MB_R_BODY},
    {NULL, NULL, NULL, 0},
};
