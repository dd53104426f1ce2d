"""Purchases (R2, R3): who may buy, what a purchase allocates, one active purchase of a package,
renewal from 90 days before the term ends, and PMC partners (R1)."""
import datetime as dt

import pytest

from helpers import (CONTOSO, FABRIKAM, assert_problem, db_all, db_exec, db_one, db_val, idem)
from test_accounts import fresh_partner, onboard

ACTION_PACK = "bbbbbbbb-0000-4000-8000-000000000001"
SILVER = "bbbbbbbb-0000-4000-8000-000000000002"
GOLD = "bbbbbbbb-0000-4000-8000-000000000003"
CONTOSO_GOLD = "cccccccc-0000-4000-8000-000000000001"


def purchases(pid: str, rest: str = "") -> str:
    return f"/v1/partners/{pid}/purchases{rest}"


def ts(s: str) -> dt.datetime:
    return dt.datetime.fromisoformat(s.replace("Z", "+00:00"))


def package(c, package_id: str) -> dict:
    return c.get(f"/v1/packages/{package_id}").json()


def buy(p, package_id: str = ACTION_PACK, who: str = "ga") -> dict:
    r = p.client(who).post(purchases(p.id), json={"package_id": package_id}, headers=idem())
    assert r.status_code == 201, r.text
    return r.json()


# --- R2: who may buy -------------------------------------------------------------------------

@pytest.mark.parametrize("who", ["aa", "pa", "ga"])
@pytest.mark.seed("S03", "S51")
def test_admin_agent_partner_admin_and_global_admin_can_buy(who):
    p = fresh_partner()
    c = p.client(who)
    r = c.post(purchases(p.id), json={"package_id": SILVER})
    assert r.status_code == 201, r.text
    doc = r.json()
    assert r.headers["Location"] == purchases(p.id, f"/{doc['id']}")
    assert doc["package_id"] == SILVER and doc["status"] == "active"
    assert doc["refund"] is None and doc["cancelled_at"] is None
    row = db_one("SELECT partner_id::text, status, created_by, "
                 "term_end = purchased_at + interval '12 months', "
                 "abs(extract(epoch FROM now() - purchased_at)) < 60 "
                 "FROM purchases WHERE id = %s", doc["id"])
    assert row == (p.id, "active", p.users[who], True, True)
    assert c.get(purchases(p.id, f"/{doc['id']}")).json() == doc


@pytest.mark.seed("S02", "S28")
def test_purchase_has_one_benefit_per_allocation_visible_in_benefits():
    p = fresh_partner()
    ga = p.client("ga")
    doc = buy(p, GOLD)
    pkg = package(ga, GOLD)
    assert len(doc["benefit_ids"]) == len(pkg["benefits"]) == 11
    rows = db_all("SELECT b.product_id::text, b.category, b.quantity, b.used, b.status, "
                  "b.partner_id::text FROM benefits b WHERE b.purchase_id = %s", doc["id"])
    assert sorted((r[0], r[1], r[2]) for r in rows) == sorted(
        (a["product_id"], a["category"], a["quantity"]) for a in pkg["benefits"])
    assert all(r[3] == 0 and r[4] == "available" and r[5] == p.id for r in rows)
    listed = ga.get(f"/v1/partners/{p.id}/benefits", params={"limit": 200}).json()["items"]
    mine = {b["id"]: b for b in listed if b["purchase_id"] == doc["id"]}
    assert set(mine) == set(doc["benefit_ids"])
    by_product = {a["product_id"]: a for a in pkg["benefits"]}
    for b in mine.values():
        a = by_product[b["product_id"]]
        assert (b["category"], b["quantity"], b["name"], b["status"]) == (
            a["category"], a["quantity"], a["name"], "available")
        assert b["term_end"] == doc["term_end"]
    assert {b["category"] for b in mine.values()} == {
        "software", "cloud", "visual_studio", "technical", "go_to_market"}


@pytest.mark.parametrize("who", ["ua", "emp"])
def test_user_admin_and_employee_cannot_buy(who):
    p = fresh_partner()
    c = p.client(who)
    problem = assert_problem(c.post(purchases(p.id), json={"package_id": ACTION_PACK}), 403,
                             "forbidden-role")
    assert "Global admin" in problem["detail"]
    assert db_val("SELECT count(*) FROM purchases WHERE partner_id = %s", p.id) == 0


def test_operator_cannot_buy_for_a_partner(op):
    p = fresh_partner()
    assert_problem(op.post(purchases(p.id), json={"package_id": ACTION_PACK}), 403,
                   "forbidden-role")
    assert db_val("SELECT count(*) FROM purchases WHERE partner_id = %s", p.id) == 0


