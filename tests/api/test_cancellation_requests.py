"""Issue 13: cancellation as a service request (R10; the seed: "request the cancellation through a
service request") and renewal's fresh allocation (DESIGN §4b "Partner workflows").

The refund is decided at request time by the rules of the immediate cancellation; while a
request is pending the purchase's keys, seats, activations (and renewal, and the immediate
cancellation) answer 409 `cancellation-pending`; the operator completes or rejects it."""
from __future__ import annotations

import uuid

import pytest

from fresh_partner import (GOLD_CORE, INCIDENTS, VS_ENTERPRISE, WINDOWS_SERVER, activate,
                           assign_seat, fresh_partner, reveal_key, set_contact)
from helpers import (DIRECT, assert_problem, db_all, db_exec, db_one, db_val, idem, token)
from test_concurrency import fire
from test_keys import fresh_keys, load

REQ = "/cancellation-requests"


def request(c, f, **body):
    body.setdefault("reason", "We bought the wrong package.")
    return c.post(f.path(REQ), json=body, headers=idem())


def pending_of(f) -> int:
    return db_val("SELECT count(*) FROM cancellation_requests WHERE purchase_id = %s "
                  "AND status = 'pending'", f.purchase)


def events_of(f) -> list[str]:
    return [t for (t,) in db_all("SELECT type FROM events WHERE partner_id = %s AND type LIKE "
                                 "'cancellation_request.%%' ORDER BY seq", f.partner)]


@pytest.mark.seed("S49", "S50")
def test_inside_the_window_a_request_is_refunded_and_completing_it_cancels_the_purchase(
        base, op):
    f = fresh_partner()
    ga = f.client(base)
    assign_seat(f.benefits[VS_ENTERPRISE], f.users["employee"])
    act = activate(ga, f, INCIDENTS)

    r = request(ga, f, purchase_id=f.purchase)
    assert r.status_code == 202, r.text
    doc = r.json()
    assert r.headers["Location"] == f.path(f"{REQ}/{doc['id']}")
    assert doc["status"] == "pending" and doc["purchase_id"] == f.purchase
    assert doc["benefit_id"] is None and doc["accept_no_refund"] is False
    assert doc["refund"] == {"amount": 5000, "currency": "USD"}  # the Gold package's price
    assert doc["refund_reasons"] == [] and doc["processed_at"] is None
    assert ga.get(r.headers["Location"]).json() == doc
    assert [x["id"] for x in ga.get(f.path(REQ)).json()["items"]] == [doc["id"]]
    # the purchase itself is not cancelled yet
    assert db_val("SELECT status FROM purchases WHERE id = %s", f.purchase) == "active"
    queue = op.get("/v1/admin/cancellation-requests",
                   params={"status": "pending", "partner_id": f.partner}).json()["items"]
    assert [x["id"] for x in queue] == [doc["id"]]

    r = op.post(f"/v1/admin/cancellation-requests/{doc['id']}/complete", headers=idem())
    assert r.status_code == 200, r.text
    done = r.json()
    assert done["status"] == "completed" and done["processed_at"]
    assert done["refund"] == {"amount": 5000, "currency": "USD"}
    status, refund, currency = db_one("SELECT status, refund_amount, refund_currency "
                                      "FROM purchases WHERE id = %s", f.purchase)
    assert (status, float(refund), currency) == ("cancelled", 5000.0, "USD")
    assert {s for (s,) in db_all("SELECT status FROM benefits WHERE purchase_id = %s",
                                 f.purchase)} == {"cancelled"}
    assert db_val("SELECT count(*) FROM seat_assignments WHERE benefit_id = %s",
                  f.benefits[VS_ENTERPRISE]) == 0
    assert db_one("SELECT status, reason FROM activations WHERE id = %s",
                  act["id"]) == ("rejected", "purchase cancelled")
    assert events_of(f) == ["cancellation_request.created", "cancellation_request.completed"]
    # processed once only; the purchase is gone for both ways of cancelling
    assert_problem(op.post(f"/v1/admin/cancellation-requests/{doc['id']}/complete",
                           headers=idem()), 409, "conflict")
    assert_problem(request(ga, f, purchase_id=f.purchase), 409, "already-cancelled")
    assert_problem(ga.post(f.path(f"/purchases/{f.purchase}/cancellation")), 409,
                   "already-cancelled")


