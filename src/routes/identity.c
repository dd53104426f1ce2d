/* Token revocation on request (DESIGN §4b): a user's tokens (Global admin,
 * User admin of the partner) and every token of a partner (operator). The
 * row mb_revoke_tokens() writes reaches every replica by NOTIFY at commit
 * (src/identity/revocation.c). */
#include <stdio.h>
#include <string.h>

#include "mb_domain.h"
#include "mb_http.h"

/* Revokes (partner, user) in the request's transaction, audits, and answers
 * 200 with the moment in force. */
static void revoke_now(mb_ctx *c, const char *partner_id, const char *user_id, const char *action,
                       const char *target_type, const char *target_id)
{
    const char *p[] = {partner_id, user_id};
    PGresult *r = NULL;
    mb_err e = mb_db_exec(&c->db, &r,
                          "SELECT json_build_object('partner_id', $1::uuid, 'user_id', "
                          "NULLIF($2, ''), 'revoked_at', mb_revoke_tokens($1::uuid, $2))::text",
                          2, p);
    if (e != MB_OK) {
        mb_reply_err(c, e);
        return;
    }
    char doc[512];
    snprintf(doc, sizeof(doc), "%s", PQgetvalue(r, 0, 0));
    mb_db_clear(&r);
    e = mb_audit(c, partner_id, action, target_type, target_id, NULL);
    if (e != MB_OK) {
        mb_reply_err(c, e);
        return;
    }
    mb_reply_json(c, 200, doc, strlen(doc));
}

static void user_revoke_tokens(mb_ctx *c)
{
    if (!mb_require(c, MB_ACT_MANAGE_USERS) || !mb_partner_gate(c, c->param[0], false, NULL))
        return;
    if (!mb_is_uuid(c->param[1])) {
        mb_reply_problem(c, MB_E_NOT_FOUND, "No such user.");
        return;
    }
    if (!mb_body_empty(c))
        return;
    PGresult *r = NULL;
    mb_err e =
        mb_db_exec(&c->db, &r, "SELECT 1 FROM users WHERE partner_id = $1::uuid AND id = $2::uuid",
                   2, c->param);
    if (e != MB_OK) {
        mb_reply_err(c, e);
        return;
    }
    bool found = PQntuples(r) == 1;
    mb_db_clear(&r);
    if (!found) {
        mb_reply_problem(c, MB_E_NOT_FOUND, "No such user.");
        return;
    }
    revoke_now(c, c->param[0], c->param[1], "user.tokens_revoked", "user", c->param[1]);
}

static void partner_revoke_tokens(mb_ctx *c)
{
    if (!mb_require(c, MB_ACT_OPERATE))
        return;
    if (!mb_is_uuid(c->param[0])) {
        mb_reply_problem(c, MB_E_NOT_FOUND, "No such partner.");
        return;
    }
    if (!mb_body_empty(c))
        return;
    PGresult *r = NULL;
    mb_err e = mb_db_exec(&c->db, &r, "SELECT 1 FROM partners WHERE id = $1::uuid", 1, c->param);
    if (e != MB_OK) {
        mb_reply_err(c, e);
        return;
    }
    bool found = PQntuples(r) == 1;
    mb_db_clear(&r);
    if (!found) {
        mb_reply_problem(c, MB_E_NOT_FOUND, "No such partner.");
        return;
    }
    revoke_now(c, c->param[0], "", "partner.tokens_revoked", "partner", c->param[0]);
}

const mb_route mb_routes_identity[] = {
    {"POST", "/v1/partners/:partnerId/users/:userId/revoke-tokens", user_revoke_tokens,
     MB_R_TX | MB_R_BODY},
    {"POST", "/v1/admin/partners/:partnerId/revoke-tokens", partner_revoke_tokens,
     MB_R_TX | MB_R_BODY},
    {NULL, NULL, NULL, 0},
};
