/* The API reference page (issue 15): GET /docs is a small HTML page that runs
 * Redoc's standalone bundle (GET /docs/redoc.standalone.js) on this service's
 * own contract (GET /openapi.yaml). Nothing comes from a CDN: the bundle is the
 * pinned `redoc` of tests/docs/package.json, copied next to the binary at build
 * time (cmake/copy_docs.cmake) and read from DOCS_DIR (default: <build>/docs). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mb_http.h"

#ifndef MB_DEFAULT_DOCS_DIR
#define MB_DEFAULT_DOCS_DIR "docs"
#endif

/* Relative URLs: the page also works behind a path prefix (/api/docs loads
 * /api/openapi.yaml). The empty icon spares the browser a /favicon.ico 404. */
static const char page[] =
    "<!DOCTYPE html>\n"
    "<html lang=\"en\">\n"
    "<head>\n"
    "<meta charset=\"utf-8\">\n"
    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
    "<title>mpn-benefits API reference</title>\n"
    "<link rel=\"icon\" href=\"data:,\">\n"
    "<style>body{margin:0;padding:0}</style>\n"
    "</head>\n"
    "<body>\n"
    "<noscript>This page needs JavaScript. The contract itself: <a "
    "href=\"openapi.yaml\">openapi.yaml</a>.</noscript>\n"
    "<div id=\"redoc\"></div>\n"
    "<script src=\"docs/redoc.standalone.js\"></script>\n"
    "<script>\n"
    "Redoc.init(\"openapi.yaml\", {pathInMiddlePanel: true}, document.getElementById(\"redoc\"));\n"
    "</script>\n"
    "</body>\n"
    "</html>\n";

static void docs_page(mb_ctx *c)
{
    ulfius_set_binary_body_response(c->resp, 200, page, sizeof(page) - 1);
    mb_set_header(c, "Content-Type", "text/html; charset=utf-8");
    mb_set_header(c, "Cache-Control", "no-cache");
}

static void docs_bundle(mb_ctx *c)
{
    const char *dir = getenv("DOCS_DIR");
    char path[1024];
    snprintf(path, sizeof(path), "%s/redoc.standalone.js",
             dir != NULL && dir[0] != '\0' ? dir : MB_DEFAULT_DOCS_DIR);
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    long n = -1;
    if (f != NULL && fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) > 0 && n < (64L << 20) &&
        fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)n)) != NULL &&
        fread(buf, 1, (size_t)n, f) == (size_t)n) {
        ulfius_set_binary_body_response(c->resp, 200, buf, (size_t)n);
        mb_set_header(c, "Content-Type", "text/javascript; charset=utf-8");
        mb_set_header(c, "Cache-Control", "public, max-age=3600");
    } else {
        mb_reply_problem(c, MB_E_NOT_FOUND,
                         "The API reference bundle is not installed (DOCS_DIR): run "
                         "`npm ci` in tests/docs and rebuild.");
    }
    free(buf);
    if (f != NULL)
        fclose(f);
}

const mb_route mb_routes_docs[] = {
    {"GET", "/docs", docs_page, MB_R_PUBLIC},
    {"GET", "/docs/redoc.standalone.js", docs_bundle, MB_R_PUBLIC},
    {NULL, NULL, NULL, 0},
};
