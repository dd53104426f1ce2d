/* Seat assignments (R6, R7): Visual Studio seats that the Global admin
 * assigns to users of the partner, and usage-based cloud subscriptions
 * (Azure) that a Global admin or MPN partner admin activates by assigning
 * themself.
 *
 * The seat limit is the database's: the seat_assignments trigger keeps
 * benefits.used in step and the CHECK benefits_used_within_quantity refuses
 * one seat too many, whatever the number of service processes. The benefit
 * row is locked first so that concurrent assignments of one benefit take
 * turns instead of failing on each other. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mb_events.h"
#include "mb_http.h"
#include "mb_store.h"
#include "refund.h"

typedef enum { SEATS_NONE, SEATS_VISUAL_STUDIO, SEATS_USAGE_BASED } seat_kind;

static seat_kind kind_of(const mb_benefit *b)
{
    if (strcmp(b->category, "visual_studio") == 0)
        return SEATS_VISUAL_STUDIO;
    if (strcmp(b->category, "cloud") == 0 && strcmp(b->cloud_kind, "usage_based") == 0)
        return SEATS_USAGE_BASED;
    return SEATS_NONE;
}

/* Loads the benefit of the URL and answers 404 / 422 when it has no seats. */
static bool load_seat_benefit(mb_ctx *c, bool for_update, mb_benefit *b, seat_kind *kind)
{
    if (!mb_load_url_benefit(c, for_update, b))
        return false;
    *kind = kind_of(b);
    if (*kind == SEATS_NONE) {
        const char *hint =
            strcmp(b->category, "software") == 0 || strcmp(b->cloud_kind, "license_based") == 0
                ? " Use Get keys for this benefit."
                : "";
        mb_reply_problem_x(
            c, MB_E_VALIDATION,
            json_pack("{s:[{s:s,s:s}]}", "errors", "field", "benefitId", "message", "has no seats"),
            "Seats exist for Visual Studio subscriptions and usage-based cloud "
            "benefits only; this benefit is %s%s%s.%s",
            b->category, b->cloud_kind[0] ? " " : "", b->cloud_kind, hint);
        return false;
    }
    return true;
}

static bool is_caller(mb_ctx *c, const char *user_id)
{
    return strcasecmp(c->who.sub, user_id) == 0;
}

/* GET /v1/partners/{partnerId}/benefits/{benefitId}/assignments */
static void assignments_list(mb_ctx *c)
{
    if (!mb_require(c, MB_ACT_READ) || !mb_partner_gate(c, c->param[0], true, NULL))
        return;
    bool csv = mb_wants_csv(c); /* issue 14: every row as CSV */
    int limit;
    char after[64];
    if (!csv && !mb_page_args(c, &limit, after, sizeof(after), false))
        return;
    mb_benefit b;
    seat_kind kind;
    if (!load_seat_benefit(c, false, &b, &kind))
        return;
    if (csv) {
        mb_export_assignments(c, b.id);
        return;
    }
    const char *p[] = {b.id, after[0] ? after : NULL};
    mb_reply_list(c,
                  "SELECT doc, user_id::text AS cursor_key FROM assignment_docs "
                  "WHERE benefit_id = $1::uuid "
                  "AND ($2::uuid IS NULL OR user_id > $2::uuid) "
                  "ORDER BY user_id LIMIT $3::int",
                  2, p, limit);
}

/* GET /v1/partners/{partnerId}/benefits/{benefitId}/assignments/{userId}: the
 * document a created assignment's Location names; who sees the list sees it. */
static void assignment_get(mb_ctx *c)
{
    if (!mb_require(c, MB_ACT_READ) || !mb_partner_gate(c, c->param[0], true, NULL))
        return;
    mb_benefit b;
    seat_kind kind;
    if (!load_seat_benefit(c, false, &b, &kind))
        return;
    if (!mb_is_uuid(c->param[2])) {
        mb_reply_problem(c, MB_E_NOT_FOUND, "That user holds no seat of this benefit.");
        return;
    }
    const char *p[] = {b.id, c->param[2]};
    PGresult *r = NULL;
    mb_err e = mb_db_exec(&c->db, &r,
                          "SELECT doc FROM assignment_docs WHERE benefit_id = $1::uuid "
                          "AND user_id = $2::uuid",
                          2, p);
    if (e != MB_OK)
        mb_reply_err(c, e);
    else if (PQntuples(r) != 1)
        mb_reply_problem(c, MB_E_NOT_FOUND, "That user holds no seat of this benefit.");
    else
        mb_reply_json(c, 200, PQgetvalue(r, 0, 0), (size_t)PQgetlength(r, 0, 0));
    mb_db_clear(&r);
}

