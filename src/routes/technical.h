/* What activation.c and support.c share about technical benefits. */
#ifndef MB_ROUTES_TECHNICAL_H
#define MB_ROUTES_TECHNICAL_H

#include "mb_http.h"
#include "mb_store.h"

/* R1: technical benefits of a partner still in PMC are activated and used
 * through Partner Frontline, not through PMC's benefits pages. */
extern const char mb_pmc_technical[];
/* 409 benefit-expired for a benefit past its term or cancelled. */
void mb_reply_benefit_closed(mb_ctx *c, const mb_benefit *b);

#endif
