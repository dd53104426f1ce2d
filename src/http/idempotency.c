/* The transaction around a state-changing route, and Idempotency-Key: the
 * same key with the same request replays the first answer. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_internal.h"

static void hex_encode(const unsigned char *in, size_t n, char *out)
{
    static const char hx[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hx[in[i] >> 4];
        out[2 * i + 1] = hx[in[i] & 15];
    }
    out[2 * n] = '\0';
}

static bool idempotency_key_ok(const char *k)
{
    size_t n = strlen(k);
    if (n == 0 || n > 200)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)k[i] < 0x21 || (unsigned char)k[i] > 0x7e)
            return false;
    return true;
}

/* Runs a state-changing handler in one transaction. With an Idempotency-Key,
 * the key is claimed first in the same transaction: a concurrent request with
 * the same key waits on the claim and then replays the committed answer. */
void mb_run_tx(mb_ctx *c, const mb_route *r)
{
    /* The contract takes Idempotency-Key on POSTs only (DESIGN §4): elsewhere
     * the header is ignored, rather than answered with a 422 that a DELETE
     * does not document. */
    const char *key =
        strcmp(c->req->http_verb, "POST") == 0 ? mb_header(c, "Idempotency-Key") : NULL;
    char scope[192];
    char *hex = NULL;
    if (key != NULL && !idempotency_key_ok(key)) {
        mb_reply_problem(c, MB_E_VALIDATION,
                         "Header 'Idempotency-Key' must be 1 to 200 printable ASCII characters.");
        return;
    }
    mb_err e = mb_db_begin(&c->db);
    if (e != MB_OK) {
        mb_reply_err(c, e);
        return;
    }
    if (key != NULL) {
        /* The caller's own: partner and subject. A colleague who sends the same key never
         * gets this caller's answer (nor learns it was made). */
        if (c->who.tid[0] != '\0')
            snprintf(scope, sizeof(scope), "%s:%s", c->who.tid, c->who.sub);
        else
            snprintf(scope, sizeof(scope), "op:%s", c->who.sub);
        /* The hash covers the method, the path and the body; a JSON body is
         * hashed in a canonical form (compact, sorted keys) so that a retry
         * re-serialised by a client library or a proxy still matches. */
        const char *bbytes = c->req->binary_body;
        size_t blen = c->req->binary_body_length;
        char *canon = NULL;
        if (blen > 0) {
            json_t *doc = json_loadb(bbytes, blen, JSON_REJECT_DUPLICATES, NULL);
            canon = doc ? json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
            json_decref(doc);
            if (canon != NULL) {
                bbytes = canon;
                blen = strlen(canon);
            }
        }
        size_t plen = strlen(c->req->http_verb) + 1 + strlen(c->req->url_path) + 1;
        hex = malloc(2 * (plen + blen) + 1);
        unsigned char *raw = malloc(plen + blen + 1);
        if (hex == NULL || raw == NULL) {
            free(raw);
            free(hex);
            free(canon);
            mb_db_rollback(&c->db);
            mb_reply_err(c, MB_E_INTERNAL);
            return;
        }
        snprintf((char *)raw, plen + 1, "%s %s\n", c->req->http_verb, c->req->url_path);
        if (blen > 0)
            memcpy(raw + plen, bbytes, blen);
        hex_encode(raw, plen + blen, hex);
        free(raw);
        free(canon);
        char roles[16];
        snprintf(roles, sizeof(roles), "%u", c->who.roles);
        const char *p[] = {scope, key, hex, roles};
        PGresult *res = NULL;
        e = mb_db_defer(&c->db, /* it rides with the claim below */
                        "DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2 "
                        "AND created_at < now() - interval '24 hours'",
                        2, p);
        if (e == MB_OK)
            e = mb_db_exec(&c->db, &res,
                           "INSERT INTO idempotency_keys (scope, key, request_hash, status, body, "
                           "roles) VALUES ($1, $2, sha256(decode($3, 'hex')), 0, '', $4::int) "
                           "ON CONFLICT (scope, key) DO NOTHING RETURNING 1",
                           4, p);
        if (e != MB_OK) {
            free(hex);
            mb_db_rollback(&c->db);
            mb_reply_err(c, e);
            return;
        }
        bool claimed = PQntuples(res) == 1;
        mb_db_clear(&res);
        if (!claimed) {
            e = mb_db_exec(&c->db, &res,
                           "SELECT request_hash = sha256(decode($3, 'hex')), status, body, "
                           "location, roles & ~$4::int = 0, retry_after FROM idempotency_keys "
                           "WHERE scope = $1 AND key = $2",
                           4, p);
            free(hex);
            mb_db_rollback(&c->db);
            if (e != MB_OK || PQntuples(res) != 1) {
                mb_db_clear(&res);
                mb_reply_err(c, e != MB_OK ? e : MB_E_UNAVAILABLE);
                return;
            }
            if (strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
                mb_reply_problem(c, MB_E_IDEMPOTENCY_KEY_REUSED,
                                 "This Idempotency-Key was used with a different request; use a "
                                 "new key for a new request.");
            } else if (strcmp(PQgetvalue(res, 0, 4), "t") != 0 && !(r->flags & MB_R_SECRET)) {
                /* The role check before a replay: the caller lost a role the request was
                 * made with, so the stored answer is no longer theirs to see. */
                mb_reply_problem(c, MB_E_FORBIDDEN_ROLE,
                                 "Your roles changed since this request was first made: it needs "
                                 "a role you no longer have. Ask your Global admin.");
            } else if (r->flags & MB_R_SECRET) {
                /* The first answer held secrets and was not kept: answer again. */
                mb_db_clear(&res);
                e = mb_db_begin(&c->db);
                if (e != MB_OK) {
                    mb_reply_err(c, e);
                    return;
                }
                r->handler(c);
                if (c->resp->status >= 200 && c->resp->status < 300) {
                    mb_set_header(c, "Idempotent-Replayed", "true");
                    e = mb_db_commit(&c->db);
                    if (e != MB_OK) {
                        mb_db_rollback(&c->db);
                        mb_reply_err(c, e);
                    }
                } else {
                    mb_db_rollback(&c->db);
                }
                return;
            } else {
                int status = atoi(PQgetvalue(res, 0, 1));
                size_t bl = (size_t)PQgetlength(res, 0, 2);
                if (bl > 0)
                    mb_reply_json(c, status, PQgetvalue(res, 0, 2), bl);
                else
                    mb_reply_empty(c, status);
                if (!PQgetisnull(res, 0, 3))
                    mb_set_header(c, "Location", PQgetvalue(res, 0, 3));
                if (!PQgetisnull(res, 0, 5)) /* issue 18: required on an activation's 202 */
                    mb_set_header(c, "Retry-After", PQgetvalue(res, 0, 5));
                mb_set_header(c, "Idempotent-Replayed", "true");
            }
            mb_db_clear(&res);
            return;
        }
    }

    r->handler(c);

    long status = c->resp->status;
    if (status >= 200 && status < 300) {
        e = MB_OK;
        if (key != NULL) {
            char st[8];
            snprintf(st, sizeof(st), "%ld", status);
            char *body = malloc(c->resp->binary_body_length + 1);
            if (body == NULL) {
                e = MB_E_INTERNAL;
            } else {
                size_t bl = (r->flags & MB_R_SECRET) ? 0 : c->resp->binary_body_length;
                if (bl > 0)
                    memcpy(body, c->resp->binary_body, bl);
                body[bl] = '\0';
                const char *p[] = {scope,
                                   key,
                                   st,
                                   body,
                                   u_map_get(c->resp->map_header, "Location"),
                                   u_map_get(c->resp->map_header, "Retry-After")};
                e = mb_db_defer(&c->db,
                                "UPDATE idempotency_keys SET status = $3::int, body = $4, "
                                "location = $5, retry_after = $6 WHERE scope = $1 AND key = $2",
                                6, p);
                free(body);
            }
        }
        if (e == MB_OK)
            e = mb_db_commit(&c->db);
        if (e != MB_OK) {
            mb_db_rollback(&c->db);
            u_map_remove_from_key(c->resp->map_header, "Location");
            mb_reply_err(c, e);
        }
    } else {
        /* a refused or failed write names nothing it made (a deferred statement can fail
         * at the answer's read, after the route meant to answer 201) */
        u_map_remove_from_key(c->resp->map_header, "Location");
        mb_db_rollback(&c->db);
    }
    free(hex);
}
