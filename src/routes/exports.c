/* CSV exports (issue 14): `Accept: text/csv` on the lists of users, seat
 * assignments, benefits and audit events answers every row (not paged) with
 * the same filters as the JSON list, as RFC 4180 CSV (UTF-8, a header row,
 * CRLF), each value escaped against spreadsheet formula injection (csv_cell()
 * in sql/005_catalog.sql: a leading = + - @ tab or CR gets a ').
 *
 * The answer is streamed: the handler checks the request and the partner
 * gate, then Ulfius pulls the body through export_read(), which reads 1000
 * rows at a time in key order (a keyset cursor) on a pooled connection taken
 * for that chunk only (the key condition is written so that the index serves
 * it in the prepared statement's generic plan: each chunk starts where the last
 * ended instead of scanning from the top). Memory stays at one chunk whatever the row count, and
 * a long export never holds a database connection between chunks. Rows
 * committed while an export runs may or may not be in it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mb_http.h"
#include "mb_store.h"

#define EXPORT_PARAMS 7

typedef struct {
    mb_db db;
    const char *sql; /* rows (line, key); $1..$n the filters, $n+1 the key after */
    char *param[EXPORT_PARAMS];
    int n;
    char after[64];
    char *buf;
    size_t len, off;
    bool done;
} export_state;

static void export_free(void *u)
{
    export_state *s = u;
    mb_db_release(&s->db);
    for (int i = 0; i < s->n; i++)
        free(s->param[i]);
    free(s->buf);
    free(s);
}

/* Reads the next chunk into buf. False on a database error. */
static bool export_fill(export_state *s)
{
    const char *p[EXPORT_PARAMS + 1];
    for (int i = 0; i < s->n; i++)
        p[i] = s->param[i];
    p[s->n] = s->after[0] ? s->after : NULL;
    PGresult *r = NULL;
    mb_err e = mb_db_exec(&s->db, &r, s->sql, s->n + 1, p);
    mb_db_release(&s->db); /* the connection serves others between chunks */
    if (e != MB_OK)
        return false;
    int rows = PQntuples(r);
    size_t need = 0;
    for (int i = 0; i < rows; i++)
        need += (size_t)PQgetlength(r, i, 0) + 2;
    free(s->buf);
    s->buf = malloc(need + 1);
    if (s->buf == NULL) {
        mb_db_clear(&r);
        return false;
    }
    size_t o = 0;
    for (int i = 0; i < rows; i++) {
        size_t l = (size_t)PQgetlength(r, i, 0);
        memcpy(s->buf + o, PQgetvalue(r, i, 0), l);
        o += l;
        s->buf[o++] = '\r';
        s->buf[o++] = '\n';
    }
    if (rows > 0)
        snprintf(s->after, sizeof(s->after), "%s", PQgetvalue(r, rows - 1, 1));
    s->done = rows < 1000; /* every query takes LIMIT 1000 */
    s->len = o;
    s->off = 0;
    mb_db_clear(&r);
    return true;
}

static ssize_t export_read(void *u, uint64_t offset, char *out, size_t max)
{
    export_state *s = u;
    (void)offset;
    while (s->off == s->len) {
        if (s->done)
            return U_STREAM_END;
        if (!export_fill(s))
            return U_STREAM_ERROR; /* the client sees a cut answer, not a short file */
    }
    size_t n = s->len - s->off < max ? s->len - s->off : max;
    memcpy(out, s->buf + s->off, n);
    s->off += n;
    return (ssize_t)n;
}

bool mb_wants_csv(mb_ctx *c)
{
    const char *a = mb_header(c, "Accept");
    return a != NULL && strstr(a, "text/csv") != NULL;
}

static void export_start(mb_ctx *c, const char *name, const char *header, const char *sql, int n,
                         const char *const *params)
{
    export_state *s = calloc(1, sizeof(*s));
    bool ok = s != NULL && n <= EXPORT_PARAMS;
    for (int i = 0; ok && i < n; i++) {
        s->n = i + 1;
        s->param[i] = params[i] ? strdup(params[i]) : NULL;
        ok = params[i] == NULL || s->param[i] != NULL;
    }
    if (ok) {
        s->sql = sql;
        s->len = strlen(header) + 2;
        s->buf = malloc(s->len + 1);
        ok = s->buf != NULL;
        if (ok)
            snprintf(s->buf, s->len + 1, "%s\r\n", header);
    }
    if (!ok || ulfius_set_stream_response(c->resp, 200, export_read, export_free,
                                          U_STREAM_SIZE_UNKNOWN, 32 * 1024, s) != U_OK) {
        if (s != NULL)
            export_free(s);
        mb_reply_err(c, MB_E_INTERNAL);
        return;
    }
    char disposition[96];
    snprintf(disposition, sizeof(disposition), "attachment; filename=\"%s.csv\"", name);
    mb_set_header(c, "Content-Type", "text/csv; charset=utf-8");
    mb_set_header(c, "Content-Disposition", disposition);
}

