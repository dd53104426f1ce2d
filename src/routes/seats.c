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

/* Answers 422 when the benefit has no seats. */
static bool seat_kind_ok(mb_ctx *c, const mb_benefit *b, seat_kind *kind)
{
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

/* Loads the benefit of the URL and answers 404 / 422 when it has no seats. */
static bool load_seat_benefit(mb_ctx *c, bool for_update, mb_benefit *b, seat_kind *kind)
{
    return mb_load_url_benefit(c, for_update, b) && seat_kind_ok(c, b, kind);
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

/* POST /v1/partners/{partnerId}/benefits/{benefitId}/assignments. Round trips
 * (tests/api/test_round_trips.py): the gate, the benefit locked, the pending
 * cancellation and the user, in one; the seat and its document in one; the
 * audit row and the event with the COMMIT. */
static const char USER_OF_PARTNER_SQL[] =
    "SELECT id::text FROM users WHERE id = $1::uuid AND partner_id = $2::uuid";

/* The body's user, checked once the gate passed (mb_gate_benefit's between),
 * so that its answers keep their place. */
static bool read_assign_body(mb_ctx *c, void *arg)
{
    char *user_id = arg;
    json_t *body = mb_body(c, false);
    if (body == NULL)
        return false;
    static const char *const known[] = {"user_id", NULL};
    const char *v = NULL;
    mb_verr verr;
    if (!mb_v_known(body, known, &verr) || !mb_v_str(body, "user_id", true, 1, 64, &v, &verr)) {
        json_decref(body);
        mb_reply_verr(c, &verr);
        return false;
    }
    snprintf(user_id, 65, "%s", v);
    json_decref(body);
    return true;
}

/* The body's user id when it is a UUID, read before any check so that the
 * user's check can go with the first round trip; answers nothing. */
static void peek_user(mb_ctx *c, char out[65])
{
    out[0] = '\0';
    if (c->req->binary_body == NULL || c->req->binary_body_length == 0)
        return;
    json_t *body = json_loadb(c->req->binary_body, c->req->binary_body_length, 0, NULL);
    const char *v = json_string_value(json_object_get(body, "user_id"));
    if (v != NULL && mb_is_uuid(v))
        snprintf(out, 65, "%s", v);
    json_decref(body);
}

/* Everything an assignment is refused for, in the order of the answers, from
 * the first round trip (x: the pending cancellation, then the user when
 * peeked). user_id becomes the stored (lower-case) form. */
static bool assign_allowed(mb_ctx *c, const mb_benefit *b, char *user_id, const char *peeked,
                           PGresult *const *x)
{
    seat_kind kind;
    if (!seat_kind_ok(c, b, &kind))
        return false;
    /* Everyone who may assign anything holds MB_ACT_KEYS; the category then
     * decides between "any user" (Global admin) and "yourself". */
    if (kind == SEATS_VISUAL_STUDIO && !mb_require(c, MB_ACT_ASSIGN_OTHERS))
        return false;
    if (kind == SEATS_USAGE_BASED && !is_caller(c, user_id)) {
        mb_reply_problem_x(c, MB_E_VALIDATION,
                           json_pack("{s:[{s:s,s:s}]}", "errors", "field", "user_id", "message",
                                     "must be your own user id"),
                           "Usage-based subscriptions are activated by assigning yourself: set "
                           "'user_id' to your own user id (%s), then manage the subscription in "
                           "its portal.",
                           c->who.sub);
        return false;
    }
    if (mb_benefit_closed(b)) {
        mb_reply_problem(c, MB_E_BENEFIT_EXPIRED,
                         "This benefit is %s; renew the package to assign seats again.", b->status);
        return false;
    }
    if (!mb_no_pending_cancellation_in(c, x[0]))
        return false;
    PGresult *r = NULL;
    bool member = false;
    if (peeked[0] && strcmp(peeked, user_id) == 0) {
        member = PQntuples(x[1]) == 1;
        if (member)
            snprintf(user_id, 65, "%s", PQgetvalue(x[1], 0, 0));
    } else if (mb_is_uuid(user_id)) { /* not the body peeked at: not seen here */
        const char *up[] = {user_id, c->param[0]};
        mb_err e = mb_db_exec(&c->db, &r, USER_OF_PARTNER_SQL, 2, up);
        if (e != MB_OK) {
            mb_reply_err(c, e);
            return false;
        }
        member = PQntuples(r) == 1;
        if (member) /* the canonical (lower-case) form */
            snprintf(user_id, 65, "%s", PQgetvalue(r, 0, 0));
        mb_db_clear(&r);
    }
    if (!member) {
        mb_reply_problem(c, MB_E_USER_NOT_IN_PARTNER,
                         "That user is not a user of this partner: add the user in Account "
                         "settings first, then assign the seat.");
        return false;
    }
    return true;
}

static void assignment_create(mb_ctx *c)
{
    if (!mb_require(c, MB_ACT_KEYS))
        return;
    char peeked[65], user_id[65] = "";
    peek_user(c, peeked);
    const char *bp[] = {c->param[1]};
    const char *up[] = {peeked, c->param[0]};
    const mb_q checks[2] = {{MB_PENDING_CANCELLATION_OF_BENEFIT_SQL, 1, bp},
                            {USER_OF_PARTNER_SQL, 2, up}};
    PGresult *x[2] = {NULL, NULL};
    mb_benefit b;
    if (!mb_gate_benefit(c, true, &b, read_assign_body, user_id, peeked[0] ? 2 : 1, checks, x))
        return;
    bool ok = assign_allowed(c, &b, user_id, peeked, x);
    PQclear(x[0]);
    PQclear(x[1]);
    if (!ok)
        return;

    /* The seat, then its document: the trigger has counted the seat and made an
     * available benefit active (sql/016_seat_status.sql). The answer's document
     * is the event's data. */
    const char *ip[] = {b.id, user_id, mb_actor(c)};
    const mb_q w[2] = {{"INSERT INTO seat_assignments (benefit_id, user_id, assigned_by) "
                        "VALUES ($1::uuid, $2::uuid, $3)",
                        3, ip},
                       {"SELECT doc FROM assignment_docs WHERE benefit_id = $1::uuid "
                        "AND user_id = $2::uuid",
                        2, ip}};
    PGresult *wr[2] = {NULL, NULL};
    int at = -1;
    mb_err e = mb_db_exec_many(&c->db, 2, w, wr, &at);
    if (e == MB_E_CONFLICT && at == 0) {
        mb_reply_problem(c, MB_E_ALREADY_ASSIGNED,
                         "This user already holds a seat of this benefit; to reassign it, remove "
                         "the user first.");
        return;
    }
    if (e == MB_E_VALIDATION && at == 0 &&
        strcmp(c->db.constraint, "benefits_used_within_quantity") == 0) {
        mb_reply_problem(c, MB_E_NO_SEATS,
                         "All %d seats of this benefit are assigned; remove a user to free a "
                         "seat.",
                         b.quantity);
        return;
    }
    if (e == MB_E_VALIDATION && at == 0) { /* the user was deleted meanwhile */
        mb_reply_problem(c, MB_E_USER_NOT_IN_PARTNER,
                         "That user is not a user of this partner: add the user in Account "
                         "settings first, then assign the seat.");
        return;
    }
    if (e != MB_OK) {
        mb_reply_err(c, e);
        return;
    }
    PQclear(wr[0]);
    PGresult *r = wr[1];
    if (PQntuples(r) != 1)
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
    mb_benefit b;
    seat_kind kind;
    if (!mb_require(c, MB_ACT_KEYS) || !mb_gate_benefit(c, true, &b, NULL, NULL, 0, NULL, NULL) ||
        !seat_kind_ok(c, &b, &kind))
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
