/* Store helpers shared by several resources. SQL only; no HTTP. */
#ifndef MB_STORE_H
#define MB_STORE_H

#include <stdbool.h>

#include "mb_db.h"
#include "mb_err.h"

/* A benefit with what its product says about it. */
typedef struct mb_benefit {
    char id[37];
    char purchase_id[37];
    char product_id[37];
    char category[16];   /* software, cloud, visual_studio, technical, go_to_market */
    char status[12];     /* effective: available, pending, active, expired, cancelled */
    char cloud_kind[16]; /* usage_based, license_based, or "" */
    char unit[12];       /* incidents, hours, or "" */
    char offer_requirement[24];
    int offer_duration_days;
    int quantity;
    int used;
    char portal_url[256];
} mb_benefit;

/* Loads benefit_id of partner_id (404 when it is not that partner's). With
 * for_update the benefit row is locked until the transaction ends, which
 * serialises every change of the same benefit across service processes. */
mb_err mb_benefit_load(mb_db *db, const char *partner_id, const char *benefit_id, bool for_update,
                       mb_benefit *out);

/* The statement mb_benefit_load runs ($1 the partner, $2 the benefit, both uuids), and the
 * reading of its result (MB_E_NOT_FOUND for no row), for a caller that runs it in a pipeline. */
extern const char MB_BENEFIT_SQL[], MB_BENEFIT_SQL_FOR_UPDATE[];
mb_err mb_benefit_parse(PGresult *r, mb_benefit *out);

/* True when the benefit can no longer be used (expired or cancelled). */
bool mb_benefit_closed(const mb_benefit *b);

#endif
