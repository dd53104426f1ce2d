"""Issue 12, point 1: the transactional outbox (DESIGN §4b "Events").

Table-driven over the role matrix (tests/api/role_matrix.py) and its request recipes
(test_role_matrix.py): every state-changing operation of the contract has a line in EVENT_OF
(the event type it writes) or in NO_EVENT (why it writes none); a new state-changing operation
without a line fails here. Each one is then sent once by an allowed caller and must write
exactly its event, once, for the partner, with the subject as its GET shows it and the request
id of the answer. 4xx and rolled-back requests write none; a key reveal never puts a key in an
event."""
from __future__ import annotations

import json
import threading

import pytest

import test_role_matrix as rm
from fresh_partner import WINDOWS_SERVER, fresh_partner
from helpers import (BASE, Client, assert_problem, db_all, db_exec, db_val, idem, token)
from role_matrix import AA, GA, OP, PA, ROWS, UA, Row

world = rm.world  # the role matrix's fresh partner (a module fixture of its own here)

P = "/v1/partners/{partnerId}"
B = P + "/benefits/{benefitId}"

# row id (role_matrix.Row.id) -> the event type its success writes
EVENT_OF = {
    f"POST {P}/users": "user.created",
    f"PATCH {P}/users/{{userId}}": "user.updated",
    f"DELETE {P}/users/{{userId}}": "user.deleted",
    f"POST {P}/purchases": "purchase.created",
    f"POST {P}/purchases/{{purchaseId}}/renewal": "purchase.renewed",
    f"POST {P}/purchases/{{purchaseId}}/cancellation": "purchase.cancelled",
    f"POST {B}/keys [software benefit]": "benefit.keys_revealed",
    f"POST {B}/keys [license-based cloud benefit]": "benefit.keys_revealed",
    f"POST {B}/assignments [visual_studio seat for another user]": "seat.assigned",
    f"POST {B}/assignments/batch [visual_studio seats]": "seat.assigned",
    f"POST {B}/assignments [usage-based cloud, assigning yourself]": "seat.assigned",
    f"DELETE {B}/assignments/{{userId}} [visual_studio seat of another user]": "seat.removed",
    f"DELETE {B}/assignments/{{userId}} [usage-based cloud, your own seat]": "seat.removed",
    f"POST {B}/activation [technical benefit]": "activation.requested",
    f"POST {B}/activation [go_to_market offer]": "activation.requested",
    f"POST {B}/support-requests": "support_request.created",
    f"PUT {P}/marketing-contact": "marketing_contact.updated",
    "POST /v1/admin/activations/{activationId}/complete": "activation.completed",
    "POST /v1/admin/activations/{activationId}/reject": "activation.rejected",
    # issue 13: cancellation as a service request (DESIGN §4b names these types)
    f"POST {P}/cancellation-requests": "cancellation_request.created",
    "POST /v1/admin/cancellation-requests/{requestId}/complete": "cancellation_request.completed",
    "POST /v1/admin/cancellation-requests/{requestId}/reject": "cancellation_request.rejected",
}

# row id -> why its request writes no event
NO_EVENT = {
    f"POST {B}/activation [software benefit (not activatable)]":
        "its answer is 422: nothing changes",
    "POST /v1/admin/partners": "onboarding: the operator's back office, no partner event type",
    "PATCH /v1/admin/partners/{partnerId}": "the operator's back office, no partner event type",
    "POST /v1/admin/products/{productId}/keys": "a key pool is the operator's, of no partner",
    "POST /v1/admin/products": "the operator's catalog, of no partner (audited)",
    "PATCH /v1/admin/products/{productId}": "the operator's catalog, of no partner (audited)",
    "PUT /v1/admin/products/{productId}/downloads": "the operator's catalog (audited)",
    "POST /v1/admin/packages": "the operator's catalog, of no partner (audited)",
    "PATCH /v1/admin/packages/{packageId}": "the operator's catalog, of no partner (audited)",
    f"POST {P}/webhooks": "webhooks are where events go, not partner data that changes",
    f"PATCH {P}/webhooks/{{webhookId}}": "webhook configuration (audited)",
    f"DELETE {P}/webhooks/{{webhookId}}": "webhook configuration (audited)",
    f"POST {P}/webhooks/{{webhookId}}/rotate-secret": "webhook configuration (audited)",
    f"POST {P}/webhooks/{{webhookId}}/ping": "a test delivery, not an event of the feed",
    f"POST {P}/webhooks/{{webhookId}}/deliveries/{{deliveryId}}/retry": "a delivery, not an event",
    f"POST {P}/users/{{userId}}/revoke-tokens":
        "tokens are the identity provider's, not partner data; no event type in DESIGN §4b (audited)",
    "POST /v1/admin/partners/{partnerId}/revoke-tokens":
        "tokens are the identity provider's, not partner data; no event type in DESIGN §4b (audited)",
}

