"""The audit trail: every mutation writes an event in its own transaction, with the actor and the
request id of the call; the Global admin and the operator read it newest first."""
import uuid

import pytest

from helpers import CONTOSO, assert_problem, db_exec, db_val
from test_accounts import fresh_partner, onboard, user_body, users_url

ACTION_PACK = "bbbbbbbb-0000-4000-8000-000000000001"


def trail(pid: str) -> str:
    return f"/v1/partners/{pid}/audit-events"


def rid() -> str:
    return f"test-audit-{uuid.uuid4().hex}"


def events(c, pid: str) -> list[dict]:
    r = c.get(trail(pid), params={"limit": 200})
    assert r.status_code == 200, r.text
    return r.json()["items"]


def test_purchase_user_change_and_deletion_carry_the_request_id():
    p = fresh_partner()
    ga = p.client("ga")
    ids = {name: rid() for name in ("buy", "create", "update", "delete")}
    r = p.client("aa").post(f"/v1/partners/{p.id}/purchases", json={"package_id": ACTION_PACK},
                            headers={"X-Request-Id": ids["buy"]})
    assert r.status_code == 201
    purchase_id = r.json()["id"]
    # a User admin grants only roles it holds (issue 11)
    r = p.client("ua").post(users_url(p.id), json=user_body(roles=["user_admin"]),
                            headers={"X-Request-Id": ids["create"]})
    assert r.status_code == 201
    uid = r.json()["id"]
    assert ga.patch(users_url(p.id, uid), json={"roles": ["mpn_partner_admin"]},
                    headers={"X-Request-Id": ids["update"]}).status_code == 200
    assert ga.delete(users_url(p.id, uid),
                     headers={"X-Request-Id": ids["delete"]}).status_code == 204

    by_rid = {e["request_id"]: e for e in events(ga, p.id)}
    buy = by_rid[ids["buy"]]
    assert (buy["action"], buy["actor"], buy["target"]) == (
        "purchase.created", p.users["aa"], {"type": "purchase", "id": purchase_id})
    assert buy["details"]["package_id"] == ACTION_PACK and buy["details"]["benefits"] == 5
    created = by_rid[ids["create"]]
    assert (created["action"], created["actor"], created["target"]) == (
        "user.created", p.users["ua"], {"type": "user", "id": uid})
    assert created["details"]["roles"] == ["user_admin"]
    updated = by_rid[ids["update"]]
    assert (updated["action"], updated["actor"]) == ("user.updated", p.users["ga"])
    assert updated["details"]["roles"] == {"from": ["user_admin"], "to": ["mpn_partner_admin"]}
    deleted = by_rid[ids["delete"]]
    assert (deleted["action"], deleted["target"]) == ("user.deleted", {"type": "user", "id": uid})
    assert deleted["details"]["released_seats"] == []
    # the same in the table, in the request's transaction
    assert db_val("SELECT count(*) FROM audit_events WHERE partner_id = %s AND request_id = ANY(%s)",
                  p.id, list(ids.values())) == 4


def test_renewal_and_partner_changes_are_audited(op):
    doc, ga = onboard(op, membership_location="pmc")
    pid = doc["id"]
    first = events(op, pid)
    assert [e["action"] for e in first] == ["partner.onboarded"]
    assert first[0]["actor"] == "operator-1" and first[0]["target"] == {"type": "partner",
                                                                        "id": pid}
    assert first[0]["details"]["global_admin_user_id"] == doc["global_admin"]["id"]
    req = rid()
    assert op.patch(f"/v1/admin/partners/{pid}", json={"membership_location": "partner_center"},
                    headers={"X-Request-Id": req}).status_code == 200
    ev = events(ga, pid)[0]
    assert (ev["action"], ev["request_id"]) == ("partner.updated", req)
    assert ev["details"]["changed"] == ["membership_location"]
    assert ev["details"]["membership_location"] == {"from": "pmc", "to": "partner_center"}
    r = ga.post(f"/v1/partners/{pid}/purchases", json={"package_id": ACTION_PACK})
    assert r.status_code == 201
    db_exec("UPDATE purchases SET purchased_at = now() - interval '11 months', "
            "term_end = now() + interval '10 days' WHERE id = %s", r.json()["id"])
    req = rid()
    assert ga.post(f"/v1/partners/{pid}/purchases/{r.json()['id']}/renewal",
                   headers={"X-Request-Id": req}).status_code == 200
    ev = events(ga, pid)[0]
    assert (ev["action"], ev["request_id"], ev["target"]["id"]) == (
        "purchase.renewed", req, r.json()["id"])
    assert set(ev["details"]["term_end"]) == {"from", "to"}


