/* The catalog by API (issue 14): the operator creates and changes products,
 * replaces their downloads and reads the key pool's counts; partners list the
 * downloads of a benefit without revealing keys.
 *
 * A purchase keeps what it bought: every benefit is pinned to the product
 * revision it was bought with (sql/005_catalog.sql), so edits here reach new
 * purchases only. What would change the rules of benefits already bought
 * (cloud kind, unit, offer type and duration) cannot change once a product
 * has benefits (409); the category never changes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog.h"
#include "mb_store.h"

static const char *const categories[] = {"software",  "cloud",        "visual_studio",
                                         "technical", "go_to_market", NULL};
static const char *const cloud_kinds[] = {"usage_based", "license_based", NULL};
static const char *const units[] = {"incidents", "hours", NULL};
/* API offer types and the requirement each one stores (products.offer_requirement). */
static const char *const offer_types[] = {"silver_core", "gold_core", "isv_co_sell_ready", NULL};
static const char *const offer_requirements[] = {"silver_competency", "gold_competency",
                                                 "co_sell_ready", NULL};
static const char *const product_fields[] = {
    "code",         "name",       "category", "languages",  "os_types",
    "instructions", "cloud_kind", "unit",     "offer_type", "offer_duration_days",
    "portal_url",   "downloads",  NULL};

/* A product as the operator describes it, checked; strings point into the
 * JSON object it came from. */
typedef struct {
    const char *code, *name, *category, *instructions, *cloud_kind, *unit, *offer_type, *portal_url;
    char *languages; /* JSON arrays (free them) */
    char *os_types;
    long long offer_duration_days;
    bool has_duration;
} product_in;

static bool verr_set(mb_verr *e, const char *field, const char *msg)
{
    snprintf(e->field, sizeof(e->field), "%.63s", field);
    snprintf(e->message, sizeof(e->message), "%s", msg);
    return false;
}

static bool is_code(const char *s)
{
    if (s == NULL || !((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9')))
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '-' || *s == '_' ||
              *s == '.'))
            return false;
    return true;
}

bool mb_catalog_code_ok(const json_t *obj, const char **out, mb_verr *e)
{
    if (!mb_v_str(obj, "code", true, 1, 100, out, e))
        return false;
    if (!is_code(*out))
        return verr_set(e, "code",
                        "must be lower-case letters, digits, '-', '_' or '.', starting with a "
                        "letter or digit");
    return true;
}

static bool is_os(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > 32)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '-' || *s == '_'))
            return false;
    return true;
}

/* An array of up to max distinct strings that pass ok(); *out its JSON. */
static bool string_set(const json_t *obj, const char *name, size_t max, bool (*ok)(const char *),
                       const char *what, char **out, mb_verr *e)
{
    json_t *v = json_object_get(obj, name);
    *out = NULL;
    if (v == NULL || json_is_null(v)) {
        *out = strdup("[]");
        return *out != NULL || verr_set(e, name, "could not be read");
    }
    if (!json_is_array(v) || json_array_size(v) > max) {
        char msg[80];
        snprintf(msg, sizeof(msg), "must be an array of at most %zu %s", max, what);
        return verr_set(e, name, msg);
    }
    size_t i;
    json_t *item;
    json_array_foreach(v, i, item)
    {
        char field[64];
        snprintf(field, sizeof(field), "%s[%zu]", name, i);
        if (!json_is_string(item) || !ok(json_string_value(item))) {
            char msg[80];
            snprintf(msg, sizeof(msg), "must be %s", what);
            return verr_set(e, field, msg);
        }
        for (size_t k = 0; k < i; k++)
            if (strcmp(json_string_value(json_array_get(v, k)), json_string_value(item)) == 0)
                return verr_set(e, field, "is listed twice");
    }
    *out = json_dumps(v, JSON_COMPACT);
    return *out != NULL || verr_set(e, name, "could not be read");
}

static bool lang_ok(const char *s)
{
    return strlen(s) <= 35 && mb_is_lang_tag(s);
}

