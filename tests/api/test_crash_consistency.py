"""SIGKILL in the middle of purchases and cancellations (issue 6): after a restart no purchase
exists without all its benefits and no cancellation is half done, because each one is a single
transaction."""
import threading
import time

import requests

from helpers import db_val, spawn_server, token
from test_accounts import fresh_partner
from test_purchases import ACTION_PACK, GOLD, SILVER

PACKAGES = (ACTION_PACK, SILVER, GOLD)


def _hammer(url, partners, stop, counts):
    s = requests.Session()
    i = 0
    while not stop.is_set():
        p = partners[i % len(partners)]
        i += 1
        auth = {"Authorization": f"Bearer {token(p.users['ga'], p.id, ['global_admin'])}"}
        try:
            for pkg in PACKAGES:
                r = s.post(f"{url}/v1/partners/{p.id}/purchases", json={"package_id": pkg},
                           headers=auth, timeout=5)
                counts[r.status_code] = counts.get(r.status_code, 0) + 1
                if r.status_code == 201:
                    r = s.post(f"{url}/v1/partners/{p.id}/purchases/{r.json()['id']}/cancellation",
                               headers=auth, timeout=5)
                    counts[r.status_code] = counts.get(r.status_code, 0) + 1
        except requests.RequestException:
            counts["error"] = counts.get("error", 0) + 1
            time.sleep(0.01)


def test_sigkill_during_purchases_and_cancellations_leaves_nothing_half_done():
    partners = [fresh_partner() for _ in range(6)]
    ids = [p.id for p in partners]
    server = spawn_server()
    stop, counts = threading.Event(), {}
    threads = [threading.Thread(target=_hammer, args=(server.url, partners[k::3], stop, counts))
               for k in range(3)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and counts.get(200, 0) < 20:
        time.sleep(0.05)
    server.kill()  # SIGKILL, mid-flight
    stop.set()
    for t in threads:
        t.join()
    assert counts.get(201, 0) >= 10 and counts.get(200, 0) >= 10, counts

    # every purchase has exactly the benefits of its package
    assert db_val("""
        SELECT count(*) FROM purchases pu WHERE pu.partner_id = ANY(%s::uuid[]) AND
          (SELECT count(*) FROM benefits b WHERE b.purchase_id = pu.id) <>
          (SELECT count(*) FROM package_benefits pb WHERE pb.package_id = pu.package_id)""",
                  ids) == 0
    # a cancelled purchase has a refund, all its benefits cancelled and no seat; an active one
    # has no cancelled benefit
    assert db_val("""
        SELECT count(*) FROM purchases pu WHERE pu.partner_id = ANY(%s::uuid[]) AND (
          (pu.status = 'cancelled' AND (pu.refund_amount IS NULL OR EXISTS (
              SELECT 1 FROM benefits b WHERE b.purchase_id = pu.id AND b.status <> 'cancelled')))
          OR (pu.status = 'active' AND EXISTS (
              SELECT 1 FROM benefits b WHERE b.purchase_id = pu.id AND b.status = 'cancelled')))""",
                  ids) == 0
    # every committed change has its audit event
    assert db_val("""
        SELECT count(*) FROM purchases pu WHERE pu.partner_id = ANY(%s::uuid[]) AND NOT EXISTS (
          SELECT 1 FROM audit_events e WHERE e.target_id = pu.id::text
          AND e.action = 'purchase.created')""", ids) == 0
    assert db_val("""
        SELECT count(*) FROM purchases pu WHERE pu.partner_id = ANY(%s::uuid[])
          AND pu.status = 'cancelled' AND NOT EXISTS (
          SELECT 1 FROM audit_events e WHERE e.target_id = pu.id::text
          AND e.action = 'purchase.cancelled')""", ids) == 0
    # after a restart the service answers, and no transaction was left open
    with spawn_server() as again:
        p = partners[0]
        r = again.client(token(p.users["ga"], p.id, ["global_admin"])).get(
            f"/v1/partners/{p.id}/purchases")
        assert r.status_code == 200
    assert db_val("SELECT count(*) FROM pg_stat_activity WHERE state LIKE 'idle in transaction%%'"
                  " AND application_name = 'mpn-benefits'") == 0


def test_purchase_retried_with_its_key_through_an_outage_happens_exactly_once():
    """A client retries one purchase with the same Idempotency-Key before, during and after a
    PostgreSQL outage: outage answers are 503 problems, the purchase is made exactly once, and
    every retry after it replays the first answer."""
    from helpers import assert_problem, pg_down
    p = fresh_partner()
    server = spawn_server()
    c = server.client(token(p.users["ga"], p.id, ["global_admin"]))
    url = f"/v1/partners/{p.id}/purchases"
    key = {"Idempotency-Key": f"outage-{p.id}"}
    with pg_down():
        for _ in range(3):
            assert_problem(c.post(url, json={"package_id": SILVER}, headers=key), 503,
                           "unavailable")
    answers = []
    deadline = time.monotonic() + 10
    while len(answers) < 4 and time.monotonic() < deadline:
        r = c.post(url, json={"package_id": SILVER}, headers=key)
        if r.status_code == 503:  # the pool may still be reconnecting
            time.sleep(0.1)
            continue
        answers.append(r)
    assert [a.status_code for a in answers] == [201] * 4, [a.text for a in answers]
    assert all(a.json() == answers[0].json() for a in answers)
    assert [a.headers.get("Idempotent-Replayed") for a in answers[1:]] == ["true"] * 3
    assert db_val("SELECT count(*) FROM purchases WHERE partner_id = %s", p.id) == 1
    assert db_val("SELECT count(*) FROM audit_events WHERE partner_id = %s "
                  "AND action = 'purchase.created'", p.id) == 1
    server.stop()