void mb_export_users(mb_ctx *c, const char *q, const char *role)
{
    if (!mb_partner_gate(c, c->param[0], false, NULL))
        return;
    const char *p[] = {c->param[0], q, role};
    export_start(c, "users", "id,email,display_name,roles,created_at",
                 "SELECT concat_ws(',', csv_cell(u.id::text), csv_cell(u.email), "
                 "csv_cell(u.display_name), csv_cell(array_to_string(u.roles, ' ')), "
                 "csv_cell(to_json(u.created_at) #>> '{}')), u.id::text FROM users u "
                 "WHERE u.partner_id = $1::uuid AND ($2::text IS NULL "
                 "OR lower(u.email) LIKE '%' || replace(replace(replace(lower($2), "
                 "'\\', '\\\\'), '%', '\\%'), '_', '\\_') || '%' "
                 "OR lower(u.display_name) LIKE '%' || replace(replace(replace(lower($2), "
                 "'\\', '\\\\'), '%', '\\%'), '_', '\\_') || '%') "
                 "AND ($3::text IS NULL OR $3 = ANY (u.roles)) "
                 "AND u.id > COALESCE($4::uuid, '00000000-0000-0000-0000-000000000000') "
                 "ORDER BY u.id LIMIT 1000",
                 3, p);
}

void mb_export_benefits(mb_ctx *c, const char *category, const char *status, bool technical,
                        const char *expiring_before)
{
    if (!mb_partner_gate(c, c->param[0], true, NULL))
        return;
    const char *p[] = {c->param[0], category, status, technical ? "true" : "false",
                       expiring_before};
    export_start(
        c, "benefits",
        "id,purchase_id,product_id,category,name,status,quantity,used,expires_at,"
        "term_end",
        "SELECT concat_ws(',', csv_cell(d.doc->>'id'), csv_cell(d.doc->>'purchase_id'), "
        "csv_cell(d.doc->>'product_id'), csv_cell(d.category), csv_cell(d.doc->>'name'), "
        "csv_cell(d.status), csv_cell(d.quantity::text), csv_cell(d.used::text), "
        "csv_cell(d.doc->>'expires_at'), csv_cell(d.doc->>'term_end')), d.id::text "
        "FROM benefit_docs_fast d WHERE d.partner_id = $1::uuid "
        "AND ($2::text IS NULL OR d.category = $2) AND ($3::text IS NULL OR d.status = $3) "
        "AND (d.category <> 'technical' OR $4::boolean) "
        "AND ($5::timestamptz IS NULL OR d.expires_on < $5::timestamptz) "
        "AND d.id > COALESCE($6::uuid, '00000000-0000-0000-0000-000000000000') "
        "ORDER BY d.id LIMIT 1000",
        5, p);
}

void mb_export_audit(mb_ctx *c, const char *action, const char *actor, const char *since,
                     const char *until)
{
    if (!mb_partner_gate(c, c->param[0], false, NULL))
        return;
    const char *p[] = {c->param[0], action, actor, since, until};
    export_start(
        c, "audit-events", "id,at,actor,action,target_type,target_id,request_id,details",
        "SELECT concat_ws(',', csv_cell(e.id::text), csv_cell(to_json(e.at) #>> '{}'), "
        "csv_cell(e.actor), csv_cell(e.action), csv_cell(e.target_type), "
        "csv_cell(e.target_id), csv_cell(e.request_id), csv_cell(e.details::text)), "
        "e.id::text FROM audit_events e WHERE e.partner_id = $1::uuid "
        "AND ($2::text IS NULL OR e.action = $2) AND ($3::text IS NULL OR e.actor = $3) "
        "AND ($4::timestamptz IS NULL OR e.at >= $4::timestamptz) "
        "AND ($5::timestamptz IS NULL OR e.at < $5::timestamptz) "
        "AND e.id < COALESCE($6::bigint, 9223372036854775807) ORDER BY e.id DESC LIMIT 1000",
        5, p);
}

void mb_export_assignments(mb_ctx *c, const char *benefit_id)
{
    const char *p[] = {benefit_id};
    export_start(c, "assignments",
                 "user_id,email,display_name,benefit_id,product_id,name,"
                 "category,assigned_at",
                 "SELECT concat_ws(',', csv_cell(a.user_id::text), csv_cell(u.email), "
                 "csv_cell(u.display_name), csv_cell(a.benefit_id::text), "
                 "csv_cell(a.doc->>'product_id'), csv_cell(a.doc->>'name'), "
                 "csv_cell(a.doc->>'category'), csv_cell(a.doc->>'assigned_at')), "
                 "a.user_id::text FROM assignment_docs a JOIN users u ON u.id = a.user_id "
                 "WHERE a.benefit_id = $1::uuid "
                 "AND a.user_id > COALESCE($2::uuid, '00000000-0000-0000-0000-000000000000') "
                 "ORDER BY a.user_id LIMIT 1000",
                 1, p);
}