bool mb_catalog_url_ok(const char *s)
{
    if (strncmp(s, "https://", 8) != 0 && strncmp(s, "http://", 7) != 0)
        return false;
    const char *host = strstr(s, "://") + 3;
    if (*host == '\0' || *host == '/')
        return false;
    for (; *s; s++)
        if ((unsigned char)*s <= ' ' || *s == 0x7f || *s == '"' || *s == '<' || *s == '>' ||
            *s == '\\')
            return false;
    return true;
}

static bool has_keys(const char *category, const char *cloud_kind)
{
    return strcmp(category, "software") == 0 || (strcmp(category, "cloud") == 0 && cloud_kind &&
                                                 strcmp(cloud_kind, "license_based") == 0);
}

static void product_in_free(product_in *p)
{
    free(p->languages);
    free(p->os_types);
}

/* Checks a whole product (a POST body, or a product with a PATCH applied). */
static bool product_check(const json_t *o, product_in *p, mb_verr *e)
{
    memset(p, 0, sizeof(*p));
    if (!mb_v_known(o, product_fields, e) || !mb_catalog_code_ok(o, &p->code, e) ||
        !mb_v_str(o, "name", true, 1, 200, &p->name, e) ||
        !mb_v_enum(o, "category", true, categories, &p->category, e) ||
        !string_set(o, "languages", 50, lang_ok, "language tags such as en-US", &p->languages, e) ||
        !string_set(o, "os_types", 20, is_os, "OS types of 1 to 32 letters, digits, '-' or '_'",
                    &p->os_types, e) ||
        !mb_v_str(o, "instructions", false, 0, 4000, &p->instructions, e) ||
        !mb_v_enum(o, "cloud_kind", false, cloud_kinds, &p->cloud_kind, e) ||
        !mb_v_enum(o, "unit", false, units, &p->unit, e) ||
        !mb_v_enum(o, "offer_type", false, offer_types, &p->offer_type, e) ||
        !mb_v_int(o, "offer_duration_days", false, 1, 3650, &p->offer_duration_days,
                  &p->has_duration, e) ||
        !mb_v_str(o, "portal_url", false, 1, 2048, &p->portal_url, e))
        return false;
    if (p->portal_url && !mb_catalog_url_ok(p->portal_url))
        return verr_set(e, "portal_url", "must be an http(s) URL");
    bool cloud = strcmp(p->category, "cloud") == 0;
    bool technical = strcmp(p->category, "technical") == 0;
    bool gtm = strcmp(p->category, "go_to_market") == 0;
    if (cloud != (p->cloud_kind != NULL))
        return verr_set(e, "cloud_kind",
                        cloud ? "is required for a cloud product"
                              : "applies to cloud products only");
    if (technical != (p->unit != NULL))
        return verr_set(e, "unit",
                        technical ? "is required for a technical product"
                                  : "applies to technical products only");
    if (!gtm && p->offer_type)
        return verr_set(e, "offer_type", "applies to go_to_market products only");
    if (!gtm && p->has_duration)
        return verr_set(e, "offer_duration_days", "applies to go_to_market products only");
    bool keys = has_keys(p->category, p->cloud_kind);
    if (keys && strcmp(p->languages, "[]") == 0)
        return verr_set(e, "languages", "must list at least one language for a product with keys");
    if (keys && strcmp(p->os_types, "[]") == 0)
        return verr_set(e, "os_types", "must list at least one OS type for a product with keys");
    if (!keys && (strcmp(p->languages, "[]") != 0 || strcmp(p->os_types, "[]") != 0))
        return verr_set(e, strcmp(p->languages, "[]") != 0 ? "languages" : "os_types",
                        "apply to products with keys only (software, license-based cloud)");
    return true;
}

static const char *requirement_of(const char *offer_type)
{
    for (size_t i = 0; offer_type && offer_types[i]; i++)
        if (strcmp(offer_types[i], offer_type) == 0)
            return offer_requirements[i];
    return NULL;
}