@pytest.mark.seed("S49", "S50")
def test_after_30_days_422_with_every_reason_then_accept_no_refund_cancels_without_one(base, op):
    f = fresh_partner()
    ga = f.client(base)
    db_exec("UPDATE purchases SET purchased_at = now() - interval '31 days' WHERE id = %s",
            f.purchase)
    reveal_key(f.benefits[WINDOWS_SERVER])
    body = assert_problem(request(ga, f, purchase_id=f.purchase), 422, "refund-window-expired")
    assert body["reasons"] == ["refund-window-expired", "software-benefits-activated"]
    assert "accept_no_refund" in body["detail"]
    assert db_val("SELECT count(*) FROM cancellation_requests WHERE partner_id = %s",
                  f.partner) == 0
    body = assert_problem(request(ga, f, purchase_id=f.purchase, accept_no_refund=False), 422)
    assert len(body["reasons"]) == 2

    r = request(ga, f, purchase_id=f.purchase, accept_no_refund=True)
    assert r.status_code == 202, r.text
    doc = r.json()
    assert doc["refund"] is None and doc["accept_no_refund"] is True
    assert doc["refund_reasons"] == ["refund-window-expired", "software-benefits-activated"]
    r = op.post(f"/v1/admin/cancellation-requests/{doc['id']}/complete", headers=idem())
    assert r.status_code == 200, r.text
    assert r.json()["refund"] is None
    assert db_one("SELECT status, refund_amount FROM purchases WHERE id = %s",
                  f.purchase) == ("cancelled", None)


def test_a_pending_request_blocks_keys_seats_activations_then_reject_makes_them_usable(
        base, op):
    f = fresh_partner()
    set_contact(f)
    ga = f.client(base)
    db_exec("UPDATE purchases SET term_end = now() + interval '30 days' WHERE id = %s",
            f.purchase)  # renewal open
    r = request(ga, f, purchase_id=f.purchase)
    assert r.status_code == 202, r.text
    rid = r.json()["id"]
    blocked = [
        ga.post(f.benefit_path(WINDOWS_SERVER, "/keys"), json={"language": "en-US", "os": "x64"},
                headers=idem()),
        ga.post(f.benefit_path(VS_ENTERPRISE, "/assignments"),
                json={"user_id": f.users["employee"]}, headers=idem()),
        ga.post(f.benefit_path(VS_ENTERPRISE, "/assignments/batch"),
                json={"add": [f.users["admin_agent"]]}, headers=idem()),
        ga.post(f.benefit_path(INCIDENTS, "/activation"), headers=idem()),
        ga.post(f.benefit_path(GOLD_CORE, "/activation"), headers=idem()),
        ga.post(f.path(f"/purchases/{f.purchase}/renewal"), headers=idem()),
        ga.post(f.path(f"/purchases/{f.purchase}/cancellation"), headers=idem()),
        request(ga, f, purchase_id=f.purchase),
        request(ga, f, benefit_id=f.benefits[GOLD_CORE]),
    ]
    for resp in blocked:
        body = assert_problem(resp, 409, "cancellation-pending")
        assert body["cancellation_request_id"] == rid or resp.request.path_url.endswith(REQ)
    assert db_val("SELECT count(*) FROM seat_assignments s JOIN benefits b ON b.id = s.benefit_id "
                  "WHERE b.purchase_id = %s", f.purchase) == 0
    assert db_val("SELECT count(*) FROM activations WHERE partner_id = %s", f.partner) == 0
    assert db_val("SELECT count(*) FROM license_keys WHERE benefit_id = %s",
                  f.benefits[WINDOWS_SERVER]) == 0

    assert_problem(op.post(f"/v1/admin/cancellation-requests/{rid}/reject", json={},
                           headers=idem()), 422, "validation-failed")
    r = op.post(f"/v1/admin/cancellation-requests/{rid}/reject",
                json={"reason": "Please contact your account manager."}, headers=idem())
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "rejected"
    assert r.json()["rejection_reason"] == "Please contact your account manager."
    assert ga.get(f.path(f"{REQ}/{rid}")).json()["status"] == "rejected"
    assert [x["id"] for x in ga.get(f.path(REQ), params={"status": "rejected"}).json()["items"]] \
        == [rid]
    assert ga.get(f.path(REQ), params={"status": "pending"}).json()["items"] == []
    assert_problem(ga.get(f.path(REQ), params={"status": "open"}), 422, "validation-failed")
    assert events_of(f) == ["cancellation_request.created", "cancellation_request.rejected"]

    # everything usable again
    # (the reveal takes the benefit's quantity of keys: as many are added to the pool first)
    n = db_val("SELECT quantity FROM benefits WHERE id = %s", f.benefits[WINDOWS_SERVER])
    assert load(op, WINDOWS_SERVER, fresh_keys(n)).status_code == 200
    r = ga.post(f.benefit_path(WINDOWS_SERVER, "/keys"), json={"language": "en-US", "os": "x64"},
                headers=idem())
    assert r.status_code == 200, r.text
    r = ga.post(f.benefit_path(VS_ENTERPRISE, "/assignments"),
                json={"user_id": f.users["employee"]}, headers=idem())
    assert r.status_code == 201, r.text
    assert activate(ga, f, INCIDENTS)["status"] == "pending"
    r = ga.post(f.path(f"/purchases/{f.purchase}/renewal"), headers=idem())
    assert r.status_code == 200, r.text
    assert db_val("SELECT status FROM purchases WHERE id = %s", f.purchase) == "active"


