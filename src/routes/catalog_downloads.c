/* The downloads of a product (issue 14 and 13): checked, written, and the
 * database rule that every language x OS pair the product offers has a
 * download (sql/011_downloads_complete.sql) answered as 422 by the catalog
 * routes that write products and downloads. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog.h"

static bool verr_set(mb_verr *e, const char *field, const char *msg)
{
    snprintf(e->field, sizeof(e->field), "%.63s", field);
    snprintf(e->message, sizeof(e->message), "%s", msg);
    return false;
}

/* True when s is one of the strings of the JSON array list. */
static bool listed(const json_t *list, const char *s)
{
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v)
    {
        if (json_is_string(v) && strcmp(json_string_value(v), s) == 0)
            return true;
    }
    return false;
}

bool mb_catalog_downloads_check(mb_ctx *c, const json_t *items, const json_t *langs,
                                const json_t *oses, const char *name)
{
    static const char *const item_fields[] = {"language", "os", "url", NULL};
    mb_verr e;
    if (!json_is_array(items) || json_array_size(items) > 1000) {
        verr_set(&e, name, "must be an array of at most 1000 downloads");
        mb_reply_verr(c, &e);
        return false;
    }
    size_t i;
    json_t *it;
    json_array_foreach(items, i, it)
    {
        const char *lang, *os, *url;
        bool ok = json_is_object(it) || verr_set(&e, "", "must be an object");
        ok = ok && mb_v_known(it, item_fields, &e) &&
             mb_v_str(it, "language", true, 1, 35, &lang, &e) &&
             mb_v_str(it, "os", true, 1, 32, &os, &e) &&
             mb_v_str(it, "url", true, 1, 2048, &url, &e);
        ok = ok &&
             (listed(langs, lang) || verr_set(&e, "language", "is not a language of this product"));
        ok = ok && (listed(oses, os) || verr_set(&e, "os", "is not an OS type of this product"));
        ok = ok && (mb_catalog_url_ok(url) || verr_set(&e, "url", "must be an http(s) URL"));
        for (size_t k = 0; ok && k < i; k++) {
            json_t *o = json_array_get(items, k);
            if (strcmp(json_string_value(json_object_get(o, "language")), lang) == 0 &&
                strcmp(json_string_value(json_object_get(o, "os")), os) == 0)
                ok = verr_set(&e, "os", "repeats a language and OS pair listed before");
        }
        if (!ok) {
            char field[2 * sizeof(e.field)];
            snprintf(field, sizeof(field), "%s[%zu]%s%s", name, i, e.field[0] ? "." : "", e.field);
            snprintf(e.field, sizeof(e.field), "%.63s", field);
            mb_reply_verr(c, &e);
            return false;
        }
    }
    return true;
}

bool mb_catalog_downloads_write(mb_ctx *c, const char *product_id, const json_t *items)
{
    char *text = json_dumps(items, JSON_COMPACT);
    const char *p[] = {product_id, text};
    mb_err e = text ? mb_db_exec(&c->db, NULL,
                                 "DELETE FROM product_downloads WHERE product_id = $1::uuid", 1, p)
                    : MB_E_INTERNAL;
    if (e == MB_OK)
        e = mb_db_exec(&c->db, NULL,
                       "INSERT INTO product_downloads (product_id, language, os, url) "
                       "SELECT $1::uuid, t.language, t.os, t.url "
                       "FROM json_to_recordset($2::json) AS t (language text, os text, url text)",
                       2, p);
    free(text);
    if (e != MB_OK)
        mb_reply_err(c, e);
    return e == MB_OK;
}

bool mb_catalog_downloads_complete(mb_ctx *c, const char *product_id, const char *field)
{
    /* The rule is deferred to COMMIT; checked now (in a savepoint, to read
     * the missing pairs after it fails) so that the answer can name them. */
    mb_err e = mb_db_exec(&c->db, NULL, "SAVEPOINT downloads_complete", 0, NULL);
    if (e == MB_OK)
        e = mb_db_exec(&c->db, NULL, "SET CONSTRAINTS product_downloads_complete IMMEDIATE", 0,
                       NULL);
    if (e == MB_OK)
        e = mb_db_exec(&c->db, NULL, "RELEASE SAVEPOINT downloads_complete", 0, NULL);
    if (e == MB_OK)
        return true;
    bool rule = e == MB_E_VALIDATION && strcmp(c->db.constraint, "product_downloads_complete") == 0;
    PGresult *r = NULL;
    const char *p[] = {product_id};
    if (rule)
        e = mb_db_exec(&c->db, NULL, "ROLLBACK TO SAVEPOINT downloads_complete", 0, NULL);
    if (rule && e == MB_OK)
        e = mb_db_exec(&c->db, &r, "SELECT product_missing_downloads($1::uuid)::text", 1, p);
    json_t *missing =
        rule && e == MB_OK && PQntuples(r) == 1 ? json_loads(PQgetvalue(r, 0, 0), 0, NULL) : NULL;
    mb_db_clear(&r);
    if (missing == NULL) {
        mb_reply_err(c, rule && e == MB_OK ? MB_E_INTERNAL : e);
        return false;
    }
    size_t n = json_array_size(missing);
    mb_reply_problem_x(c, MB_E_VALIDATION,
                       json_pack("{s:o, s:[{s:s,s:s}]}", "missing_downloads", missing, "errors",
                                 "field", field, "message",
                                 "must cover every language and OS pair"),
                       "Every language and OS pair the product offers needs a download; %zu "
                       "missing (see 'missing_downloads').",
                       n);
    return false;
}
