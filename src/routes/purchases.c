/* Package purchases and their renewal (R2, R3). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mb_events.h"
#include "mb_http.h"
#include "refund.h"

static const char pmc_detail[] =
    "This partner's membership is still in Partner Membership Center (PMC): buy, renew and "
    "review packages in PMC until you are invited to move to Partner Center.";

/* Renewal opens this many days before term_end. */
#define RENEWAL_WINDOW "90 days"

static void reply_purchase(mb_ctx *c, int status, const char *purchase_id, bool location)
{
    const char *p[] = {purchase_id};
    if (mb_reply_doc(c, status, "SELECT doc FROM purchase_docs WHERE id = $1::uuid", 1, p,
                     "purchase") &&
        location) {
        char loc[128];
        snprintf(loc, sizeof(loc), "/v1/partners/%s/purchases/%s", c->param[0], purchase_id);
        mb_set_header(c, "Location", loc);
    }
}

static bool audit(mb_ctx *c, const char *action, const char *purchase_id, json_t *details)
{
    char *d = details ? json_dumps(details, JSON_COMPACT) : NULL;
    json_decref(details);
    mb_err e = d ? mb_audit(c, c->param[0], action, "purchase", purchase_id, d) : MB_E_INTERNAL;
    free(d);
    if (e == MB_OK)
        e = mb_event(&c->db, c->param[0], action, "purchase", purchase_id, c->request_id, NULL);
    if (e != MB_OK)
        mb_reply_err(c, e);
    return e == MB_OK;
}

static void purchase_create(mb_ctx *c)
{
    static const char *const known[] = {"package_id", NULL};
    if (!mb_require(c, MB_ACT_PURCHASE) || !mb_partner_gate(c, c->param[0], true, pmc_detail))
        return;
    json_t *body = mb_body(c, false);
    if (body == NULL)
        return;
    mb_verr ve;
    const char *package_id;
    if (!mb_v_known(body, known, &ve) || !mb_v_uuid(body, "package_id", true, &package_id, &ve)) {
        json_decref(body);
        mb_reply_verr(c, &ve);
        return;
    }
    char pkg[40];
    snprintf(pkg, sizeof(pkg), "%s", package_id);
    json_decref(body);

    /* A purchase past its term still says 'active' in its row until
     * something notices: mark it expired so that the package can be bought
     * again (the unique index only counts active purchases). */
    const char *p[] = {c->param[0], pkg, mb_actor(c)};
    mb_err e = mb_db_exec(&c->db, NULL,
                          "UPDATE purchases SET status = 'expired' WHERE partner_id = $1::uuid "
                          "AND package_id = $2::uuid AND status = 'active' AND term_end <= now()",
                          2, p);
    PGresult *r = NULL;
    if (e == MB_OK)
        e = mb_db_exec(
            &c->db, &r,
            "INSERT INTO purchases (partner_id, package_id, purchased_at, term_end, "
            "created_by) "
            "SELECT $1::uuid, k.id, now(), now() + make_interval(months => k.term_months), "
            "$3 FROM packages k WHERE k.id = $2::uuid "
            "RETURNING id, to_json(term_end) #>> '{}'",
            3, p);
    if (e == MB_E_CONFLICT && strcmp(c->db.constraint, "purchases_one_active_uq") == 0) {
        mb_reply_problem(c, MB_E_ALREADY_PURCHASED,
                         "This partner already holds package %s; renew the purchase instead "
                         "(POST .../purchases/{purchaseId}/renewal, from 90 days before its "
                         "term ends).",
                         pkg);
        return;
    }
    if (e != MB_OK) {
        mb_reply_err(c, e);
        return;
    }
    if (PQntuples(r) != 1) {
        mb_db_clear(&r);
        mb_reply_problem_x(
            c, MB_E_VALIDATION,
            json_pack("{s:[{s:s,s:s}]}", "errors", "field", "package_id", "message",
                      "is not a package of the catalog"),
            "Field 'package_id' is not a package of the catalog (GET /v1/packages).");
        return;
    }
    char id[40], term_end[64];
    snprintf(id, sizeof(id), "%s", PQgetvalue(r, 0, 0));
    snprintf(term_end, sizeof(term_end), "%s", PQgetvalue(r, 0, 1));
    mb_db_clear(&r);

    /* R3: one benefit per allocation of the package. */
    const char *pb[] = {c->param[0], id, pkg};
    e = mb_db_exec(&c->db, &r,
                   "INSERT INTO benefits (partner_id, purchase_id, product_id, category, quantity) "
                   "SELECT $1::uuid, $2::uuid, pb.product_id, pr.category, pb.quantity "
                   "FROM package_benefits pb JOIN products pr ON pr.id = pb.product_id "
                   "WHERE pb.package_id = $3::uuid ORDER BY pr.category, pr.code "
                   "RETURNING id",
                   3, pb);
    if (e != MB_OK) {
        mb_reply_err(c, e);
        return;
    }
    int nbenefits = PQntuples(r);
    mb_db_clear(&r);
    if (audit(c, "purchase.created", id,
              json_pack("{s:s, s:s, s:i}", "package_id", pkg, "term_end", term_end, "benefits",
                        nbenefits)))
        reply_purchase(c, 201, id, true);
}

