/* What catalog.c (products) and catalog_downloads.c (their downloads) share. */
#ifndef MB_ROUTES_CATALOG_H
#define MB_ROUTES_CATALOG_H

#include "mb_http.h"

/* An http(s) URL without spaces, quotes or angle brackets. */
bool mb_catalog_url_ok(const char *s);
/* Checks items [{language, os, url}] against the product's languages and OS
 * types (JSON arrays): offered values, one item per pair. name is the body
 * member for error fields ("items", "downloads"). Answers 422, returns false. */
bool mb_catalog_downloads_check(mb_ctx *c, const json_t *items, const json_t *langs,
                                const json_t *oses, const char *name);
/* Replaces the product's downloads with items. Answers, returns false. */
bool mb_catalog_downloads_write(mb_ctx *c, const char *product_id, const json_t *items);
/* The rule of sql/011: every pair the product offers has a download, checked
 * now; answers 422 with `missing_downloads` (field names the body member) and
 * returns false otherwise. */
bool mb_catalog_downloads_complete(mb_ctx *c, const char *product_id, const char *field);

#endif
