/* Catalog reads (issue 14): the key pool's counts for the operator, and the
 * downloads of a benefit for the partner, as bought (sql/005_catalog.sql),
 * without revealing keys. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mb_http.h"
#include "mb_store.h"

/* GET /v1/admin/products/{productId}/key-pool */
static void key_pool_get(mb_ctx *c)
{
    if (!mb_require(c, MB_ACT_OPERATE))
        return;
    if (!mb_is_uuid(c->param[0])) {
        mb_reply_problem(c, MB_E_NOT_FOUND, "No such product.");
        return;
    }
    char low[24];
    snprintf(low, sizeof(low), "%lld", c->cfg->key_pool_low_watermark);
    const char *p[] = {c->param[0], low};
    mb_reply_doc(c, 200,
                 "SELECT json_build_object('product_id', p.id, 'available', a.n, "
                 "'assigned', (SELECT count(*) FROM license_keys k WHERE k.product_id = p.id "
                 "AND k.benefit_id IS NOT NULL), 'low_watermark', $2::bigint, "
                 "'below_low_watermark', a.n < $2::bigint) FROM products p, "
                 "LATERAL (SELECT count(*) AS n FROM license_keys k WHERE k.product_id = p.id "
                 "AND k.benefit_id IS NULL) a WHERE p.id = $1::uuid",
                 2, p, "product");
}

/* GET /v1/partners/{partnerId}/benefits/{benefitId}/downloads?language=&os= */
static void benefit_downloads(mb_ctx *c)
{
    if (!mb_require(c, MB_ACT_READ) || !mb_partner_gate(c, c->param[0], true, NULL))
        return;
    mb_benefit b;
    if (!mb_load_url_benefit(c, false, &b))
        return;
    const char *lang = mb_query(c, "language");
    const char *os = mb_query(c, "os");
    const char *p[] = {b.id, lang, os};
    PGresult *r = NULL;
    mb_err e = mb_db_exec(&c->db, &r,
                          "SELECT json_build_object('items', COALESCE((SELECT json_agg(d ORDER BY "
                          "d->>'language', d->>'os') FROM jsonb_array_elements(bc.downloads) d "
                          "WHERE ($2::text IS NULL OR d->>'language' = $2) "
                          "AND ($3::text IS NULL OR d->>'os' = $3)), '[]'), "
                          "'next_cursor', NULL), "
                          "$2::text IS NULL OR $2 = ANY (bc.languages), "
                          "$3::text IS NULL OR $3 = ANY (bc.os_types), "
                          "to_json(bc.languages), to_json(bc.os_types) "
                          "FROM benefit_catalog bc WHERE bc.benefit_id = $1::uuid",
                          3, p);
    if (e != MB_OK || PQntuples(r) != 1) {
        mb_db_clear(&r);
        mb_reply_err(c, e != MB_OK ? e : MB_E_INTERNAL);
        return;
    }
    for (int col = 1; col <= 2; col++)
        if (strcmp(PQgetvalue(r, 0, col), "t") != 0) {
            const char *field = col == 1 ? "language" : "os";
            json_t *allowed = json_loads(PQgetvalue(r, 0, col + 2), 0, NULL);
            mb_reply_problem_x(c, MB_E_VALIDATION,
                               json_pack("{s:o*, s:[{s:s,s:s}]}", "allowed", allowed, "errors",
                                         "field", field, "message",
                                         "is not offered for this benefit"),
                               "Query '%s' must be one of the values this benefit offers (see "
                               "'allowed').",
                               field);
            mb_db_clear(&r);
            return;
        }
    mb_reply_json(c, 200, PQgetvalue(r, 0, 0), (size_t)PQgetlength(r, 0, 0));
    mb_db_clear(&r);
}

const mb_route mb_routes_catalog_reads[] = {
    {"GET", "/v1/admin/products/:productId/key-pool", key_pool_get, 0},
    {"GET", "/v1/partners/:partnerId/benefits/:benefitId/downloads", benefit_downloads, 0},
    {NULL, NULL, NULL, 0},
};