def test_20_concurrent_requests_for_the_same_purchase_leave_one_pending(base):
    f = fresh_partner()
    tok = token(f.users["global_admin"], f.partner, ["global_admin"])
    url = f"{DIRECT.rstrip('/')}{f.path(REQ)}"
    results = fire([("POST", url, tok, {"purchase_id": f.purchase, "reason": f"race {i}"})
                    for i in range(20)])
    statuses = sorted(s for s, _ in results)
    assert statuses == [202] + [409] * 19, statuses
    assert all(b["code"] == "cancellation-pending" for s, b in results if s == 409)
    assert pending_of(f) == 1
    assert db_val("SELECT count(*) FROM cancellation_requests WHERE purchase_id = %s",
                  f.purchase) == 1


def test_both_or_neither_id_is_422_naming_the_fields_and_other_partners_ids_are_404(base, op):
    f, g = fresh_partner(), fresh_partner()
    ga = f.client(base)
    for body in ({"purchase_id": f.purchase, "benefit_id": f.benefits[GOLD_CORE]}, {}):
        p = assert_problem(request(ga, f, **body), 422, "validation-failed")
        assert sorted(e["field"] for e in p["errors"]) == ["benefit_id", "purchase_id"]
    assert_problem(ga.post(f.path(REQ), json={"purchase_id": f.purchase}, headers=idem()), 422,
                   "validation-failed")  # no reason
    assert_problem(request(ga, f, purchase_id=f.purchase, extra=1), 422, "validation-failed")
    assert_problem(request(ga, f, purchase_id="not-a-uuid"), 422, "validation-failed")
    # another partner's purchase, benefit, request: 404, and nothing written
    assert_problem(request(ga, f, purchase_id=g.purchase), 404, "not-found")
    assert_problem(request(ga, f, benefit_id=g.benefits[GOLD_CORE]), 404, "not-found")
    assert_problem(request(ga, f, purchase_id=str(uuid.uuid4())), 404, "not-found")
    r = request(g.client(base), g, purchase_id=g.purchase)
    assert r.status_code == 202, r.text
    gid = r.json()["id"]
    assert_problem(ga.get(f.path(f"{REQ}/{gid}")), 404, "not-found")
    assert_problem(ga.get(f"/v1/partners/{g.partner}{REQ}/{gid}"), 404, "not-found")
    assert ga.get(f.path(REQ)).json()["items"] == []
    assert db_val("SELECT count(*) FROM cancellation_requests WHERE partner_id = %s",
                  f.partner) == 0
    assert_problem(op.post(f"/v1/admin/cancellation-requests/{uuid.uuid4()}/complete",
                           headers=idem()), 404, "not-found")
    # the roles of the immediate cancellation, and the operator reads
    for role in ("admin_agent", "user_admin", "employee"):
        assert_problem(request(f.client(base, role), f, purchase_id=f.purchase), 403,
                       "forbidden-role")
    assert op.get(f"/v1/partners/{g.partner}{REQ}/{gid}").status_code == 200
    assert_problem(request(op, g, purchase_id=g.purchase), 403, "forbidden-role")