static bool audit_ok(mb_ctx *c, const char *action, const char *type, const char *id,
                     json_t *details)
{
    char *s = details ? json_dumps(details, JSON_COMPACT) : NULL;
    json_decref(details);
    mb_err e = s ? mb_audit(c, NULL, action, type, id, s) : MB_E_INTERNAL;
    free(s);
    if (e != MB_OK)
        mb_reply_err(c, e);
    return e == MB_OK;
}

static void reply_product(mb_ctx *c, int status, const char *id)
{
    const char *p[] = {id};
    if (mb_reply_doc(c, status, "SELECT doc FROM product_docs WHERE id = $1::uuid", 1, p,
                     "product") &&
        status == 201) {
        char loc[96];
        snprintf(loc, sizeof(loc), "/v1/admin/products/%s", id);
        mb_set_header(c, "Location", loc);
    }
}

static void reply_code_taken(mb_ctx *c, const char *what, const char *code)
{
    mb_reply_problem_x(
        c, MB_E_CONFLICT,
        json_pack("{s:[{s:s,s:s}]}", "errors", "field", "code", "message", "is taken"),
        "A %s with code '%s' exists already; codes are unique.", what, code);
}

/* Writes the checked product: a new row (id NULL) or the row id. Answers and
 * returns false on failure; *new_id receives the id. */
static bool product_write(mb_ctx *c, const char *id, const product_in *p, char new_id[40])
{
    char days[24];
    snprintf(days, sizeof(days), "%lld", p->offer_duration_days);
    const char *v[] = {id,
                       p->code,
                       p->name,
                       p->category,
                       p->languages,
                       p->os_types,
                       p->instructions ? p->instructions : "",
                       p->cloud_kind,
                       p->unit,
                       requirement_of(p->offer_type),
                       p->has_duration ? days : NULL,
                       p->portal_url};
    PGresult *r = NULL;
    mb_err e =
        id == NULL
            ? mb_db_exec(&c->db, &r,
                         "INSERT INTO products (code, name, category, languages, os_types, "
                         "instructions, cloud_kind, unit, offer_requirement, offer_duration_days, "
                         "portal_url) VALUES ($2, $3, $4, "
                         "ARRAY(SELECT json_array_elements_text($5::json)), "
                         "ARRAY(SELECT json_array_elements_text($6::json)), $7, $8, $9, $10, "
                         "$11::int, $12) RETURNING id::text, $1::uuid",
                         12, v)
            : mb_db_exec(&c->db, &r,
                         "UPDATE products SET code = $2, name = $3, category = $4, "
                         "languages = ARRAY(SELECT json_array_elements_text($5::json)), "
                         "os_types = ARRAY(SELECT json_array_elements_text($6::json)), "
                         "instructions = $7, cloud_kind = $8, unit = $9, offer_requirement = $10, "
                         "offer_duration_days = $11::int, portal_url = $12 "
                         "WHERE id = $1::uuid RETURNING id::text",
                         12, v);
    if (e == MB_E_CONFLICT) {
        reply_code_taken(c, "product", p->code);
        return false;
    }
    if (e != MB_OK || PQntuples(r) != 1) {
        mb_db_clear(&r);
        mb_reply_err(c, e != MB_OK ? e : MB_E_INTERNAL);
        return false;
    }
    snprintf(new_id, 40, "%s", PQgetvalue(r, 0, 0));
    mb_db_clear(&r);
    return true;
}

/* POST /v1/admin/products */
static void product_create(mb_ctx *c)
{
    if (!mb_require(c, MB_ACT_OPERATE))
        return;
    json_t *body = mb_body(c, false);
    if (body == NULL)
        return;
    product_in p;
    mb_verr verr;
    char id[40];
    json_t *dl = json_object_get(body, "downloads");
    if (!product_check(body, &p, &verr))
        mb_reply_verr(c, &verr);
    else if ((dl == NULL || json_is_null(dl) ||
              mb_catalog_downloads_check(c, dl, json_object_get(body, "languages"),
                                         json_object_get(body, "os_types"), "downloads")) &&
             product_write(c, NULL, &p, id) &&
             (dl == NULL || json_is_null(dl) || mb_catalog_downloads_write(c, id, dl)) &&
             mb_catalog_downloads_complete(c, id, "downloads") &&
             audit_ok(c, "product.created", "product", id,
                      json_pack("{s:s, s:s}", "code", p.code, "category", p.category)))
        reply_product(c, 201, id);
    product_in_free(&p);
    json_decref(body);
}

