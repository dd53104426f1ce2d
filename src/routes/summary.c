/* GET /v1/partners/{partnerId}/benefits/summary (issue 14): the dashboard
 * tiles. Per category: live benefits (not expired or cancelled), their
 * quantity and what is used of it, and how many stop being usable within 30
 * days. Technical benefits only for the roles that see them (R8). */
#include <stdio.h>
#include <string.h>

#include "mb_http.h"

static void benefits_summary(mb_ctx *c)
{
    if (!mb_require(c, MB_ACT_READ))
        return;
    const char *p[] = {c->param[0], mb_sees_technical(c) ? "true" : "false"};
    PGresult *r = mb_gated_query(
        c, true, NULL,
        "SELECT p.membership_location, json_build_object('partner_id', p.id, 'as_of', now(), "
        "'categories', (SELECT json_agg(json_build_object('category', k.category, "
        "'count', COALESCE(s.n, 0), 'quantity', COALESCE(s.quantity, 0), "
        "'used', COALESCE(s.used, 0), 'expiring_within_30_days', COALESCE(s.soon, 0)) "
        "ORDER BY k.ord) "
        "FROM unnest(ARRAY['software', 'cloud', 'visual_studio', 'technical', 'go_to_market']) "
        "WITH ORDINALITY AS k (category, ord) "
        "LEFT JOIN (SELECT category, count(*) AS n, sum(quantity) AS quantity, "
        "sum(used) AS used, count(*) FILTER (WHERE expires_on < now() + interval '30 days') "
        "AS soon FROM benefit_docs_fast WHERE partner_id = p.id "
        "AND status NOT IN ('expired', 'cancelled') GROUP BY category) s "
        "ON s.category = k.category "
        "WHERE k.category <> 'technical' OR $2::boolean)) FROM partners p "
        "WHERE p.id = $1::uuid",
        2, p);
    if (r == NULL)
        return;
    mb_reply_json(c, 200, PQgetvalue(r, 0, 1), (size_t)PQgetlength(r, 0, 1));
    mb_db_clear(&r);
}

const mb_route mb_routes_summary[] = {
    {"GET", "/v1/partners/:partnerId/benefits/summary", benefits_summary, 0},
    {NULL, NULL, NULL, 0},
};
