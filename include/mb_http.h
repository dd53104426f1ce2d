/* The HTTP side: the request context handed to every route handler, the
 * routing table, and the answer helpers (JSON and problem+json). */
#ifndef MB_HTTP_H
#define MB_HTTP_H

#include <jansson.h>
#include <stdbool.h>
#include <ulfius.h>

#include "mb_auth.h"
#include "mb_config.h"
#include "mb_db.h"
#include "mb_domain.h"
#include "mb_err.h"

#define MB_MAX_PARAMS 4

typedef struct mb_ctx {
    const struct _u_request *req;
    struct _u_response *resp;
    const mb_config *cfg;
    mb_principal who;
    const char *request_id;
    mb_db db;
    /* path parameters in route order, e.g. {partnerId, benefitId} */
    const char *param[MB_MAX_PARAMS];
    char param_buf[MB_MAX_PARAMS][40];
    int nparam;
    const char *route;   /* route template, for logs and metrics */
    int route_idx;       /* its index in the routing table, or -1 */
    const char *problem; /* the code of the last problem answered (access log), or NULL */
} mb_ctx;

typedef void (*mb_handler)(mb_ctx *c);

enum {
    MB_R_PUBLIC = 1u << 0,   /* no token needed */
    MB_R_TX = 1u << 1,       /* runs in one transaction, committed only on 2xx,
                                and goes through Idempotency-Key handling */
    MB_R_BODY = 1u << 2,     /* takes a JSON body */
    MB_R_SECRET = 1u << 3,   /* the answer holds secrets (license keys): an
                                Idempotency-Key record keeps no body, and a replay
                                runs the handler again, so the route must be
                                idempotent by nature */
    MB_R_CSV_BODY = 1u << 4, /* takes text/csv uploads up to CSV_MAX_BODY_KB (issue 14);
                                a JSON body there must still keep to MAX_BODY_KB */
};

typedef struct {
    const char *method;
    const char *pattern; /* segments; ":name" is a parameter */
    mb_handler handler;
    unsigned flags;
} mb_route;

/* Starts the server; blocks until SIGINT/SIGTERM, drains, stops. */
int mb_serve(const mb_config *cfg);
/* For an answer that stays open (Server-Sent Events): the connection's
 * inactivity timeout becomes timeout_s (0: none) instead of the idle timeout
 * that reclaims keep-alive connections. Call it from the handler. */
void mb_http_long_lived(mb_ctx *c, unsigned timeout_s);
/* True once SIGTERM was received: long-lived answers end themselves. */
bool mb_http_draining(void);

