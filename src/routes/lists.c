/* The users list and the audit trail with the filters of issue 14 (users
 * ?q=&role=, audit events ?action=&actor=&since=&until=), their CSV exports
 * included (src/routes/exports.c); the routes stay in src/routes/accounts.c. */
#include <stdio.h>
#include <string.h>

#include "mb_http.h"

/* Answers 422 naming the query parameter; returns false. */
static bool bad_query(mb_ctx *c, const char *name, const char *message)
{
    mb_reply_problem_x(c, MB_E_VALIDATION,
                       json_pack("{s:[{s:s,s:s}]}", "errors", "field", name, "message", message),
                       "Query '%s' %s.", name, message);
    return false;
}

/* Filters (issue 14): q, a part of the email or the name (any case; trigram
 * indexes of sql/005_catalog.sql), and role. */
void mb_users_list(mb_ctx *c)
{
    if (!mb_require(c, MB_ACT_READ))
        return;
    const char *q = mb_query(c, "q"), *role = mb_query(c, "role");
    if (q != NULL && (strlen(q) < 1 || strlen(q) > 200))
        return (void)bad_query(c, "q", "must be 1 to 200 characters");
    static const char *const roles[] = {"global_admin", "user_admin", "admin_agent",
                                        "mpn_partner_admin", NULL};
    bool known = role == NULL;
    for (size_t i = 0; !known && roles[i]; i++)
        known = strcmp(roles[i], role) == 0;
    if (!known)
        return (void)bad_query(
            c, "role", "must be one of: global_admin, user_admin, admin_agent, mpn_partner_admin");
    if (mb_wants_csv(c)) {
        mb_export_users(c, q, role);
        return;
    }
    int limit;
    char after[64];
    if (!mb_page_args(c, &limit, after, sizeof(after), false))
        return;
    const char *p[] = {c->param[0], after[0] ? after : NULL, q, role};
    mb_reply_gated_list(
        c, false, NULL,
        "SELECT " MB_GATE_COLUMN ", d.doc, d.id::text FROM (SELECT u.doc, u.id "
        "FROM user_docs u JOIN users x ON x.id = u.id "
        "WHERE u.partner_id = $1::uuid AND ($2::uuid IS NULL OR u.id > $2::uuid) "
        "AND ($3::text IS NULL OR lower(x.email) LIKE '%' || replace(replace(replace(lower($3), "
        "'\\', '\\\\'), '%', '\\%'), '_', '\\_') || '%' "
        "OR lower(x.display_name) LIKE '%' || replace(replace(replace(lower($3), "
        "'\\', '\\\\'), '%', '\\%'), '_', '\\_') || '%') "
        "AND ($4::text IS NULL OR $4 = ANY (x.roles)) "
        "ORDER BY u.id LIMIT $5::int) d ORDER BY d.id",
        4, p, limit);
}

/* --- audit trail --------------------------------------------------------------------------- */

void mb_audit_list(mb_ctx *c)
{
    if (!mb_require(c, MB_ACT_AUDIT))
        return;
    /* Filters (issue 14): action and actor exact, since <= at < until. */
    const char *action = mb_query(c, "action"), *actor = mb_query(c, "actor");
    const char *since = mb_query(c, "since"), *until = mb_query(c, "until");
    if (action != NULL && (strlen(action) < 1 || strlen(action) > 100))
        return (void)bad_query(c, "action", "must be 1 to 100 characters");
    if (actor != NULL && (strlen(actor) < 1 || strlen(actor) > 200))
        return (void)bad_query(c, "actor", "must be 1 to 200 characters");
    if (since != NULL && !mb_is_date_time(since))
        return (void)bad_query(c, "since", "must be an RFC 3339 date-time");
    if (until != NULL && !mb_is_date_time(until))
        return (void)bad_query(c, "until", "must be an RFC 3339 date-time");
    if (mb_wants_csv(c)) {
        mb_export_audit(c, action, actor, since, until);
        return;
    }
    int limit;
    char after[64];
    if (!mb_page_args(c, &limit, after, sizeof(after), true))
        return;
    const char *p[] = {c->param[0], after[0] ? after : NULL, action, actor, since, until};
    mb_reply_gated_list(
        c, false, NULL,
        "SELECT " MB_GATE_COLUMN ", d.doc, d.id::text FROM (SELECT v.doc, v.id "
        "FROM audit_event_docs v JOIN audit_events e ON e.id = v.id "
        "WHERE v.partner_id = $1::uuid AND ($2::bigint IS NULL OR v.id < $2::bigint) "
        "AND ($3::text IS NULL OR e.action = $3) "
        "AND ($4::text IS NULL OR e.actor = $4) "
        "AND ($5::timestamptz IS NULL OR e.at >= $5::timestamptz) "
        "AND ($6::timestamptz IS NULL OR e.at < $6::timestamptz) "
        "ORDER BY v.id DESC LIMIT $7::int) d ORDER BY d.id DESC",
        6, p, limit);
}