SCHEDULED = ("benefit.expiring", "purchase.renewal_open", "purchase.refund_window_closing")

SUBJECT_TYPE = {"user": "user", "purchase": "purchase", "benefit": "benefit", "seat": "benefit",
                "activation": "activation", "support_request": "support_request",
                "marketing_contact": "marketing_contact",
                "cancellation_request": "cancellation_request"}


def _events(partner: str, after: int = 0) -> list[dict]:
    return [{"seq": s, "type": t, "doc": d} for s, t, d in db_all(
        "SELECT seq, type, doc FROM event_docs WHERE partner_id = %s AND seq > %s ORDER BY seq",
        partner, after)]


def _last(partner: str) -> int:
    return db_val("SELECT COALESCE(max(seq), 0) FROM events WHERE partner_id = %s", partner)


def _caller(row: Row) -> str:
    return next(w for w in (GA, PA, OP, UA, AA) if w in row.allowed)


MUTATING = [r for r in ROWS if r.method != "GET"]


def test_every_state_changing_operation_says_which_event_it_writes():
    ids = {r.id for r in MUTATING}
    missing = sorted(ids - set(EVENT_OF) - set(NO_EVENT))
    assert not missing, ("state-changing operations without a line in EVENT_OF or NO_EVENT of "
                         f"{__file__} (which event does it write?): {missing}")
    assert not set(EVENT_OF) & set(NO_EVENT)
    assert not sorted((set(EVENT_OF) | set(NO_EVENT)) - ids), "lines that name no operation"


@pytest.mark.parametrize("row", MUTATING, ids=[r.id for r in MUTATING])
def test_each_state_change_writes_its_event_once(world, row: Row):
    who = _caller(row)
    req = rm.RECIPES[row.id](world, who)
    total = db_val("SELECT count(*) FROM events WHERE type <> ALL (%s)", list(SCHEDULED))
    before = _last(world.partner)
    r = rm._send(world.clients[who], row.method, req)
    assert r.status_code == req.expect, r.text[:300]
    # the scheduler may write a scheduled event meanwhile (a recipe moved a term end)
    new = [e for e in _events(world.partner, before) if e["type"] not in SCHEDULED]
    want = EVENT_OF.get(row.id)
    if want is None:
        assert new == [], f"{row.id} wrote events: {[e['type'] for e in new]}"
        assert db_val("SELECT count(*) FROM events WHERE type <> ALL (%s)",
                      list(SCHEDULED)) == total
        return
    assert [e["type"] for e in new] == [want], f"{row.id}: {[e['type'] for e in new]}"
    ev = new[0]["doc"]
    assert ev["id"] == f"{new[0]['seq']:012d}"
    assert ev["type"] == want and ev["partner_id"] == world.partner
    assert ev["request_id"] == r.headers["X-Request-Id"]
    assert ev["subject"]["type"] == SUBJECT_TYPE[want.split(".")[0]]
    data = ev["data"]
    if r.status_code in (200, 201) and r.headers.get("Content-Type", "").startswith(
            "application/json") and "id" in r.json() and want != "benefit.keys_revealed":
        # the subject as its GET shows it: here the answer of the request itself
        assert ev["subject"]["id"] == r.json()["id"]
        assert data == r.json()
    if want == "benefit.keys_revealed":
        assert data["id"] == ev["subject"]["id"]
        text = json.dumps(ev)
        for key in r.json()["keys"]:
            assert key not in text, "a license key in an event"
        assert "keys" not in data
    if want == "seat.assigned" and "results" in r.json():  # a batch: one event per row added
        row_ = r.json()["results"][0]
        assert row_["status"] == 201 and data["user_id"] == row_["user_id"]
        assert data["benefit_id"] == ev["subject"]["id"]
    elif want == "seat.assigned":
        assert data == r.json()
    if want in ("seat.removed", "user.deleted"):
        assert ev["subject"]["id"] in req.path