/* GET /v1/admin/products/{productId} */
static void product_get(mb_ctx *c)
{
    if (!mb_require(c, MB_ACT_OPERATE))
        return;
    if (!mb_is_uuid(c->param[0])) {
        mb_reply_problem(c, MB_E_NOT_FOUND, "No such product.");
        return;
    }
    reply_product(c, 200, c->param[0]);
}

/* The product of the URL as the API describes it, its row locked, and
 * whether benefits were bought of it. NULL after answering 404. */
static json_t *product_locked(mb_ctx *c, bool *bought)
{
    if (!mb_is_uuid(c->param[0])) {
        mb_reply_problem(c, MB_E_NOT_FOUND, "No such product.");
        return NULL;
    }
    PGresult *r = NULL;
    /* FOR NO KEY UPDATE: purchases and key loads (foreign keys, FOR NO KEY
     * UPDATE of keys.c) of this product wait for the edit, and it for them. */
    mb_err e = mb_db_exec(&c->db, &r,
                          "SELECT d.doc, EXISTS (SELECT 1 FROM benefits b "
                          "WHERE b.product_id = p.id) FROM products p "
                          "JOIN product_docs d ON d.id = p.id WHERE p.id = $1::uuid "
                          "FOR NO KEY UPDATE OF p",
                          1, c->param);
    if (e != MB_OK) {
        mb_reply_err(c, e);
        return NULL;
    }
    json_t *doc = PQntuples(r) == 1 ? json_loads(PQgetvalue(r, 0, 0), 0, NULL) : NULL;
    *bought = PQntuples(r) == 1 && strcmp(PQgetvalue(r, 0, 1), "t") == 0;
    bool found = PQntuples(r) == 1;
    mb_db_clear(&r);
    if (doc == NULL) {
        if (found)
            mb_reply_err(c, MB_E_INTERNAL);
        else
            mb_reply_problem(c, MB_E_NOT_FOUND, "No such product.");
        return NULL;
    }
    return doc;
}

static bool same_member(const json_t *a, const json_t *b, const char *name)
{
    json_t *x = json_object_get(a, name), *y = json_object_get(b, name);
    if (x == NULL || json_is_null(x))
        return y == NULL || json_is_null(y);
    return y != NULL && json_equal(x, y);
}