def test_buying_for_another_partner_is_404(ga):
    p = fresh_partner()
    assert_problem(ga.post(purchases(p.id), json={"package_id": ACTION_PACK}), 404, "not-found")
    assert db_val("SELECT count(*) FROM purchases WHERE partner_id = %s", p.id) == 0
    mine = buy(p)
    assert_problem(ga.get(purchases(p.id, f"/{mine['id']}")), 404, "not-found")
    assert_problem(ga.get(purchases(CONTOSO, f"/{mine['id']}")), 404, "not-found")
    assert_problem(ga.post(purchases(CONTOSO, f"/{mine['id']}/renewal")), 404, "not-found")


# --- input and rules -------------------------------------------------------------------------

@pytest.mark.parametrize("body", [{"package_id": "00000000-0000-4000-8000-000000000000"},
                                  {"package_id": "gold"}, {"package_id": 3}, {},
                                  {"package_id": ACTION_PACK, "quantity": 2}])
def test_unknown_or_bad_package_is_422_naming_the_field(body):
    p = fresh_partner()
    problem = assert_problem(p.client("ga").post(purchases(p.id), json=body), 422,
                             "validation-failed")
    field = "quantity" if "quantity" in body else "package_id"
    assert problem["errors"][0]["field"] == field and field in problem["detail"]
    assert db_val("SELECT count(*) FROM purchases WHERE partner_id = %s", p.id) == 0


def test_buying_a_package_held_active_is_409_already_purchased():
    p = fresh_partner()
    first = buy(p, ACTION_PACK, "aa")
    problem = assert_problem(p.client("pa").post(purchases(p.id),
                                                 json={"package_id": ACTION_PACK}), 409,
                             "already-purchased")
    assert "renew" in problem["detail"]
    assert db_val("SELECT count(*) FROM purchases WHERE partner_id = %s", p.id) == 1
    assert db_val("SELECT count(*) FROM benefits WHERE partner_id = %s", p.id) == len(
        first["benefit_ids"])
    # another package is fine
    buy(p, SILVER, "pa")


def test_a_package_can_be_bought_again_once_the_held_one_expired():
    p = fresh_partner()
    old = buy(p)
    db_exec("UPDATE purchases SET purchased_at = now() - interval '13 months', "
            "term_end = now() - interval '1 month' WHERE id = %s", old["id"])
    new = buy(p)
    assert new["id"] != old["id"]
    assert db_val("SELECT status FROM purchases WHERE id = %s", old["id"]) == "expired"
    assert p.client("ga").get(purchases(p.id, f"/{old['id']}")).json()["status"] == "expired"


def test_cancelled_purchase_does_not_block_a_new_one():
    p = fresh_partner()
    old = buy(p)
    db_exec("UPDATE purchases SET status = 'cancelled', cancelled_at = now() WHERE id = %s",
            old["id"])
    assert buy(p)["id"] != old["id"]


# --- reads -----------------------------------------------------------------------------------

