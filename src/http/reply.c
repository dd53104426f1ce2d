/* Answers and request helpers shared by every route handler. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mb_http.h"
#include "mb_store.h"

void mb_set_header(mb_ctx *c, const char *name, const char *value)
{
    u_map_put(c->resp->map_header, name, value);
}

void mb_reply_json(mb_ctx *c, int status, const char *json, size_t len)
{
    ulfius_set_binary_body_response(c->resp, (unsigned)status, json, len);
    mb_set_header(c, "Content-Type", "application/json");
}

void mb_reply_jansson(mb_ctx *c, int status, json_t *doc)
{
    char *s = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (s == NULL) {
        mb_reply_problem(c, MB_E_INTERNAL, "Could not build the answer.");
        return;
    }
    mb_reply_json(c, status, s, strlen(s));
    free(s);
}

void mb_reply_empty(mb_ctx *c, int status)
{
    /* Ulfius refuses a zero-length body, so set the answer by hand. */
    free(c->resp->binary_body);
    c->resp->binary_body = NULL;
    c->resp->binary_body_length = 0;
    c->resp->status = status;
}

static void problem(mb_ctx *c, mb_err e, json_t *extra, const char *fmt, va_list ap)
{
    char detail[512];
    vsnprintf(detail, sizeof(detail), fmt, ap);
    int status = mb_err_status(e);
    char type[128];
    snprintf(type, sizeof(type), "https://mpn-benefits.example/problems/%s", mb_err_code(e));
    /* A detail cut by the buffer in the middle of a character, or quoting
     * invalid UTF-8 from the request, is refused by jansson: answer the title
     * then rather than a 500. */
    json_t *d = json_string(detail);
    if (d == NULL)
        d = json_string(mb_err_title(e));
    json_t *doc = json_pack("{s:s, s:s, s:i, s:o, s:s}", "type", type, "title", mb_err_title(e),
                            "status", status, "detail", d, "code", mb_err_code(e));
    if (doc != NULL && c->request_id != NULL)
        json_object_set_new(doc, "request_id", json_string(c->request_id));
    if (doc != NULL && extra != NULL)
        json_object_update(doc, extra);
    json_decref(extra);
    char *s = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (s == NULL) {
        static const char fallback[] =
            "{\"type\":\"about:blank\",\"title\":\"Internal error\",\"status\":500,"
            "\"detail\":\"out of memory\",\"code\":\"internal\"}";
        ulfius_set_binary_body_response(c->resp, 500, fallback, sizeof(fallback) - 1);
    } else {
        ulfius_set_binary_body_response(c->resp, (unsigned)status, s, strlen(s));
        free(s);
    }
    mb_set_header(c, "Content-Type", "application/problem+json");
    c->problem = s == NULL ? "internal" : mb_err_code(e);
    /* Every 503 says when to come back (README, api/openapi.yaml: Retry-After is required
     * on it); mb_reply_err may set its own value afterwards. */
    if (status == 503 && u_map_get(c->resp->map_header, "Retry-After") == NULL)
        mb_set_header(c, "Retry-After", "2");
}

void mb_reply_problem(mb_ctx *c, mb_err e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    problem(c, e, NULL, fmt, ap);
    va_end(ap);
}

void mb_reply_problem_x(mb_ctx *c, mb_err e, json_t *extra, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    problem(c, e, extra, fmt, ap);
    va_end(ap);
}

void mb_reply_verr(mb_ctx *c, const mb_verr *e)
{
    json_t *errors =
        json_pack("{s:[{s:s, s:s}]}", "errors", "field", e->field, "message", e->message);
    mb_reply_problem_x(c, MB_E_VALIDATION, errors, "Field '%s' %s.", e->field, e->message);
}

void mb_reply_err(mb_ctx *c, mb_err e)
{
    switch (e) {
    case MB_E_NOT_FOUND:
        mb_reply_problem(c, e, "No such resource.");
        break;
    case MB_E_UNAVAILABLE:
        mb_reply_problem(c, e, "The database is unavailable; retry shortly.");
        mb_set_header(c, "Retry-After", "2");
        break;
    case MB_E_INTERNAL:
        mb_reply_problem(c, e,
                         "An internal error occurred; it has been logged with the request id.");
        break;
    default:
        mb_reply_problem(c, e, "%s.", mb_err_title(e));
        break;
    }
}

