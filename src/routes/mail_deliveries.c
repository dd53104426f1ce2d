/* GET /v1/admin/mail-deliveries: the mails to marketing contacts, newest
 * first, for the operator (what was sent, what is retried, what could not be
 * sent and why). */
#include <string.h>

#include "mb_http.h"

static void mail_list(mb_ctx *c)
{
    if (!mb_require(c, MB_ACT_OPERATE))
        return;
    int limit;
    char after[64];
    if (!mb_page_args(c, &limit, after, sizeof(after), false))
        return;
    const char *status = mb_query(c, "status");
    static const char *const known[] = {"pending", "succeeded", "failed", "not_sent", NULL};
    bool ok = status == NULL;
    for (int i = 0; !ok && known[i] != NULL; i++)
        ok = strcmp(status, known[i]) == 0;
    if (!ok) {
        mb_reply_problem_x(c, MB_E_VALIDATION,
                           json_pack("{s:[{s:s,s:s}]}", "errors", "field", "status", "message",
                                     "pending, succeeded, failed or not_sent"),
                           "Query 'status' must be pending, succeeded, failed or not_sent.");
        return;
    }
    const char *p[] = {after[0] ? after : NULL, status};
    mb_reply_list(c,
                  "SELECT m.doc, m.id::text FROM mail_delivery_docs m "
                  "WHERE ($2::text IS NULL OR m.status = $2) AND ($1::uuid IS NULL OR "
                  "(m.created_at, m.id) < (SELECT created_at, id FROM mail_deliveries "
                  "WHERE id = $1::uuid)) ORDER BY m.created_at DESC, m.id DESC LIMIT $3::int",
                  2, p, limit);
}

const mb_route mb_routes_mail_deliveries[] = {
    {"GET", "/v1/admin/mail-deliveries", mail_list, 0},
    {NULL, NULL, NULL, 0},
};
