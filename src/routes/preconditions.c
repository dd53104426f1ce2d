/* Safe edits (issue 13, DESIGN §4b): the strong ETag of a user's and a
 * partner's document, If-Match on their PATCH, and application/merge-patch+json
 * next to application/json.
 *
 * The ETag is a hash of the document the GET answers (FNV-1a, 128 bits), not
 * the partner's data version: an edit of user A leaves user B's ETag as it
 * was, and a PATCH that changes nothing keeps it. The PATCH reads the same
 * document after locking the row (SELECT ... FOR UPDATE) and compares inside
 * its transaction, so of two PATCHes sent with the same If-Match one wins and
 * the other answers 412. */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "mb_http.h"

void mb_etag_of(const char *body, size_t len, char out[MB_ETAG_LEN])
{
    /* FNV-1a 128: offset basis and prime of the FNV specification. */
    unsigned __int128 h = ((unsigned __int128)0x6c62272e07bb0142ull << 64) | 0x62b821756295c58dull;
    const unsigned __int128 prime = ((unsigned __int128)1 << 88) | 0x13bu;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)body[i];
        h *= prime;
    }
    snprintf(out, MB_ETAG_LEN, "\"%016llx%016llx\"", (unsigned long long)(h >> 64),
             (unsigned long long)h);
}

void mb_set_body_etag(mb_ctx *c)
{
    if (c->resp->status != 200 || c->resp->binary_body == NULL)
        return;
    char tag[MB_ETAG_LEN];
    mb_etag_of(c->resp->binary_body, c->resp->binary_body_length, tag);
    mb_set_header(c, "ETag", tag);
}

/* Walks an If-Match value (RFC 9110 §13.1.1: "*" or a list of entity-tags).
 * Returns false when it is malformed; *match when "*" or a strong tag equal
 * to current (weak tags never match: strong comparison). */
static bool if_match_parse(const char *v, const char *current, bool *match)
{
    *match = false;
    const char *p = v;
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p == '*') {
        p++;
        while (*p == ' ' || *p == '\t')
            p++;
        *match = current != NULL;
        return *p == '\0';
    }
    bool any = false;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (*p == '\0')
            return any;
        bool weak = false;
        if (p[0] == 'W' && p[1] == '/') {
            weak = true;
            p += 2;
        }
        if (*p != '"')
            return false;
        const char *s = p++;
        while (*p != '"') {
            unsigned char ch = (unsigned char)*p;
            if (ch == '\0' || ch < 0x21 || ch == 0x7f)
                return false;
            p++;
        }
        p++;
        size_t n = (size_t)(p - s);
        if (!weak && current != NULL && n == strlen(current) && strncmp(s, current, n) == 0)
            *match = true;
        any = true;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p != ',' && *p != '\0')
            return false;
    }
}

bool mb_if_match_wellformed(mb_ctx *c)
{
    const char *v = mb_header(c, "If-Match");
    bool match;
    if (v == NULL || if_match_parse(v, NULL, &match))
        return true;
    mb_reply_problem(c, MB_E_MALFORMED_HEADER,
                     "Header 'If-Match' must be \"*\" or a list of quoted entity tags, such as the "
                     "ETag a GET answered.");
    return false;
}

bool mb_if_match_doc(mb_ctx *c, const char *sql, int n, const char *const *params, const char *what)
{
    const char *v = mb_header(c, "If-Match");
    if (v == NULL)
        return true;
    PGresult *r = NULL;
    mb_err e = mb_db_exec(&c->db, &r, sql, n, params);
    if (e != MB_OK) {
        mb_reply_err(c, e);
        return false;
    }
    char cur[MB_ETAG_LEN] = "";
    if (PQntuples(r) == 1 && !PQgetisnull(r, 0, 0))
        mb_etag_of(PQgetvalue(r, 0, 0), (size_t)PQgetlength(r, 0, 0), cur);
    mb_db_clear(&r);
    bool match = false;
    if (!if_match_parse(v, cur[0] ? cur : NULL, &match)) {
        mb_reply_problem(c, MB_E_MALFORMED_HEADER, "Header 'If-Match' is malformed.");
        return false;
    }
    if (!match) {
        mb_set_header(c, "ETag", cur);
        mb_reply_problem_x(c, MB_E_PRECONDITION_FAILED, json_pack("{s:s}", "current_etag", cur),
                           "The %s has changed since you read it (current ETag %s); fetch it "
                           "again, apply your change and retry with its ETag.",
                           what, cur);
        return false;
    }
    return true;
}

json_t *mb_body_patch(mb_ctx *c, const char *const *clearable)
{
    static const char merge[] = "application/merge-patch+json";
    const char *ct = mb_header(c, "Content-Type");
    size_t ml = sizeof(merge) - 1;
    bool is_merge = ct != NULL && strncasecmp(ct, merge, ml) == 0 &&
                    (ct[ml] == '\0' || ct[ml] == ';' || ct[ml] == ' ');
    json_t *doc = mb_body_as(c, false, merge);
    if (doc == NULL || !is_merge)
        return doc;
    /* RFC 7396: null removes a member. A list (clearable) becomes empty; a
     * member the resource cannot be without is refused. */
    const char *key;
    json_t *v;
    void *tmp;
    json_object_foreach_safe(doc, tmp, key, v)
    {
        if (!json_is_null(v))
            continue;
        bool listed = false;
        for (size_t i = 0; clearable && clearable[i]; i++)
            if (strcmp(clearable[i], key) == 0)
                listed = true;
        if (listed) {
            json_object_set_new(doc, key, json_array());
            continue;
        }
        mb_verr e;
        snprintf(e.field, sizeof(e.field), "%.63s", key);
        snprintf(e.message, sizeof(e.message), "cannot be removed (null); send a value");
        json_decref(doc);
        mb_reply_verr(c, &e);
        return NULL;
    }
    return doc;
}
