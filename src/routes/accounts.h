/* What accounts.c (users) and partners_admin.c (the operator's partner
 * changes) share. */
#ifndef MB_ROUTES_ACCOUNTS_H
#define MB_ROUTES_ACCOUNTS_H

#include "mb_http.h"

/* Fills e with field and msg; returns false (for `ok = ... || verr(...)`). */
bool mb_accounts_verr(mb_verr *e, const char *field, const char *msg);
/* Puts prefix in front of the field an mb_v_* check named ("global_admin.email"). */
bool mb_accounts_nested(mb_verr *e, const char *prefix);
/* Writes the audit event (takes details); on failure answers and returns false. */
bool mb_accounts_audit(mb_ctx *c, const char *partner_id, const char *action, const char *type,
                       const char *id, json_t *details);
/* Answers the document of sql, with a Location header when given. */
void mb_accounts_reply_doc(mb_ctx *c, int status, const char *sql, int n, const char *const *p,
                           const char *location);

#endif