@pytest.mark.seed("S50")
def test_a_single_benefit_is_cancelled_with_its_share_and_the_rest_stays(base, op):
    f = fresh_partner()
    ga = f.client(base)
    n = len(f.benefits)
    share = int(500000 // n) / 100  # an even share of 5000.00, cut to cents
    vs = f.benefits[VS_ENTERPRISE]
    assign_seat(vs, f.users["employee"])
    r = request(ga, f, benefit_id=vs)
    assert r.status_code == 202, r.text
    doc = r.json()
    assert doc["benefit_id"] == vs and doc["purchase_id"] == f.purchase
    assert doc["refund"] == {"amount": share, "currency": "USD"}
    r = op.post(f"/v1/admin/cancellation-requests/{doc['id']}/complete", headers=idem())
    assert r.status_code == 200, r.text
    assert db_val("SELECT status FROM benefits WHERE id = %s", vs) == "cancelled"
    assert db_val("SELECT count(*) FROM seat_assignments WHERE benefit_id = %s", vs) == 0
    assert db_one("SELECT status, refund_amount FROM purchases WHERE id = %s",
                  f.purchase) == ("active", None)
    assert db_val("SELECT count(*) FROM benefits WHERE purchase_id = %s "
                  "AND status = 'cancelled'", f.purchase) == 1
    assert_problem(request(ga, f, benefit_id=vs), 409, "already-cancelled")
    # the rest of the purchase: its price less what was refunded already
    r = request(ga, f, purchase_id=f.purchase)
    assert r.status_code == 202, r.text
    assert r.json()["refund"] == {"amount": round(5000 - share, 2), "currency": "USD"}


@pytest.mark.seed("S51")
def test_renewal_gives_a_fresh_allocation_of_incidents_and_hours_and_keeps_seats_and_keys(base):
    f = fresh_partner()
    ga = f.client(base)
    tech = [b for (b,) in db_all("SELECT id::text FROM benefits WHERE purchase_id = %s "
                                 "AND category = 'technical'", f.purchase)]
    assert len(tech) >= 2  # incidents and hours
    db_exec("UPDATE benefits SET used = quantity WHERE id = ANY(%s::uuid[])", tech)
    vs = f.benefits[VS_ENTERPRISE]
    assign_seat(vs, f.users["employee"])
    db_exec("UPDATE benefits SET used = 1, status = 'active' WHERE id = %s", vs)
    reveal_key(f.benefits[WINDOWS_SERVER])
    db_exec("UPDATE purchases SET term_end = now() + interval '30 days' WHERE id = %s",
            f.purchase)
    keys_before = db_all("SELECT id FROM license_keys WHERE benefit_id = %s ORDER BY id",
                         f.benefits[WINDOWS_SERVER])

    r = ga.post(f.path(f"/purchases/{f.purchase}/renewal"), headers=idem())
    assert r.status_code == 200, r.text
    assert db_all("SELECT used FROM benefits WHERE id = ANY(%s::uuid[])", tech) == \
        [(0,)] * len(tech)
    for b in tech:
        assert ga.get(f.path(f"/benefits/{b}")).json()["used"] == 0
    assert db_val("SELECT used FROM benefits WHERE id = %s", vs) == 1
    assert db_all("SELECT user_id::text FROM seat_assignments WHERE benefit_id = %s",
                  vs) == [(f.users["employee"],)]
    assert db_all("SELECT id FROM license_keys WHERE benefit_id = %s ORDER BY id",
                  f.benefits[WINDOWS_SERVER]) == keys_before
    details = db_val("SELECT details FROM audit_events WHERE partner_id = %s "
                     "AND action = 'purchase.renewed'", f.partner)
    assert details["allocations_renewed"] == len(tech)