/* POST /v1/partners/{partnerId}/benefits/{benefitId}/assignments */
static void assignment_create(mb_ctx *c)
{
    /* Everyone who may assign anything holds MB_ACT_KEYS; the category then
     * decides between "any user" (Global admin) and "yourself". */
    if (!mb_require(c, MB_ACT_KEYS) || !mb_partner_gate(c, c->param[0], true, NULL))
        return;
    json_t *body = mb_body(c, false);
    if (body == NULL)
        return;
    static const char *const known[] = {"user_id", NULL};
    const char *v = NULL;
    mb_verr verr;
    if (!mb_v_known(body, known, &verr) || !mb_v_str(body, "user_id", true, 1, 64, &v, &verr)) {
        json_decref(body);
        mb_reply_verr(c, &verr);
        return;
    }
    char user_id[65];
    snprintf(user_id, sizeof(user_id), "%s", v);
    json_decref(body);

    mb_benefit b;
    seat_kind kind;
    if (!load_seat_benefit(c, true, &b, &kind))
        return;
    if (kind == SEATS_VISUAL_STUDIO && !mb_require(c, MB_ACT_ASSIGN_OTHERS))
        return;
    if (kind == SEATS_USAGE_BASED && !is_caller(c, user_id)) {
        mb_reply_problem_x(c, MB_E_VALIDATION,
                           json_pack("{s:[{s:s,s:s}]}", "errors", "field", "user_id", "message",
                                     "must be your own user id"),
                           "Usage-based subscriptions are activated by assigning yourself: set "
                           "'user_id' to your own user id (%s), then manage the subscription in "
                           "its portal.",
                           c->who.sub);
        return;
    }
    if (mb_benefit_closed(&b)) {
        mb_reply_problem(c, MB_E_BENEFIT_EXPIRED,
                         "This benefit is %s; renew the package to assign seats again.", b.status);
        return;
    }
    if (!mb_no_pending_cancellation(c, b.purchase_id))
        return;

    PGresult *r = NULL;
    mb_err e = MB_OK;
    bool member = false;
    if (mb_is_uuid(user_id)) {
        const char *up[] = {user_id, c->param[0]};
        e = mb_db_exec(&c->db, &r,
                       "SELECT id::text FROM users WHERE id = $1::uuid AND partner_id = $2::uuid",
                       2, up);
        if (e != MB_OK) {
            mb_reply_err(c, e);
            return;
        }
        member = PQntuples(r) == 1;
        if (member) /* the canonical (lower-case) form */
            snprintf(user_id, sizeof(user_id), "%s", PQgetvalue(r, 0, 0));
        mb_db_clear(&r);
    }
    if (!member) {
        mb_reply_problem(c, MB_E_USER_NOT_IN_PARTNER,
                         "That user is not a user of this partner: add the user in Account "
                         "settings first, then assign the seat.");
        return;
    }

    const char *ip[] = {b.id, user_id, mb_actor(c)};
    e = mb_db_exec(&c->db, NULL,
                   "INSERT INTO seat_assignments (benefit_id, user_id, assigned_by) "
                   "VALUES ($1::uuid, $2::uuid, $3)",
                   3, ip);
    if (e == MB_E_CONFLICT) {
        mb_reply_problem(c, MB_E_ALREADY_ASSIGNED,
                         "This user already holds a seat of this benefit; to reassign it, remove "
                         "the user first.");
        return;
    }
    if (e == MB_E_VALIDATION && strcmp(c->db.constraint, "benefits_used_within_quantity") == 0) {
        mb_reply_problem(c, MB_E_NO_SEATS,
                         "All %d seats of this benefit are assigned; remove a user to free a "
                         "seat.",
                         b.quantity);
        return;
    }
    if (e == MB_E_VALIDATION) { /* the user was deleted meanwhile */
        mb_reply_problem(c, MB_E_USER_NOT_IN_PARTNER,
                         "That user is not a user of this partner: add the user in Account "
                         "settings first, then assign the seat.");
        return;
    }
    if (e != MB_OK) {
        mb_reply_err(c, e);
        return;
    }
    /* The trigger has counted the seat and made an available benefit active
     * (sql/016_seat_status.sql). The answer's document is the event's data. */
    e = mb_db_exec(&c->db, &r,
                   "SELECT doc FROM assignment_docs WHERE benefit_id = $1::uuid "
                   "AND user_id = $2::uuid",
                   2, ip);
    if (e == MB_OK && PQntuples(r) != 1)
        e = MB_E_INTERNAL;
    char details[96];
    snprintf(details, sizeof(details), "{\"user_id\":\"%s\"}", user_id);
    if (e == MB_OK)
        e = mb_audit(c, c->param[0], "seat.assigned", "benefit", b.id, details);
    if (e == MB_OK)
        e = mb_event_data(&c->db, c->param[0], "seat.assigned", "benefit", b.id, c->request_id,
                          PQgetvalue(r, 0, 0));
    if (e != MB_OK) {
        mb_db_clear(&r);
        mb_reply_err(c, e);
        return;
    }
    mb_reply_json(c, 201, PQgetvalue(r, 0, 0), (size_t)PQgetlength(r, 0, 0));
    mb_db_clear(&r);
    char loc[192];
    snprintf(loc, sizeof(loc), "/v1/partners/%s/benefits/%s/assignments/%s", c->param[0], b.id,
             user_id);
    mb_set_header(c, "Location", loc);
}