static void purchases_list(mb_ctx *c)
{
    if (mb_require(c, MB_ACT_READ))
        mb_reply_partner_page(c, true, pmc_detail, MB_PARTNER_PAGE_SQL("purchase_docs"));
}

static void purchase_get(mb_ctx *c)
{
    if (mb_require(c, MB_ACT_READ))
        mb_reply_partner_doc(c, true, pmc_detail, MB_PARTNER_DOC_SQL("purchase_docs"), "purchase");
}

static void purchase_renew(mb_ctx *c)
{
    if (!mb_require(c, MB_ACT_PURCHASE) || !mb_partner_gate(c, c->param[0], true, pmc_detail))
        return;
    if (!mb_is_uuid(c->param[1])) {
        mb_reply_problem(c, MB_E_NOT_FOUND, "No such purchase.");
        return;
    }
    if (!mb_body_empty(c))
        return;
    /* The row lock makes two renewals of the same purchase run one after
     * the other: the second sees the new term_end and is refused. */
    PGresult *r = NULL;
    mb_err e = mb_db_exec(&c->db, &r,
                          "SELECT pu.status, pu.term_end <= now(), "
                          "pu.term_end - interval '" RENEWAL_WINDOW "' <= now(), "
                          "to_json(pu.term_end - interval '" RENEWAL_WINDOW "') #>> '{}', "
                          "to_json(pu.term_end) #>> '{}', k.term_months "
                          "FROM purchases pu JOIN packages k ON k.id = pu.package_id "
                          "WHERE pu.partner_id = $1::uuid AND pu.id = $2::uuid FOR UPDATE OF pu",
                          2, c->param);
    if (e != MB_OK) {
        mb_reply_err(c, e);
        return;
    }
    if (PQntuples(r) != 1) {
        mb_db_clear(&r);
        mb_reply_problem(c, MB_E_NOT_FOUND, "No such purchase.");
        return;
    }
    bool active =
        strcmp(PQgetvalue(r, 0, 0), "active") == 0 && strcmp(PQgetvalue(r, 0, 1), "f") == 0;
    bool open = strcmp(PQgetvalue(r, 0, 2), "t") == 0;
    char opens_at[40], old_end[64], status[16];
    snprintf(opens_at, sizeof(opens_at), "%s", PQgetvalue(r, 0, 3));
    snprintf(old_end, sizeof(old_end), "%s", PQgetvalue(r, 0, 4));
    snprintf(status, sizeof(status), "%s",
             active                                          ? "active"
             : strcmp(PQgetvalue(r, 0, 0), "cancelled") == 0 ? "cancelled"
                                                             : "expired");
    mb_db_clear(&r);
    if (!active) {
        mb_reply_problem(c, MB_E_PURCHASE_NOT_ACTIVE,
                         "This purchase is %s; only an active purchase can be renewed. Buy the "
                         "package again instead.",
                         status);
        return;
    }
    if (!open) {
        mb_reply_problem(c, MB_E_RENEWAL_NOT_OPEN,
                         "Renewal opens 90 days before the term ends, on %s.", opens_at);
        return;
    }
    if (!mb_no_pending_cancellation(c, c->param[1]))
        return;
    e = mb_db_exec(&c->db, &r,
                   "UPDATE purchases pu SET term_end = pu.term_end + make_interval(months => "
                   "k.term_months) FROM packages k WHERE k.id = pu.package_id "
                   "AND pu.id = $2::uuid AND pu.partner_id = $1::uuid "
                   "RETURNING to_json(pu.term_end) #>> '{}'",
                   2, c->param);
    if (e != MB_OK || PQntuples(r) != 1) {
        mb_db_clear(&r);
        mb_reply_err(c, e != MB_OK ? e : MB_E_INTERNAL);
        return;
    }
    json_t *details =
        json_pack("{s:{s:s, s:s}}", "term_end", "from", old_end, "to", PQgetvalue(r, 0, 0));
    mb_db_clear(&r);
    /* The new term brings a fresh allocation of incidents and hours; seats
     * and keys carry over. */
    e = mb_db_exec(&c->db, &r,
                   "UPDATE benefits b SET used = 0 FROM products p WHERE p.id = b.product_id "
                   "AND b.purchase_id = $1::uuid AND b.category = 'technical' "
                   "AND p.unit IN ('incidents', 'hours') AND b.used <> 0 RETURNING 1",
                   1, c->param + 1);
    if (e != MB_OK) {
        json_decref(details);
        mb_reply_err(c, e);
        return;
    }
    json_object_set_new(details, "allocations_renewed", json_integer(PQntuples(r)));
    mb_db_clear(&r);
    if (audit(c, "purchase.renewed", c->param[1], details))
        reply_purchase(c, 200, c->param[1], false);
}

const mb_route mb_routes_purchases[] = {
    {"GET", "/v1/partners/:partnerId/purchases", purchases_list, 0},
    {"POST", "/v1/partners/:partnerId/purchases", purchase_create, MB_R_TX | MB_R_BODY},
    {"GET", "/v1/partners/:partnerId/purchases/:purchaseId", purchase_get, 0},
    {"POST", "/v1/partners/:partnerId/purchases/:purchaseId/renewal", purchase_renew,
     MB_R_TX | MB_R_BODY},
    {NULL, NULL, NULL, 0},
};
