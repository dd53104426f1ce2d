/* Packages by API (issue 14): the operator creates a package and changes it.
 *
 * Purchases copy a package's allocations into their benefits, so an edit
 * reaches new purchases only. Once a package has purchases it cannot lose an
 * allocation (nor lower one's quantity), and its price and currency stay:
 * refunds of its purchases are computed from them (409; create a new package
 * for a new price). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mb_http.h"

static const char *const package_fields[] = {"code",        "name",     "price", "currency",
                                             "term_months", "benefits", NULL};

typedef struct {
    const char *code, *name, *currency;
    char price[32];
    long long term_months;
    char *benefits; /* JSON [{product_id, quantity}] (free it) */
} package_in;

static bool verr_set(mb_verr *e, const char *field, const char *msg)
{
    snprintf(e->field, sizeof(e->field), "%.63s", field);
    snprintf(e->message, sizeof(e->message), "%s", msg);
    return false;
}

static bool allocations_check(const json_t *o, char **out, mb_verr *e)
{
    static const char *const known[] = {"product_id", "quantity", NULL};
    json_t *list = json_object_get(o, "benefits");
    *out = NULL;
    if (!json_is_array(list) || json_array_size(list) < 1 || json_array_size(list) > 50)
        return verr_set(e, "benefits", "must be an array of 1 to 50 allocations");
    json_t *norm = json_array();
    size_t i;
    json_t *it;
    json_array_foreach(list, i, it)
    {
        const char *pid = NULL;
        long long qty = 0;
        bool ok = json_is_object(it) || verr_set(e, "", "must be an object");
        ok = ok && mb_v_known(it, known, e) && mb_v_uuid(it, "product_id", true, &pid, e) &&
             mb_v_int(it, "quantity", true, 1, 1000000, &qty, NULL, e);
        for (size_t k = 0; ok && k < i; k++)
            if (strcasecmp(
                    json_string_value(json_object_get(json_array_get(norm, k), "product_id")),
                    pid) == 0)
                ok = verr_set(e, "product_id", "is listed twice");
        if (!ok) {
            char field[2 * sizeof(e->field)];
            snprintf(field, sizeof(field), "benefits[%zu]%s%s", i, e->field[0] ? "." : "",
                     e->field);
            snprintf(e->field, sizeof(e->field), "%.63s", field);
            json_decref(norm);
            return false;
        }
        json_array_append_new(
            norm, json_pack("{s:s, s:I}", "product_id", pid, "quantity", (json_int_t)qty));
    }
    *out = json_dumps(norm, JSON_COMPACT);
    json_decref(norm);
    return *out != NULL || verr_set(e, "benefits", "could not be read");
}

static bool package_check(const json_t *o, package_in *p, mb_verr *e)
{
    memset(p, 0, sizeof(*p));
    if (!mb_v_known(o, package_fields, e) || !mb_catalog_code_ok(o, &p->code, e) ||
        !mb_v_str(o, "name", true, 1, 200, &p->name, e) ||
        !mb_v_str(o, "currency", true, 3, 3, &p->currency, e) ||
        !mb_v_int(o, "term_months", true, 1, 120, &p->term_months, NULL, e))
        return false;
    for (const char *s = p->currency; *s; s++)
        if (*s < 'A' || *s > 'Z')
            return verr_set(e, "currency", "must be an ISO 4217 code such as USD");
    json_t *price = json_object_get(o, "price");
    if (price == NULL || json_is_null(price))
        return verr_set(e, "price", "is required");
    if (!json_is_number(price))
        return verr_set(e, "price", "must be a number");
    double v = json_number_value(price);
    snprintf(p->price, sizeof(p->price), "%.2f", v);
    double diff = strtod(p->price, NULL) - v;
    if (!(v >= 0 && v <= 9999999999.99) || diff > 1e-9 * (v > 1 ? v : 1) ||
        -diff > 1e-9 * (v > 1 ? v : 1))
        return verr_set(e, "price", "must be from 0 to 9999999999.99 with at most two decimals");
    return allocations_check(o, &p->benefits, e);
}

static bool audit_ok(mb_ctx *c, const char *action, const char *id, json_t *details)
{
    char *s = details ? json_dumps(details, JSON_COMPACT) : NULL;
    json_decref(details);
    mb_err e = s ? mb_audit(c, NULL, action, "package", id, s) : MB_E_INTERNAL;
    free(s);
    if (e != MB_OK)
        mb_reply_err(c, e);
    return e == MB_OK;
}