const char *mb_query(mb_ctx *c, const char *name)
{
    return u_map_get(c->req->map_url, name);
}

const char *mb_header(mb_ctx *c, const char *name)
{
    return u_map_get_case(c->req->map_header, name);
}

static bool media_type_is(const char *ct, const char *type)
{
    size_t n = strlen(type);
    return ct != NULL && strncasecmp(ct, type, n) == 0 &&
           (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ');
}

json_t *mb_body(mb_ctx *c, bool empty_ok)
{
    return mb_body_as(c, empty_ok, NULL);
}

bool mb_body_empty(mb_ctx *c)
{
    json_t *body = mb_body(c, true);
    if (body == NULL)
        return false;
    static const char *const no_fields[] = {NULL};
    mb_verr verr;
    bool ok = mb_v_known(body, no_fields, &verr);
    json_decref(body);
    if (!ok)
        mb_reply_verr(c, &verr);
    return ok;
}

json_t *mb_body_as(mb_ctx *c, bool empty_ok, const char *also)
{
    size_t len = c->req->binary_body_length;
    if (len == 0 && empty_ok)
        return json_object();
    const char *ct = mb_header(c, "Content-Type");
    if (!media_type_is(ct, "application/json") && (also == NULL || !media_type_is(ct, also))) {
        mb_reply_problem(c, MB_E_UNSUPPORTED_MEDIA_TYPE, "Send the body as application/json%s%s.",
                         also ? " or " : "", also ? also : "");
        return NULL;
    }
    json_error_t jerr;
    /* JSON_DECODE_ANY: `1` or `null` is JSON, just not an object (422 below,
     * not 400). Valid JSON that jansson cannot hold (an integer past 64 bits,
     * a \u0000 in a string) is a validation failure too, not malformed. */
    json_t *doc =
        json_loadb(c->req->binary_body, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (doc == NULL) {
        enum json_error_code code = json_error_code(&jerr);
        if (code == json_error_numeric_overflow || code == json_error_null_character)
            mb_reply_problem(c, MB_E_VALIDATION, "%s in the body (line %d, column %d).",
                             code == json_error_numeric_overflow ? "A number out of range"
                                                                 : "A NUL character",
                             jerr.line, jerr.column);
        else
            mb_reply_problem(c, MB_E_MALFORMED_JSON,
                             "The body is not valid JSON (line %d, column %d).", jerr.line,
                             jerr.column);
        return NULL;
    }
    if (!json_is_object(doc)) {
        json_decref(doc);
        mb_reply_problem(c, MB_E_VALIDATION, "The body must be a JSON object.");
        return NULL;
    }
    return doc;
}

bool mb_sees_technical(const mb_ctx *c)
{
    return mb_roles_allow(c->who.roles, MB_ACT_TECHNICAL) || (c->who.roles & MB_ROLE_OPERATOR);
}

bool mb_require(mb_ctx *c, mb_action a)
{
    if (mb_roles_allow(c->who.roles, a))
        return true;
    mb_reply_problem(c, MB_E_FORBIDDEN_ROLE, "%s", mb_action_denied_detail(a));
    return false;
}

/* The first half of the gate: the partner of the URL must be the caller's (or
 * the caller an operator). */
static bool gate_tenant(mb_ctx *c, const char *partner_id)
{
    if (mb_is_uuid(partner_id) &&
        ((c->who.roles & MB_ROLE_OPERATOR) || strcasecmp(c->who.tid, partner_id) == 0))
        return true;
    mb_reply_problem(c, MB_E_NOT_FOUND, "No such partner.");
    return false;
}

/* The second half: the partner exists (a row came back, its membership
 * location in column 0) and, with need_partner_center, is not in PMC. */
static bool gate_row(mb_ctx *c, const PGresult *r, bool need_partner_center, const char *pmc_detail)
{
    if (PQntuples(r) < 1) {
        mb_reply_problem(c, MB_E_NOT_FOUND, "No such partner.");
        return false;
    }
    return !need_partner_center || mb_gate_pmc(c, PQgetvalue(r, 0, 0), pmc_detail);
}

/* The same for a page's rows, whose column 0 is MB_GATE_COLUMN: NULL, no such partner. */
static bool gate_location(mb_ctx *c, const PGresult *r, bool need_partner_center,
                          const char *pmc_detail)
{
    if (PQgetisnull(r, 0, 0)) {
        mb_reply_problem(c, MB_E_NOT_FOUND, "No such partner.");
        return false;
    }
    return gate_row(c, r, need_partner_center, pmc_detail);
}

bool mb_gate_pmc(mb_ctx *c, const char *location, const char *pmc_detail)
{
    if (strcmp(location, "pmc") != 0)
        return true;
    mb_reply_problem(c, MB_E_MEMBERSHIP_IN_PMC, "%s",
                     pmc_detail ? pmc_detail
                                : "This partner's membership is still in Partner Membership "
                                  "Center (PMC): manage its benefits in PMC until you are "
                                  "invited to move to Partner Center.");
    return false;
}

/* The gate's read: one statement text, so one prepared statement per connection. */
static const char GATE_SQL[] = "SELECT membership_location FROM partners WHERE id = $1";

bool mb_partner_gate(mb_ctx *c, const char *partner_id, bool need_partner_center,
                     const char *pmc_detail)
{
    if (!gate_tenant(c, partner_id))
        return false;
    PGresult *r = NULL;
    const char *p[] = {partner_id};
    mb_err e = mb_db_exec(&c->db, &r, GATE_SQL, 1, p);
    if (e != MB_OK) {
        mb_reply_err(c, e);
        return false;
    }
    bool ok = gate_row(c, r, need_partner_center, pmc_detail);
    mb_db_clear(&r);
    return ok;
}

PGresult *mb_gated_query(mb_ctx *c, bool need_partner_center, const char *pmc_detail,
                         const char *sql, int n, const char *const *params)
{
    if (n < 1 || !gate_tenant(c, params[0]))
        return NULL;
    PGresult *r = NULL;
    mb_err e = mb_db_exec(&c->db, &r, sql, n, params);
    if (e != MB_OK) {
        mb_reply_err(c, e);
        return NULL;
    }
    if (!gate_row(c, r, need_partner_center, pmc_detail)) {
        mb_db_clear(&r);
        return NULL;
    }
    return r;
}

bool mb_reply_gated_doc(mb_ctx *c, bool need_partner_center, const char *pmc_detail,
                        const char *sql, int n, const char *const *params, const char *what)
{
    PGresult *r = mb_gated_query(c, need_partner_center, pmc_detail, sql, n, params);
    if (r == NULL)
        return false;
    bool found = !PQgetisnull(r, 0, 1);
    if (found)
        mb_reply_json(c, 200, PQgetvalue(r, 0, 1), (size_t)PQgetlength(r, 0, 1));
    else
        mb_reply_problem(c, MB_E_NOT_FOUND, "No such %s.", what);
    mb_db_clear(&r);
    return found;
}

const char *mb_actor(mb_ctx *c)
{
    return c->who.sub;
}

mb_err mb_audit(mb_ctx *c, const char *partner_id, const char *action, const char *target_type,
                const char *target_id, const char *details_json)
{
    const char *p[] = {partner_id,
                       mb_actor(c),
                       action,
                       target_type,
                       target_id,
                       c->request_id,
                       details_json ? details_json : "{}"};
    return mb_db_defer(&c->db,
                       "INSERT INTO audit_events (partner_id, actor, action, target_type, "
                       "target_id, request_id, details) VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb)",
                       7, p);
}

/* Answers {"items":[...],"next_cursor":...} from the rows of res whose
 * columns col and col + 1 are (document, cursor key); rows with a NULL
 * document (the LEFT JOIN of a gated query that found nothing) are none. */
static void reply_page(mb_ctx *c, PGresult *res, int col, int limit)
{
    int n = PQntuples(res);
    while (n > 0 && PQgetisnull(res, n - 1, col))
        n--;
    int take = n > limit ? limit : n;
    size_t cap = 64;
    for (int i = 0; i < take; i++)
        cap += (size_t)PQgetlength(res, i, col) + 1;
    char cursor[512] = "";
    if (n > limit && take > 0)
        mb_cursor_encode(PQgetvalue(res, take - 1, col + 1), cursor, sizeof(cursor));
    cap += strlen(cursor) + 32;
    char *buf = malloc(cap);
    if (buf == NULL) {
        mb_reply_err(c, MB_E_INTERNAL);
        return;
    }
    size_t o = 0;
    memcpy(buf + o, "{\"items\":[", 10);
    o += 10;
    for (int i = 0; i < take; i++) {
        if (i > 0)
            buf[o++] = ',';
        size_t l = (size_t)PQgetlength(res, i, col);
        memcpy(buf + o, PQgetvalue(res, i, col), l);
        o += l;
    }
    if (cursor[0] != '\0')
        o += (size_t)snprintf(buf + o, cap - o, "],\"next_cursor\":\"%s\"}", cursor);
    else
        o += (size_t)snprintf(buf + o, cap - o, "],\"next_cursor\":null}");
    mb_reply_json(c, 200, buf, o);
    free(buf);
}

bool mb_reply_doc(mb_ctx *c, int status, const char *sql, int n, const char *const *params,
                  const char *what)
{
    PGresult *r = NULL;
    mb_err e = mb_db_exec(&c->db, &r, sql, n, params);
    bool ok = e == MB_OK && PQntuples(r) == 1;
    if (e != MB_OK)
        mb_reply_err(c, e);
    else if (!ok)
        mb_reply_problem(c, MB_E_NOT_FOUND, "No such %s.", what);
    else
        mb_reply_json(c, status, PQgetvalue(r, 0, 0), (size_t)PQgetlength(r, 0, 0));
    mb_db_clear(&r);
    return ok;
}

/* The parameters of a list query: params then the row limit (limit + 1, to
 * tell whether a next page exists). */
static bool list_params(const char **p, char *lim, size_t limlen, int n, const char *const *params,
                        int limit)
{
    if (n < 0 || n > MB_LIST_MAX_PARAMS)
        return false;
    for (int i = 0; i < n; i++)
        p[i] = params[i];
    snprintf(lim, limlen, "%d", limit + 1);
    p[n] = lim;
    return true;
}

void mb_reply_list(mb_ctx *c, const char *sql, int n, const char *const *params, int limit)
{
    const char *p[MB_LIST_MAX_PARAMS + 1];
    char lim[16];
    if (!list_params(p, lim, sizeof(lim), n, params, limit)) {
        mb_reply_err(c, MB_E_INTERNAL);
        return;
    }
    PGresult *r = NULL;
    mb_err e = mb_db_exec(&c->db, &r, sql, n + 1, p);
    if (e != MB_OK) {
        mb_reply_err(c, e);
        return;
    }
    reply_page(c, r, 0, limit);
    mb_db_clear(&r);
}

void mb_reply_gated_list(mb_ctx *c, bool need_partner_center, const char *pmc_detail,
                         const char *sql, int n, const char *const *params, int limit)
{
    const char *p[MB_LIST_MAX_PARAMS + 1];
    char lim[16];
    if (n < 1 || !list_params(p, lim, sizeof(lim), n, params, limit)) {
        mb_reply_err(c, MB_E_INTERNAL);
        return;
    }
    if (!gate_tenant(c, p[0]))
        return;
    PGresult *r = NULL;
    mb_err e = mb_db_exec(&c->db, &r, sql, n + 1, p);
    if (e != MB_OK) {
        mb_reply_err(c, e);
        return;
    }
    /* Rows: the gate is in each (MB_GATE_COLUMN). None: the gate's own read tells an empty
     * page from no such partner. */
    bool open = PQntuples(r) > 0 ? gate_location(c, r, need_partner_center, pmc_detail)
                                 : mb_partner_gate(c, p[0], need_partner_center, pmc_detail);
    if (open)
        reply_page(c, r, 1, limit);
    mb_db_clear(&r);
}

void mb_reply_partner_page(mb_ctx *c, bool need_partner_center, const char *pmc_detail,
                           const char *sql)
{
    int limit;
    char after[64];
    if (!mb_page_args(c, &limit, after, sizeof(after), false))
        return;
    const char *p[] = {c->param[0], after[0] ? after : NULL};
    mb_reply_gated_list(c, need_partner_center, pmc_detail, sql, 2, p, limit);
}

void mb_reply_partner_doc(mb_ctx *c, bool need_partner_center, const char *pmc_detail,
                          const char *sql, const char *what)
{
    /* Not a UUID: still through the gate, with an id that matches nothing. */
    const char *p[] = {c->param[0], mb_is_uuid(c->param[1]) ? c->param[1] : NULL};
    mb_reply_gated_doc(c, need_partner_center, pmc_detail, sql, 2, p, what);
}

/* The answer to a loaded (or not found) benefit of the URL: 404, or R8's 403
 * for a technical benefit the caller may not see. */
static bool take_benefit(mb_ctx *c, mb_err e, const mb_benefit *b)
{
    if (e == MB_E_NOT_FOUND)
        mb_reply_problem(c, e, "No such benefit.");
    else if (e != MB_OK)
        mb_reply_err(c, e);
    if (e != MB_OK)
        return false;
    /* R8: technical benefits are hidden from the roles that may not use them,
     * whatever the route asks of them (as GET .../benefits/{b} answers). */
    if (strcmp(b->category, "technical") == 0 && !mb_sees_technical(c)) {
        mb_reply_problem(c, MB_E_FORBIDDEN_ROLE, "%s", mb_action_denied_detail(MB_ACT_TECHNICAL));
        return false;
    }
    return true;
}

bool mb_load_url_benefit(mb_ctx *c, bool for_update, mb_benefit *b)
{
    return take_benefit(c, mb_benefit_load(&c->db, c->param[0], c->param[1], for_update, b), b);
}

bool mb_gate_benefit(mb_ctx *c, bool for_update, mb_benefit *b, bool (*between)(mb_ctx *, void *),
                     void *arg, int nextra, const mb_q *extra, PGresult **extra_out)
{
    return mb_gate_benefit_at(c, NULL, for_update, b, between, arg, nextra, extra, extra_out);
}

bool mb_gate_benefit_at(mb_ctx *c, char *location, bool for_update, mb_benefit *b,
                        bool (*between)(mb_ctx *, void *), void *arg, int nextra, const mb_q *extra,
                        PGresult **extra_out)
{
    memset(b, 0, sizeof(*b));
    for (int i = 0; i < nextra; i++)
        extra_out[i] = NULL;
    if (nextra < 0 || nextra > 3 || !gate_tenant(c, c->param[0]))
        return false;
    const char *gp[] = {c->param[0]};
    const char *bp[] = {c->param[0], c->param[1]};
    mb_q q[5] = {{GATE_SQL, 1, gp}};
    int n = 1;
    bool has_b = mb_is_uuid(c->param[1]); /* else: no such benefit, and no extra */
    if (has_b) {
        q[n++] = (mb_q){for_update ? MB_BENEFIT_SQL_FOR_UPDATE : MB_BENEFIT_SQL, 2, bp};
        for (int i = 0; i < nextra; i++)
            q[n++] = extra[i];
    }
    PGresult *r[5] = {NULL, NULL, NULL, NULL, NULL};
    mb_err e = mb_db_exec_many(&c->db, n, q, r, NULL);
    if (e != MB_OK) {
        mb_reply_err(c, e);
        return false;
    }
    bool ok = gate_row(c, r[0], location == NULL, NULL) && (between == NULL || between(c, arg)) &&
              take_benefit(c, has_b ? mb_benefit_parse(r[1], b) : MB_E_NOT_FOUND, b);
    if (ok && location != NULL)
        snprintf(location, 16, "%s", PQgetvalue(r[0], 0, 0));
    for (int i = 0; i < 2 + nextra && i < n; i++) {
        if (ok && i >= 2)
            extra_out[i - 2] = r[i];
        else
            PQclear(r[i]);
    }
    return ok;
}
