"""Issue 14, step 4: list filters (users ?q=&role=, audit events ?action=&actor=&since=&until=,
benefits ?expiring_before=, operator activations ?partner_id=&category=) and the benefit
summary for dashboard tiles."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

from fresh_partner import GOLD_CORE, INCIDENTS, VS_ENTERPRISE, WINDOWS_SERVER, fresh_partner
from helpers import BASE, Client, assert_problem, db_all, db_val, operator_token


def iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def every(c: Client, path: str, **params) -> list[dict]:
    items, cursor = [], None
    while True:
        q = dict(params, limit=200, **({"cursor": cursor} if cursor else {}))
        r = c.get(path, params=q)
        assert r.status_code == 200, r.text
        items += r.json()["items"]
        cursor = r.json()["next_cursor"]
        if not cursor:
            return items


def test_users_by_part_of_email_or_name_and_by_role():
    f = fresh_partner()
    extra = {}
    for email, name in [("globalxadmin-%s@fresh.example", "Not Global"),
                        ("pct-%s@fresh.example", "Ana 100% Sales"),
                        ("zoe-%s@fresh.example", "Zoë O'Brien")]:
        e = email % uuid.uuid4().hex[:6]
        extra[name] = db_val("INSERT INTO users (partner_id, email, display_name) VALUES "
                             "(%s, %s, %s) RETURNING id::text", f.partner, e, name)
    c = f.client(BASE, "admin_agent")
    path = f.path("/users")
    ids = lambda **p: sorted(u["id"] for u in every(c, path, **p))  # noqa: E731
    assert ids(q="GLOBAL_ADMIN") == [f.users["global_admin"]]  # "_" is no wildcard
    assert ids(q="100%") == [extra["Ana 100% Sales"]]
    assert ids(q="zoë O'B") == [extra["Zoë O'Brien"]]  # case folding: the database's locale
    assert ids(q="nobody-here") == []
    assert ids(role="user_admin") == [f.users["user_admin"]]
    assert ids(q="fresh", role="mpn_partner_admin") == [f.users["mpn_partner_admin"]]
    assert len(ids(q="@FRESH.example")) == 8
    assert_problem(c.get(path, params={"role": "operator"}), 422, "validation-failed")
    assert_problem(c.get(path, params={"q": "x" * 201}), 422, "validation-failed")


def test_audit_events_by_action_actor_and_time():
    f = fresh_partner()
    now = datetime.now(timezone.utc)
    rows = [("seat.assigned", "alice", 5), ("seat.assigned", "bob", 3), ("seat.removed", "alice", 1),
            ("user.created", "op-1", 10)]
    for action, actor, days in rows:
        db_val("INSERT INTO audit_events (partner_id, actor, action, target_type, target_id, at) "
               "VALUES (%s, %s, %s, 'benefit', 'x', now() - make_interval(days => %s)) "
               "RETURNING 1", f.partner, actor, action, days)
    ga = f.client(BASE)
    path = f.path("/audit-events")
    got = lambda **p: [(e["action"], e["actor"]) for e in every(ga, path, **p)]  # noqa: E731
    assert got(action="seat.assigned") == [("seat.assigned", "bob"), ("seat.assigned", "alice")]
    assert got(actor="alice") == [("seat.removed", "alice"), ("seat.assigned", "alice")]
    assert got(since=iso(now - timedelta(days=4)), until=iso(now)) == [
        ("seat.removed", "alice"), ("seat.assigned", "bob")]
    assert got(action="seat.assigned", actor="alice", until=iso(now - timedelta(days=4))) == [
        ("seat.assigned", "alice")]
    op = Client(BASE, operator_token())
    assert len(every(op, path, actor="op-1")) == 1
    for bad in ({"since": "yesterday"}, {"until": "2026-13-01T00:00:00Z"}, {"action": ""}):
        assert_problem(ga.get(path, params=bad), 422, "validation-failed")


def test_benefits_expiring_before():
    f = fresh_partner()
    soon = f.benefits[WINDOWS_SERVER]
    db_val("UPDATE benefits SET expires_at = now() + interval '10 days' WHERE id = %s "
           "RETURNING 1", soon)
    ga = f.client(BASE)
    now = datetime.now(timezone.utc)
    got = [b["id"] for b in every(ga, f.path("/benefits"),
                                  expiring_before=iso(now + timedelta(days=20)))]
    assert got == [soon]
    assert every(ga, f.path("/benefits"), expiring_before=iso(now + timedelta(days=5))) == []
    term_end = db_val("SELECT term_end FROM purchases WHERE id = %s", f.purchase)
    everything = every(ga, f.path("/benefits"),
                       expiring_before=iso(term_end + timedelta(seconds=1)))
    assert len(everything) == len(every(ga, f.path("/benefits")))
    assert_problem(ga.get(f.path("/benefits"), params={"expiring_before": "soon"}), 422)


def test_operator_activations_by_partner_and_category():
    f, g = fresh_partner(), fresh_partner()
    made = {}
    for p, product, kind in [(f, INCIDENTS, "technical"), (f, GOLD_CORE, "go_to_market"),
                             (g, INCIDENTS, "technical")]:
        made[(p.partner, kind)] = db_val(
            "INSERT INTO activations (partner_id, benefit_id, kind, requested_by) "
            "VALUES (%s, %s, %s, 'test') RETURNING id::text", p.partner, p.benefits[product],
            kind)
    op = Client(BASE, operator_token())
    ids = lambda **p: sorted(a["id"] for a in every(op, "/v1/admin/activations", **p))  # noqa
    assert ids(partner_id=f.partner) == sorted([made[(f.partner, "technical")],
                                                made[(f.partner, "go_to_market")]])
    assert ids(partner_id=f.partner, category="technical") == [made[(f.partner, "technical")]]
    assert ids(partner_id=g.partner, category="go_to_market", status="pending") == []
    assert made[(g.partner, "technical")] in ids(category="technical", status="pending")
    assert_problem(op.get("/v1/admin/activations", params={"partner_id": "x"}), 422)
    assert_problem(op.get("/v1/admin/activations", params={"category": "software"}), 422)


def test_benefit_summary_tiles():
    f = fresh_partner()
    db_val("UPDATE benefits SET expires_at = now() + interval '10 days' WHERE id = %s "
           "RETURNING 1", f.benefits[WINDOWS_SERVER])
    db_val("UPDATE benefits SET used = 2 WHERE id = %s RETURNING 1", f.benefits[VS_ENTERPRISE])
    expected = {}
    for cat, n, qty, used in db_all(
            "SELECT category, count(*), sum(quantity), sum(used) FROM benefits "
            "WHERE partner_id = %s GROUP BY category", f.partner):
        expected[cat] = {"category": cat, "count": n, "quantity": qty, "used": used,
                         "expiring_within_30_days": 1 if cat == "software" else 0}
    ga = f.client(BASE)
    r = ga.get(f.path("/benefits/summary"))
    assert r.status_code == 200, r.text
    tiles = {t["category"]: t for t in r.json()["categories"]}
    assert list(tiles) == ["software", "cloud", "visual_studio", "technical", "go_to_market"]
    for cat, tile in tiles.items():
        assert tile == expected.get(cat, {"category": cat, "count": 0, "quantity": 0, "used": 0,
                                          "expiring_within_30_days": 0}), cat
    aa = f.client(BASE, "admin_agent")
    assert "technical" not in [t["category"] for t in
                               aa.get(f.path("/benefits/summary")).json()["categories"]]
    # a cancelled purchase's benefits are no tile
    db_val("UPDATE benefits SET status = 'cancelled' WHERE partner_id = %s RETURNING 1",
           f.partner)
    assert all(t["count"] == 0 for t in ga.get(f.path("/benefits/summary")).json()["categories"])
    pmc = fresh_partner(location="pmc")
    assert_problem(pmc.client(BASE).get(pmc.path("/benefits/summary")), 409,
                   "membership-in-pmc")
