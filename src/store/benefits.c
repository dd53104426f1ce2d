#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mb_domain.h"
#include "mb_store.h"

static void copy(char *dst, size_t n, PGresult *r, int col)
{
    snprintf(dst, n, "%s", PQgetisnull(r, 0, col) ? "" : PQgetvalue(r, 0, col));
}

#define BENEFIT_SELECT                                                                             \
    "SELECT b.id, b.purchase_id, b.product_id, b.category, "                                       \
    "benefit_status(b.status, pu.term_end, b.expires_at), p.cloud_kind, p.unit, "                  \
    "p.offer_requirement, p.offer_duration_days, b.quantity, b.used, p.portal_url "                \
    "FROM benefits b JOIN products p ON p.id = b.product_id "                                      \
    "JOIN purchases pu ON pu.id = b.purchase_id "                                                  \
    "WHERE b.partner_id = $1::uuid AND b.id = $2::uuid"

const char MB_BENEFIT_SQL[] = BENEFIT_SELECT;
const char MB_BENEFIT_SQL_FOR_UPDATE[] = BENEFIT_SELECT " FOR UPDATE OF b";

mb_err mb_benefit_parse(PGresult *r, mb_benefit *out)
{
    memset(out, 0, sizeof(*out));
    if (PQntuples(r) != 1)
        return MB_E_NOT_FOUND;
    copy(out->id, sizeof(out->id), r, 0);
    copy(out->purchase_id, sizeof(out->purchase_id), r, 1);
    copy(out->product_id, sizeof(out->product_id), r, 2);
    copy(out->category, sizeof(out->category), r, 3);
    copy(out->status, sizeof(out->status), r, 4);
    copy(out->cloud_kind, sizeof(out->cloud_kind), r, 5);
    copy(out->unit, sizeof(out->unit), r, 6);
    copy(out->offer_requirement, sizeof(out->offer_requirement), r, 7);
    out->offer_duration_days = PQgetisnull(r, 0, 8) ? 0 : atoi(PQgetvalue(r, 0, 8));
    out->quantity = atoi(PQgetvalue(r, 0, 9));
    out->used = atoi(PQgetvalue(r, 0, 10));
    copy(out->portal_url, sizeof(out->portal_url), r, 11);
    return MB_OK;
}

mb_err mb_benefit_load(mb_db *db, const char *partner_id, const char *benefit_id, bool for_update,
                       mb_benefit *out)
{
    memset(out, 0, sizeof(*out));
    if (!mb_is_uuid(partner_id) || !mb_is_uuid(benefit_id))
        return MB_E_NOT_FOUND;
    const char *p[] = {partner_id, benefit_id};
    PGresult *r = NULL;
    mb_err e = mb_db_exec(db, &r, for_update ? MB_BENEFIT_SQL_FOR_UPDATE : MB_BENEFIT_SQL, 2, p);
    if (e == MB_OK)
        e = mb_benefit_parse(r, out);
    mb_db_clear(&r);
    return e;
}

bool mb_benefit_closed(const mb_benefit *b)
{
    return strcmp(b->status, "expired") == 0 || strcmp(b->status, "cancelled") == 0;
}