def test_purchases_are_listed_with_their_benefit_ids_and_paged():
    p = fresh_partner()
    bought = {d["id"]: d for d in (buy(p, ACTION_PACK), buy(p, SILVER), buy(p, GOLD))}
    for who in ("ga", "ua", "aa", "pa"):
        items = p.client(who).get(purchases(p.id)).json()["items"]
        assert {d["id"]: d for d in items} == bought
    seen, cursor = [], None
    while True:
        page = p.client("ua").get(purchases(p.id), params={
            "limit": 1, **({"cursor": cursor} if cursor else {})}).json()
        seen += [d["id"] for d in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert sorted(seen) == seen and set(seen) == set(bought)
    assert_problem(p.client("emp").get(purchases(p.id)), 403, "forbidden-role")
    assert_problem(p.client("ga").get(purchases(p.id, "/not-a-uuid")), 404, "not-found")
    assert_problem(p.client("ga").get(purchases(p.id), params={"cursor": "@@"}), 422,
                   "validation-failed")


def test_demo_contoso_purchase_is_readable(ga, op):
    doc = ga.get(purchases(CONTOSO, f"/{CONTOSO_GOLD}")).json()
    assert doc["package_id"] == GOLD and len(doc["benefit_ids"]) == 11
    assert op.get(purchases(CONTOSO, f"/{CONTOSO_GOLD}")).json() == doc


# --- R1: PMC ---------------------------------------------------------------------------------

@pytest.mark.seed("S01")
def test_pmc_partner_purchases_are_409_pointing_to_pmc(fab_ga):
    for r in (fab_ga.get(purchases(FABRIKAM)),
              fab_ga.post(purchases(FABRIKAM), json={"package_id": ACTION_PACK}),
              fab_ga.get(purchases(FABRIKAM, f"/{CONTOSO_GOLD}"))):
        problem = assert_problem(r, 409, "membership-in-pmc")
        assert "PMC" in problem["detail"]
    assert db_val("SELECT count(*) FROM purchases WHERE partner_id = %s", FABRIKAM) == 0


def test_pmc_partner_can_buy_after_the_operator_migrates_it(op):
    doc, ga = onboard(op, membership_location="pmc")
    pid = doc["id"]
    assert_problem(ga.post(purchases(pid), json={"package_id": ACTION_PACK}), 409,
                   "membership-in-pmc")
    assert db_val("SELECT count(*) FROM purchases WHERE partner_id = %s", pid) == 0
    r = op.patch(f"/v1/admin/partners/{pid}", json={"membership_location": "partner_center"})
    assert r.status_code == 200, r.text
    r = ga.post(purchases(pid), json={"package_id": ACTION_PACK}, headers=idem())
    assert r.status_code == 201, r.text
    assert db_val("SELECT count(*) FROM benefits WHERE purchase_id = %s", r.json()["id"]) == 5
    assert ga.get(f"/v1/partners/{pid}/benefits").status_code == 200


# --- renewal ---------------------------------------------------------------------------------

def renewal(p, purchase_id: str) -> str:
    return purchases(p.id, f"/{purchase_id}/renewal")


@pytest.mark.seed("S51")
def test_renewal_before_the_90_day_window_is_409_renewal_not_open():
    p = fresh_partner()
    doc = buy(p)
    problem = assert_problem(p.client("ga").post(renewal(p, doc["id"]), headers=idem()), 409,
                             "renewal-not-open")
    assert "90 days" in problem["detail"]
    assert db_val("SELECT term_end FROM purchases WHERE id = %s", doc["id"]) == ts(
        doc["term_end"])


@pytest.mark.parametrize("who", ["aa", "pa"])
@pytest.mark.seed("S51")
def test_renewal_inside_the_window_extends_the_term_by_one_term(who):
    p = fresh_partner()
    doc = buy(p)
    db_exec("UPDATE purchases SET purchased_at = now() - interval '11 months', "
            "term_end = now() + interval '30 days' WHERE id = %s", doc["id"])
    before = db_val("SELECT term_end FROM purchases WHERE id = %s", doc["id"])
    r = p.client(who).post(renewal(p, doc["id"]), json={}, headers=idem())
    assert r.status_code == 200, r.text
    after = db_val("SELECT term_end FROM purchases WHERE id = %s", doc["id"])
    assert db_val("SELECT %s::timestamptz + interval '12 months' = %s::timestamptz",
                  before, after) is True
    assert ts(r.json()["term_end"]) == after and r.json()["status"] == "active"
    assert r.json()["purchased_at"] == p.client("ga").get(
        purchases(p.id, f"/{doc['id']}")).json()["purchased_at"]
    # benefits follow the purchase's term
    b = p.client("ga").get(f"/v1/partners/{p.id}/benefits/{doc['benefit_ids'][0]}").json()
    assert ts(b["term_end"]) == after
    # a second renewal right away is outside the window again
    assert_problem(p.client(who).post(renewal(p, doc["id"])), 409, "renewal-not-open")
    assert db_val("SELECT term_end FROM purchases WHERE id = %s", doc["id"]) == after


def test_renewal_of_a_cancelled_or_expired_purchase_is_409_purchase_not_active():
    p = fresh_partner()
    a, s = buy(p, ACTION_PACK), buy(p, SILVER)
    db_exec("UPDATE purchases SET status = 'cancelled', cancelled_at = now(), "
            "term_end = now() + interval '10 days' WHERE id = %s", a["id"])
    db_exec("UPDATE purchases SET purchased_at = now() - interval '13 months', "
            "term_end = now() - interval '1 day' WHERE id = %s", s["id"])
    ga = p.client("ga")
    assert_problem(ga.post(renewal(p, a["id"])), 409, "purchase-not-active")
    assert_problem(ga.post(renewal(p, s["id"])), 409, "purchase-not-active")
    assert db_val("SELECT count(*) FROM purchases WHERE partner_id = %s AND "
                  "term_end > now() + interval '20 days'", p.id) == 0


def test_renewal_needs_a_purchasing_role_and_an_empty_body():
    p = fresh_partner()
    doc = buy(p)
    db_exec("UPDATE purchases SET purchased_at = now() - interval '11 months', "
            "term_end = now() + interval '30 days' WHERE id = %s", doc["id"])
    assert_problem(p.client("ua").post(renewal(p, doc["id"])), 403, "forbidden-role")
    assert_problem(p.client("ga").post(renewal(p, doc["id"]), json={"months": 24}), 422,
                   "validation-failed")
    assert_problem(p.client("ga").post(purchases(p.id, "/00000000-0000-4000-8000-000000000000"
                                                   "/renewal")), 404, "not-found")
    assert db_val("SELECT term_end < now() + interval '31 days' FROM purchases WHERE id = %s",
                  doc["id"]) is True