/* Answers. */
void mb_reply_json(mb_ctx *c, int status, const char *json, size_t len);
void mb_reply_jansson(mb_ctx *c, int status, json_t *doc); /* takes ownership */
void mb_reply_empty(mb_ctx *c, int status);
void mb_reply_problem(mb_ctx *c, mb_err e, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Problem with extra members merged in (takes ownership of extra). */
void mb_reply_problem_x(mb_ctx *c, mb_err e, json_t *extra, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void mb_reply_verr(mb_ctx *c, const mb_verr *e);
/* Answers a store/domain error with a generic detail. */
void mb_reply_err(mb_ctx *c, mb_err e);
void mb_set_header(mb_ctx *c, const char *name, const char *value);

/* Request helpers. */
const char *mb_query(mb_ctx *c, const char *name);
const char *mb_header(mb_ctx *c, const char *name);
/* Parses the JSON object body; on failure answers and returns NULL. An empty
 * body gives an empty object when empty_ok. */
json_t *mb_body(mb_ctx *c, bool empty_ok);
/* The same, taking the media type also (e.g. application/merge-patch+json) as
 * well as application/json. */
json_t *mb_body_as(mb_ctx *c, bool empty_ok, const char *also);
/* An optional body that may hold no field: nothing or "{}". Answers on failure. */
bool mb_body_empty(mb_ctx *c);

/* Safe edits (src/routes/preconditions.c). A strong ETag is a quoted hash of
 * the document a GET answers. */
#define MB_ETAG_LEN 40
void mb_etag_of(const char *body, size_t len, char out[MB_ETAG_LEN]);
/* Sets the ETag of the 200 answer's body. */
void mb_set_body_etag(mb_ctx *c);
/* Answers 400 `malformed-header` and returns false when If-Match is sent but
 * malformed. */
bool mb_if_match_wellformed(mb_ctx *c);
/* With an If-Match, runs sql (one row: the current document, read after the
 * row lock) and compares its ETag; answers 412 `precondition-failed` and
 * returns false on a mismatch. True without If-Match. */
bool mb_if_match_doc(mb_ctx *c, const char *sql, int n, const char *const *params,
                     const char *what);
/* A PATCH body as application/json or application/merge-patch+json; in the
 * latter a null member named in clearable (NULL-terminated) becomes [] and
 * any other null answers 422 (RFC 7396: null removes a member). */
json_t *mb_body_patch(mb_ctx *c, const char *const *clearable);

/* Authorization: answers 403 and returns false when the caller lacks it. */
bool mb_require(mb_ctx *c, mb_action a);
/* R8: the caller may see technical benefits (the roles that use them, and the
 * operator). */
bool mb_sees_technical(const mb_ctx *c);
/* Tenant gate for /v1/partners/{partnerId}/...: the id must be the caller's
 * partner (or the caller an operator) and exist, else 404; with
 * need_partner_center a PMC member gets 409 (R1) with pmc_detail. Answers and
 * returns false on failure. */
bool mb_partner_gate(mb_ctx *c, const char *partner_id, bool need_partner_center,
                     const char *pmc_detail);
/* The same gate and a read in one round trip. params[0] is the partner id and
 * sql has the form
 *   SELECT p.membership_location, d.... FROM partners p
 *   LEFT JOIN ... d ON ... WHERE p.id = $1::uuid
 * (one row at most: a list's page is mb_reply_gated_list's) so that no row means no such partner
 * and NULLs after column 0 mean the read found nothing. Answers the gate's 404/409 (or the store
 * error) and returns NULL; otherwise the result, which the caller clears. */
PGresult *mb_gated_query(mb_ctx *c, bool need_partner_center, const char *pmc_detail,
                         const char *sql, int n, const char *const *params);
/* A gated query for one document (column 1): answers it with 200, or 404 "No
 * such <what>." when column 1 is NULL. True when it answered the document. */
bool mb_reply_gated_doc(mb_ctx *c, bool need_partner_center, const char *pmc_detail,
                        const char *sql, int n, const char *const *params, const char *what);

/* Loads the benefit of the URL (partnerId, benefitId), locked with for_update
 * until the transaction ends; answers 404 (or the store error) and returns
 * false when there is none. */
struct mb_benefit;
bool mb_load_url_benefit(mb_ctx *c, bool for_update, struct mb_benefit *b);
/* mb_partner_gate (Partner Center needed) and mb_load_url_benefit in one round trip, with up to
 * three extra statements after them (each its own statement, so it sees the benefit locked), whose
 * results land in extra_out when all passed (the caller clears them). between, when set, runs
 * after the gate passed and before the benefit is looked at (a body check keeps its place in
 * the order of the answers); it answers and returns false to stop. Answers and returns false
 * on any failure, as the two calls would. */
bool mb_gate_benefit(mb_ctx *c, bool for_update, struct mb_benefit *b,
                     bool (*between)(mb_ctx *, void *), void *arg, int nextra, const mb_q *extra,
                     PGresult **extra_out);
/* The same, for a route whose Partner Center check depends on the benefit: the gate checks only
 * that the partner exists, and location[16] receives its membership location for mb_gate_pmc. */
bool mb_gate_benefit_at(mb_ctx *c, char *location, bool for_update, struct mb_benefit *b,
                        bool (*between)(mb_ctx *, void *), void *arg, int nextra, const mb_q *extra,
                        PGresult **extra_out);
/* The gate's Partner Center half (R1) for a membership location read earlier: answers 409
 * membership-in-pmc with pmc_detail (NULL: the usual words) and returns false for "pmc". */
bool mb_gate_pmc(mb_ctx *c, const char *location, const char *pmc_detail);

/* Audit event in the request's transaction. details_json may be NULL. */
mb_err mb_audit(mb_ctx *c, const char *partner_id, const char *action, const char *target_type,
                const char *target_id, const char *details_json);

/* Answers, with status, the JSON document in the first column of the one row
 * sql returns; 404 "No such <what>." when it returns none. True when it
 * answered the document. */
bool mb_reply_doc(mb_ctx *c, int status, const char *sql, int n, const char *const *params,
                  const char *what);

/* Answers one page of a list: runs sql, whose rows are (JSON document, cursor
 * key), with params followed by one more parameter, the row limit (limit + 1,
 * to tell whether a next page exists), and answers
 * {"items":[...],"next_cursor":...}. */
#define MB_LIST_MAX_PARAMS 8
void mb_reply_list(mb_ctx *c, const char *sql, int n, const char *const *params, int limit);
/* The same for a partner's page, gate included, in one round trip. sql has the form
 *   SELECT MB_GATE_COLUMN, d.doc, d.key FROM (SELECT ... WHERE partner_id = $1::uuid ...
 *   ORDER BY key LIMIT $n::int) d ORDER BY d.key
 * The outer ORDER BY is the subquery's own, so PostgreSQL reads the rows in that order and
 * sorts nothing (a LEFT JOIN LATERAL from partners made it copy and sort the whole page).
 * A page with no row reads the gate on its own: no such partner, in PMC, or an empty page. */
#define MB_GATE_COLUMN "(SELECT membership_location FROM partners WHERE id = $1::uuid)"
void mb_reply_gated_list(mb_ctx *c, bool need_partner_center, const char *pmc_detail,
                         const char *sql, int n, const char *const *params, int limit);

/* The gated reads of a view of partner rows (id, partner_id, doc) under
 * /v1/partners/{partnerId}/...: a page in id order, and the row of the URL's
 * second id. The SQL is a literal per view (statements are prepared per call
 * site). */
#define MB_PARTNER_PAGE_SQL(view)                                                                  \
    "SELECT " MB_GATE_COLUMN ", d.doc, d.id::text FROM (SELECT doc, id FROM " view " "             \
    "WHERE partner_id = $1::uuid AND ($2::uuid IS NULL OR id > $2::uuid) "                         \
    "ORDER BY id LIMIT $3::int) d ORDER BY d.id"
#define MB_PARTNER_DOC_SQL(view)                                                                   \
    "SELECT p.membership_location, d.doc FROM partners p LEFT JOIN " view " d "                    \
    "ON d.partner_id = p.id AND d.id = $2::uuid WHERE p.id = $1::uuid"
/* Answers the page (query limit and cursor) of MB_PARTNER_PAGE_SQL(view). */
void mb_reply_partner_page(mb_ctx *c, bool need_partner_center, const char *pmc_detail,
                           const char *sql);
/* Answers the document of MB_PARTNER_DOC_SQL(view) for c->param[1]; 404 "No
 * such <what>." when there is none. */
void mb_reply_partner_doc(mb_ctx *c, bool need_partner_center, const char *pmc_detail,
                          const char *sql, const char *what);

/* The actor string for audit and created_by columns. */
const char *mb_actor(mb_ctx *c);

/* Routes of each resource file. */
extern const mb_route mb_routes_core[];
extern const mb_route mb_routes_accounts[];
extern const mb_route mb_routes_partners_admin[];
extern const mb_route mb_routes_purchases[];
extern const mb_route mb_routes_keys[];
extern const mb_route mb_routes_seats[];
extern const mb_route mb_routes_activation[];
extern const mb_route mb_routes_support[];
extern const mb_route mb_routes_marketing[];
extern const mb_route mb_routes_refund[];
extern const mb_route mb_routes_identity[]; /* issue 11: revoke-tokens */
extern const mb_route mb_routes_events[];
extern const mb_route mb_routes_webhooks[];
extern const mb_route mb_routes_webhook_deliveries[];
extern const mb_route mb_routes_mail_deliveries[];

/* Issue 14: the catalog, packages, batch seats and exports. */
extern const mb_route mb_routes_catalog[];
extern const mb_route mb_routes_catalog_reads[];
extern const mb_route mb_routes_packages[];
extern const mb_route mb_routes_batch[];
extern const mb_route mb_routes_summary[];
/* Issue 13: the partner's activations, support requests and Global admins. */
extern const mb_route mb_routes_partner_lists[];
/* Issue 13: cancellation as a service request. */
extern const mb_route mb_routes_cancellation_requests[];
extern const mb_route mb_routes_docs[]; /* issue 15: GET /docs */
/* A catalog code (products, packages): "code", 1-100 of [a-z0-9._-]. */
bool mb_catalog_code_ok(const json_t *obj, const char **out, mb_verr *e);
/* POST /v1/admin/products/{productId}/keys with a text/csv body, for a product
 * that takes keys, locked by the caller (src/routes/keys_csv.c). */
void mb_keys_import_csv(mb_ctx *c, const char *product_id);
/* CSV exports (src/routes/exports.c): the request asks for text/csv; the
 * export_* functions check the partner gate (not for assignments: the caller
 * has loaded the benefit) and stream every row with the list's filters. */
bool mb_wants_csv(mb_ctx *c);
void mb_export_users(mb_ctx *c, const char *q, const char *role);
void mb_export_benefits(mb_ctx *c, const char *category, const char *status, bool technical,
                        const char *expiring_before);
void mb_export_audit(mb_ctx *c, const char *action, const char *actor, const char *since,
                     const char *until);
void mb_export_assignments(mb_ctx *c, const char *benefit_id);
/* The handlers of GET .../users and .../audit-events (src/routes/lists.c). */
void mb_users_list(mb_ctx *c);
void mb_audit_list(mb_ctx *c);
/* An RFC 3339 date-time (filters: since, until, expiring_before). */
bool mb_is_date_time(const char *s);

/* Paging query parameters (limit, cursor): answers 422 and returns false when
 * bad; after receives the decoded cursor key (a UUID, or digits if numeric). */
bool mb_page_args(mb_ctx *c, int *limit, char *after, size_t afterlen, bool numeric);

/* Used by handlers that serve the contract and metrics. */
void mb_metrics_render(mb_ctx *c);

#endif
