/* Shared by the webhook route files. */
#ifndef MB_ROUTES_WEBHOOKS_H
#define MB_ROUTES_WEBHOOKS_H

#include "mb_http.h"

/* Global admin or MPN partner admin, of the partner of the URL (else answers
 * 403/404 and returns false). */
bool mb_webhook_gate(mb_ctx *c);

#endif