def test_a_refused_mutation_writes_no_event():
    p = fresh_partner()
    ga = p.client("ga")
    body = user_body()
    assert ga.post(users_url(p.id), json=body).status_code == 201
    req = rid()
    assert_problem(ga.post(users_url(p.id), json=body, headers={"X-Request-Id": req}), 409,
                   "conflict")
    assert_problem(ga.patch(users_url(p.id, p.users["ga"]), json={"roles": []},
                            headers={"X-Request-Id": req}), 409, "conflict")
    assert db_val("SELECT count(*) FROM audit_events WHERE request_id = %s", req) == 0


@pytest.mark.parametrize("who", ["ua", "aa", "pa", "emp"])
def test_only_the_global_admin_reads_the_trail(who):
    p = fresh_partner()
    problem = assert_problem(p.client(who).get(trail(p.id)), 403, "forbidden-role")
    assert "Global admin" in problem["detail"]


def test_an_employee_token_cannot_read_the_trail(emp):
    assert_problem(emp.get(trail(CONTOSO)), 403, "forbidden-role")


def test_operator_reads_any_trail_and_others_get_404(op, ga):
    p = fresh_partner()
    assert p.client("ga").post(users_url(p.id), json=user_body()).status_code == 201
    assert [e["action"] for e in events(op, p.id)] == ["user.created"]
    assert_problem(ga.get(trail(p.id)), 404, "not-found")
    assert_problem(op.get(trail(str(uuid.uuid4()))), 404, "not-found")


def test_trail_pages_newest_first_with_a_cursor():
    p = fresh_partner(location="pmc")  # the trail of a PMC partner is readable too
    ga = p.client("ga")
    for _ in range(5):
        assert ga.post(users_url(p.id), json=user_body()).status_code == 201
    seen, cursor = [], None
    while True:
        r = ga.get(trail(p.id), params={"limit": 2, **({"cursor": cursor} if cursor else {})})
        assert r.status_code == 200, r.text
        page = r.json()
        assert len(page["items"]) <= 2
        seen += page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            break
    ids = [int(e["id"]) for e in seen]
    assert len(ids) == 5 and ids == sorted(ids, reverse=True)
    assert [e["id"] for e in seen] == [e["id"] for e in events(ga, p.id)]
    for bad in ("@@", "AAAA"):
        assert_problem(ga.get(trail(p.id), params={"cursor": bad}), 422, "validation-failed")


def test_trail_pages_in_numeric_order_across_a_digit_boundary():
    """Event ids are numbers: 9 999 999 comes after 10 000 000 (newest first), not before it as
    text would sort them, and paging loses none."""
    p = fresh_partner()
    ids = [9999998, 9999999, 10000000, 10000001]
    for i in ids:
        db_exec("INSERT INTO audit_events (id, partner_id, actor, action, target_type, target_id) "
                "VALUES (%s, %s, 'seed', 'test.event', 'test', %s)", i, p.id, str(i))
    seen, cursor = [], None
    while True:
        r = p.client("ga").get(trail(p.id), params={"limit": 1, **({"cursor": cursor} if cursor else {})})
        assert r.status_code == 200, r.text
        seen += [int(e["id"]) for e in r.json()["items"]]
        cursor = r.json()["next_cursor"]
        if not cursor:
            break
    assert seen == sorted(ids, reverse=True)