/* DELETE /v1/partners/{partnerId}/benefits/{benefitId}/assignments/{userId} */
static void assignment_delete(mb_ctx *c)
{
    if (!mb_require(c, MB_ACT_KEYS) || !mb_partner_gate(c, c->param[0], true, NULL))
        return;
    mb_benefit b;
    seat_kind kind;
    if (!load_seat_benefit(c, true, &b, &kind))
        return;
    const char *user_id = c->param[2];
    /* Others' seats are the Global admin's; one's own usage-based
     * subscription is one's own to give up. */
    bool own = kind == SEATS_USAGE_BASED && is_caller(c, user_id);
    if (!own && !mb_require(c, MB_ACT_ASSIGN_OTHERS))
        return;
    if (!mb_is_uuid(user_id)) {
        mb_reply_problem(c, MB_E_NOT_FOUND, "That user holds no seat of this benefit.");
        return;
    }
    const char *p[] = {b.id, user_id};
    PGresult *r = NULL;
    mb_err e = mb_db_exec(&c->db, &r,
                          "DELETE FROM seat_assignments WHERE benefit_id = $1::uuid "
                          "AND user_id = $2::uuid RETURNING user_id::text",
                          2, p);
    if (e != MB_OK) {
        mb_reply_err(c, e);
        return;
    }
    bool removed = PQntuples(r) == 1;
    char uid[40] = "";
    if (removed)
        snprintf(uid, sizeof(uid), "%s", PQgetvalue(r, 0, 0));
    mb_db_clear(&r);
    if (!removed) {
        mb_reply_problem(c, MB_E_NOT_FOUND, "That user holds no seat of this benefit.");
        return;
    }
    /* The trigger has freed the seat; with none left the benefit is
     * available again (sql/016_seat_status.sql). */
    char details[96];
    snprintf(details, sizeof(details), "{\"user_id\":\"%s\"}", uid);
    e = mb_audit(c, c->param[0], "seat.removed", "benefit", b.id, details);
    if (e == MB_OK)
        e = mb_event(&c->db, c->param[0], "seat.removed", "benefit", b.id, c->request_id, details);
    if (e != MB_OK) {
        mb_reply_err(c, e);
        return;
    }
    mb_reply_empty(c, 204);
}

const mb_route mb_routes_seats[] = {
    {"GET", "/v1/partners/:partnerId/benefits/:benefitId/assignments", assignments_list, 0},
    {"POST", "/v1/partners/:partnerId/benefits/:benefitId/assignments", assignment_create,
     MB_R_TX | MB_R_BODY},
    {"GET", "/v1/partners/:partnerId/benefits/:benefitId/assignments/:userId", assignment_get, 0},
    {"DELETE", "/v1/partners/:partnerId/benefits/:benefitId/assignments/:userId", assignment_delete,
     MB_R_TX},
    {NULL, NULL, NULL, 0},
};