/* PATCH /v1/admin/products/{productId} */
static void product_update(mb_ctx *c)
{
    if (!mb_require(c, MB_ACT_OPERATE))
        return;
    json_t *body = mb_body(c, false);
    if (body == NULL)
        return;
    mb_verr verr;
    if (!mb_v_known(body, product_fields, &verr)) {
        json_decref(body);
        mb_reply_verr(c, &verr);
        return;
    }
    bool bought = false;
    json_t *cur = product_locked(c, &bought);
    if (cur == NULL) {
        json_decref(body);
        return;
    }
    json_t *merged = json_deep_copy(cur);
    json_object_del(merged, "id");
    json_object_del(merged, "downloads");
    const char *key;
    json_t *v;
    json_object_foreach(body, key, v)
    {
        json_object_set(merged, key, v);
    }
    static const char *const fixed_once_bought[] = {"cloud_kind", "unit", "offer_type",
                                                    "offer_duration_days", NULL};
    product_in p = {0};
    char id[40];
    if (!same_member(cur, merged, "category")) {
        mb_reply_problem_x(
            c, MB_E_VALIDATION,
            json_pack("{s:[{s:s,s:s}]}", "errors", "field", "category", "message", "cannot change"),
            "A product's category cannot change; create a new product instead.");
        goto out;
    }
    for (size_t i = 0; bought && fixed_once_bought[i]; i++)
        if (!same_member(cur, merged, fixed_once_bought[i])) {
            mb_reply_problem_x(c, MB_E_CONFLICT,
                               json_pack("{s:[{s:s,s:s}]}", "errors", "field", fixed_once_bought[i],
                                         "message", "cannot change once bought"),
                               "Field '%s' cannot change: partners have bought this product and "
                               "their benefits follow it. Create a new product instead.",
                               fixed_once_bought[i]);
            goto out;
        }
    if (!product_check(merged, &p, &verr)) {
        mb_reply_verr(c, &verr);
        goto out;
    }
    json_t *dl = json_object_get(body, "downloads");
    bool new_dl = dl != NULL && !json_is_null(dl);
    if (new_dl && !mb_catalog_downloads_check(c, dl, json_object_get(merged, "languages"),
                                              json_object_get(merged, "os_types"), "downloads"))
        goto out;
    if (!product_write(c, c->param[0], &p, id))
        goto out;
    /* Downloads sent replace them all; otherwise the downloads of pairs the
     * product no longer offers go with them. Either way every pair it offers
     * must have one (sql/011). */
    mb_err e = new_dl ? MB_OK
                      : mb_db_exec(&c->db, NULL,
                                   "DELETE FROM product_downloads d USING products p "
                                   "WHERE p.id = $1::uuid AND d.product_id = p.id AND NOT "
                                   "(d.language = ANY (p.languages) AND d.os = ANY (p.os_types))",
                                   1, c->param);
    if (e != MB_OK) {
        mb_reply_err(c, e);
        goto out;
    }
    if ((new_dl && !mb_catalog_downloads_write(c, id, dl)) ||
        !mb_catalog_downloads_complete(c, id, "downloads"))
        goto out;
    json_t *changed = json_array();
    json_object_foreach(body, key, v)
    {
        json_array_append_new(changed, json_string(key));
    }
    if (audit_ok(c, "product.updated", "product", id, json_pack("{s:o}", "fields", changed)))
        reply_product(c, 200, id);
out:
    product_in_free(&p);
    json_decref(merged);
    json_decref(cur);
    json_decref(body);
}

/* PUT /v1/admin/products/{productId}/downloads */
static void downloads_put(mb_ctx *c)
{
    if (!mb_require(c, MB_ACT_OPERATE))
        return;
    json_t *body = mb_body(c, false);
    if (body == NULL)
        return;
    static const char *const known[] = {"items", NULL};
    mb_verr verr;
    if (!mb_v_known(body, known, &verr)) {
        json_decref(body);
        mb_reply_verr(c, &verr);
        return;
    }
    bool bought;
    json_t *cur = product_locked(c, &bought);
    json_t *items = json_object_get(body, "items");
    bool ok = cur != NULL &&
              mb_catalog_downloads_check(c, items, json_object_get(cur, "languages"),
                                         json_object_get(cur, "os_types"), "items") &&
              mb_catalog_downloads_write(c, c->param[0], items) &&
              mb_catalog_downloads_complete(c, c->param[0], "items");
    size_t n = json_array_size(items);
    json_decref(cur);
    json_decref(body);
    if (!ok)
        return;
    const char *p[] = {c->param[0]};
    if (!audit_ok(c, "product.downloads_replaced", "product", c->param[0],
                  json_pack("{s:I}", "downloads", (json_int_t)n)))
        return;
    mb_reply_doc(c, 200,
                 "SELECT json_build_object('product_id', p.id, 'items', doc->'downloads') "
                 "FROM product_docs p WHERE p.id = $1::uuid",
                 1, p, "product");
}

const mb_route mb_routes_catalog[] = {
    {"POST", "/v1/admin/products", product_create, MB_R_TX | MB_R_BODY},
    {"GET", "/v1/admin/products/:productId", product_get, 0},
    {"PATCH", "/v1/admin/products/:productId", product_update, MB_R_TX | MB_R_BODY},
    {"PUT", "/v1/admin/products/:productId/downloads", downloads_put, MB_R_TX | MB_R_BODY},
    {NULL, NULL, NULL, 0},
};