/* Answers 422 naming the first allocation whose product does not exist. */
static bool products_exist(mb_ctx *c, const char *benefits)
{
    PGresult *r = NULL;
    const char *p[] = {benefits};
    mb_err e = mb_db_exec(&c->db, &r,
                          "SELECT (t.n - 1)::text FROM json_array_elements($1::json) "
                          "WITH ORDINALITY AS t (v, n) "
                          "WHERE NOT EXISTS (SELECT 1 FROM products p "
                          "WHERE p.id = (t.v->>'product_id')::uuid) ORDER BY t.n LIMIT 1",
                          1, p);
    if (e != MB_OK) {
        mb_reply_err(c, e);
        return false;
    }
    bool ok = PQntuples(r) == 0;
    if (!ok) {
        mb_verr v;
        snprintf(v.field, sizeof(v.field), "benefits[%s].product_id", PQgetvalue(r, 0, 0));
        snprintf(v.message, sizeof(v.message), "is not a product of the catalog");
        mb_reply_verr(c, &v);
    }
    mb_db_clear(&r);
    return ok;
}

/* Writes the package (new when id is NULL) and replaces its allocations. */
static bool package_write(mb_ctx *c, const char *id, const package_in *p, char out_id[40])
{
    char term[24];
    snprintf(term, sizeof(term), "%lld", p->term_months);
    const char *v[] = {id, p->code, p->name, p->price, p->currency, term};
    PGresult *r = NULL;
    mb_err e = id == NULL ? mb_db_exec(&c->db, &r,
                                       "INSERT INTO packages (code, name, price, currency, "
                                       "term_months) VALUES ($2, $3, $4::numeric, $5, $6::int) "
                                       "RETURNING id::text, $1::uuid",
                                       6, v)
                          : mb_db_exec(&c->db, &r,
                                       "UPDATE packages SET code = $2, name = $3, "
                                       "price = $4::numeric, currency = $5, term_months = $6::int "
                                       "WHERE id = $1::uuid RETURNING id::text",
                                       6, v);
    if (e == MB_E_CONFLICT) {
        mb_reply_problem_x(
            c, MB_E_CONFLICT,
            json_pack("{s:[{s:s,s:s}]}", "errors", "field", "code", "message", "is taken"),
            "A package with code '%s' exists already; codes are unique.", p->code);
        return false;
    }
    if (e != MB_OK || PQntuples(r) != 1) {
        mb_db_clear(&r);
        mb_reply_err(c, e != MB_OK ? e : MB_E_INTERNAL);
        return false;
    }
    snprintf(out_id, 40, "%s", PQgetvalue(r, 0, 0));
    mb_db_clear(&r);
    const char *b[] = {out_id, p->benefits};
    e = mb_db_exec(&c->db, NULL, "DELETE FROM package_benefits WHERE package_id = $1::uuid", 1, b);
    if (e == MB_OK)
        e = mb_db_exec(&c->db, NULL,
                       "INSERT INTO package_benefits (package_id, product_id, quantity) "
                       "SELECT $1::uuid, t.product_id, t.quantity "
                       "FROM json_to_recordset($2::json) AS t (product_id uuid, quantity int)",
                       2, b);
    if (e != MB_OK)
        mb_reply_err(c, e);
    return e == MB_OK;
}

static void reply_package(mb_ctx *c, int status, const char *id)
{
    const char *p[] = {id};
    if (mb_reply_doc(c, status, "SELECT doc FROM package_docs WHERE id = $1::uuid", 1, p,
                     "package") &&
        status == 201) {
        char loc[96];
        snprintf(loc, sizeof(loc), "/v1/packages/%s", id);
        mb_set_header(c, "Location", loc);
    }
}

/* POST /v1/admin/packages */
static void package_create(mb_ctx *c)
{
    if (!mb_require(c, MB_ACT_OPERATE))
        return;
    json_t *body = mb_body(c, false);
    if (body == NULL)
        return;
    package_in p;
    mb_verr verr;
    char id[40];
    if (!package_check(body, &p, &verr))
        mb_reply_verr(c, &verr);
    else if (products_exist(c, p.benefits) && package_write(c, NULL, &p, id) &&
             audit_ok(c, "package.created", id,
                      json_pack("{s:s, s:s}", "code", p.code, "price", p.price)))
        reply_package(c, 201, id);
    free(p.benefits);
    json_decref(body);
}

/* The allocations of a package with purchases that the new list drops or
 * lowers: answers 409 naming the first and returns false. */
static bool keeps_allocations(mb_ctx *c, const char *id, const char *benefits)
{
    const char *p[] = {id, benefits};
    PGresult *r = NULL;
    mb_err e = mb_db_exec(&c->db, &r,
                          "SELECT pb.product_id::text, pb.quantity, COALESCE(t.quantity, 0) "
                          "FROM package_benefits pb LEFT JOIN json_to_recordset($2::json) "
                          "AS t (product_id uuid, quantity int) ON t.product_id = pb.product_id "
                          "WHERE pb.package_id = $1::uuid "
                          "AND COALESCE(t.quantity, 0) < pb.quantity "
                          "ORDER BY pb.product_id LIMIT 1",
                          2, p);
    if (e != MB_OK) {
        mb_reply_err(c, e);
        return false;
    }
    bool ok = PQntuples(r) == 0;
    if (!ok)
        mb_reply_problem_x(c, MB_E_CONFLICT,
                           json_pack("{s:[{s:s,s:s}]}", "errors", "field", "benefits", "message",
                                     "cannot lose allocations"),
                           "This package has purchases and cannot lose allocations: product %s "
                           "allocates %s and would allocate %s. Keep it (or raise it), or create "
                           "a new package.",
                           PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 2));
    mb_db_clear(&r);
    return ok;
}