def test_4xx_answers_write_no_event(ga):
    f = fresh_partner()
    c = Client(BASE, token(f.users["global_admin"], f.partner, ["global_admin"]))
    emp = Client(BASE, token(f.users["employee"], f.partner, []))
    before = _last(f.partner)
    assert_problem(c.post(f"/v1/partners/{f.partner}/users", headers=idem(),
                          json={"email": "not-an-email", "display_name": "X", "roles": []}),
                   422, "validation-failed")
    assert_problem(emp.post(f"/v1/partners/{f.partner}/users", headers=idem(),
                            json={"email": "x@fresh.example", "display_name": "X", "roles": []}),
                   403, "forbidden-role")
    assert_problem(c.post(f"/v1/partners/{f.partner}/purchases", headers=idem(),
                          json={"package_id": "bbbbbbbb-0000-4000-8000-00000000ffff"}), 422)
    other = f.users["user_admin"]
    assert_problem(c.post(f"/v1/partners/{f.partner}/users", headers=idem(),
                          json={"email": db_val("SELECT email FROM users WHERE id = %s", other),
                                "display_name": "Dup", "roles": []}), 409, "conflict")
    assert_problem(c.post(f"/v1/partners/{f.partner}/benefits/{f.benefits[WINDOWS_SERVER]}/keys",
                          headers=idem(), json={"language": "xx-XX", "os": "x64"}), 422)
    assert _events(f.partner, before) == []
    c.close()
    emp.close()


def test_a_rolled_back_request_writes_neither_change_nor_event():
    """The change and its event commit together: a commit that fails (a deferred check on the
    events table, planted for this test) leaves neither the change nor the event."""
    f = fresh_partner()
    uid = f.users["employee"]
    name = db_val("SELECT display_name FROM users WHERE id = %s", uid)
    db_exec("CREATE OR REPLACE FUNCTION test_fail_event() RETURNS trigger LANGUAGE plpgsql AS "
            "$$BEGIN RAISE EXCEPTION 'planted commit failure'; END$$")
    db_exec("CREATE CONSTRAINT TRIGGER test_fail_event AFTER INSERT ON events "
            "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW "
            "WHEN (NEW.data ->> 'display_name' = 'Rollback Me') EXECUTE FUNCTION test_fail_event()")
    try:
        before = _last(f.partner)
        c = Client(BASE, token(f.users["global_admin"], f.partner, ["global_admin"])).direct
        r = c.patch(f"/v1/partners/{f.partner}/users/{uid}", json={"display_name": "Rollback Me"})
        assert r.status_code >= 500, r.text
        assert _events(f.partner, before) == []
        assert db_val("SELECT display_name FROM users WHERE id = %s", uid) == name
        # the counter went back too: the next event takes the next number
        r = c.patch(f"/v1/partners/{f.partner}/users/{uid}", json={"display_name": "Kept"})
        assert r.status_code == 200, r.text
        assert [e["seq"] for e in _events(f.partner, before)] == [before + 1]
        c.close()
    finally:
        db_exec("DROP TRIGGER IF EXISTS test_fail_event ON events")
        db_exec("DROP FUNCTION IF EXISTS test_fail_event()")


def test_concurrent_changes_get_consecutive_ids_in_commit_order():
    """Many writers of one partner at once: the ids are 1..n without gap or repeat, and a
    reader that follows the ids while they write (WHERE seq > last seen) misses none."""
    f = fresh_partner()
    base = _last(f.partner)
    users = []
    for i in range(8):
        users.append(db_val("INSERT INTO users (partner_id, email, display_name) VALUES "
                            "(%s, %s, %s) RETURNING id::text", f.partner,
                            f"c{i}-{f.partner[:8]}@fresh.example", f"C {i}"))
    tok = token(f.users["global_admin"], f.partner, ["global_admin"])
    stop = threading.Event()
    seen: list[int] = []

    def reader():
        last = base
        while not stop.is_set() or last < base + 40:
            for e in _events(f.partner, last):
                seen.append(e["seq"])
                last = e["seq"]
            if stop.is_set() and last >= base + 40:
                break

    def writer(uid):
        c = Client(BASE, tok).direct
        for k in range(5):
            r = c.patch(f"/v1/partners/{f.partner}/users/{uid}", json={"display_name": f"W{k}"})
            assert r.status_code == 200, r.text
        c.close()

    t = threading.Thread(target=reader)
    t.start()
    ws = [threading.Thread(target=writer, args=(u,)) for u in users]
    for w in ws:
        w.start()
    for w in ws:
        w.join()
    stop.set()
    t.join(timeout=60)
    seqs = [e["seq"] for e in _events(f.partner, base)]
    assert seqs == list(range(base + 1, base + 41))
    assert seen == seqs