/* PATCH /v1/admin/packages/{packageId} */
static void package_update(mb_ctx *c)
{
    if (!mb_require(c, MB_ACT_OPERATE))
        return;
    json_t *body = mb_body(c, false);
    if (body == NULL)
        return;
    mb_verr verr;
    if (!mb_v_known(body, package_fields, &verr)) {
        json_decref(body);
        mb_reply_verr(c, &verr);
        return;
    }
    if (!mb_is_uuid(c->param[0])) {
        json_decref(body);
        mb_reply_problem(c, MB_E_NOT_FOUND, "No such package.");
        return;
    }
    /* FOR UPDATE conflicts with the key-share lock a purchase's foreign key
     * takes: purchases of this package wait for the edit, and it for them. */
    PGresult *r = NULL;
    mb_err e = mb_db_exec(&c->db, &r,
                          "SELECT d.doc, EXISTS (SELECT 1 FROM purchases pu "
                          "WHERE pu.package_id = k.id), k.price::text "
                          "FROM packages k JOIN package_docs d ON d.id = k.id "
                          "WHERE k.id = $1::uuid FOR UPDATE OF k",
                          1, c->param);
    if (e != MB_OK || PQntuples(r) != 1) {
        if (e != MB_OK)
            mb_reply_err(c, e);
        else
            mb_reply_problem(c, MB_E_NOT_FOUND, "No such package.");
        mb_db_clear(&r);
        json_decref(body);
        return;
    }
    json_t *merged = json_loads(PQgetvalue(r, 0, 0), 0, NULL);
    bool bought = strcmp(PQgetvalue(r, 0, 1), "t") == 0;
    char old_price[32];
    snprintf(old_price, sizeof(old_price), "%s", PQgetvalue(r, 0, 2));
    mb_db_clear(&r);
    package_in p = {0};
    char id[40];
    if (merged == NULL) {
        mb_reply_err(c, MB_E_INTERNAL);
        goto out;
    }
    const char *old_currency = json_string_value(json_object_get(merged, "currency"));
    char currency[8];
    snprintf(currency, sizeof(currency), "%s", old_currency ? old_currency : "");
    /* The document lists allocations with their names; keep what a body takes. */
    json_t *allocs = json_array();
    size_t i;
    json_t *it;
    json_array_foreach(json_object_get(merged, "benefits"), i, it)
    {
        json_array_append_new(allocs, json_pack("{s:O, s:O}", "product_id",
                                                json_object_get(it, "product_id"), "quantity",
                                                json_object_get(it, "quantity")));
    }
    json_object_set_new(merged, "benefits", allocs);
    json_object_del(merged, "id");
    const char *key;
    json_t *v;
    json_object_foreach(body, key, v)
    {
        json_object_set(merged, key, v);
    }
    if (!package_check(merged, &p, &verr)) {
        mb_reply_verr(c, &verr);
        goto out;
    }
    if (bought && (strcmp(p.price, old_price) != 0 || strcmp(p.currency, currency) != 0)) {
        const char *field = strcmp(p.price, old_price) != 0 ? "price" : "currency";
        mb_reply_problem_x(c, MB_E_CONFLICT,
                           json_pack("{s:[{s:s,s:s}]}", "errors", "field", field, "message",
                                     "cannot change once bought"),
                           "This package has purchases, whose refunds are its %s: it cannot "
                           "change. Create a new package for a new price.",
                           field);
        goto out;
    }
    if ((bought && !keeps_allocations(c, c->param[0], p.benefits)) ||
        !products_exist(c, p.benefits) || !package_write(c, c->param[0], &p, id))
        goto out;
    json_t *changed = json_array();
    json_object_foreach(body, key, v)
    {
        json_array_append_new(changed, json_string(key));
    }
    if (audit_ok(c, "package.updated", id, json_pack("{s:o}", "fields", changed)))
        reply_package(c, 200, id);
out:
    free(p.benefits);
    json_decref(merged);
    json_decref(body);
}

const mb_route mb_routes_packages[] = {
    {"POST", "/v1/admin/packages", package_create, MB_R_TX | MB_R_BODY},
    {"PATCH", "/v1/admin/packages/:packageId", package_update, MB_R_TX | MB_R_BODY},
    {NULL, NULL, NULL, 0},
};
