"""SIGKILL in the middle of purchases and cancellations (issue 6, made deterministic in issue 20):
after a restart no purchase exists without all its benefits and no cancellation is half done,
because each one is a single transaction."""
import threading
import time

import requests

from fresh_partner import fresh_partner
from helpers import (db_connect, db_one, db_val, partner_snapshot, snapshot_diff, spawn_server,
                     token)
from test_purchases import SILVER


def _busy_backends() -> int:
    """Backends of any mpn-benefits process that are inside a statement or a transaction."""
    return db_val("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'mpn-benefits' "
                  "AND datname = current_database() AND state <> 'idle'")


def _until(cond, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def _post(url: str, tok: str, path: str, body: dict, key: str | None, out: dict, name: str):
    headers = {"Authorization": f"Bearer {tok}", **({"Idempotency-Key": key} if key else {})}
    try:
        out[name] = requests.post(url + path, json=body, headers=headers, timeout=60)
    except requests.RequestException as e:
        out[name] = e


CYCLES = 3


def test_sigkill_inside_a_purchase_and_a_cancellation_leaves_nothing_half_done():
    """On purpose, not by luck, CYCLES times: we hold the partner row (a purchase waits at its
    INSERT, inside its transaction, after claiming its Idempotency-Key) and an active purchase's
    row (its cancellation waits at FOR UPDATE); once both requests are seen WAITING in
    PostgreSQL, the service gets SIGKILL. After we let go, neither transaction may have left a
    trace (the partner's every row as before, no claimed key), and a restarted service does both
    exactly once, the purchase with the very same Idempotency-Key."""
    for cycle in range(CYCLES):
        f = fresh_partner()
        tok = token(f.users["global_admin"], f.partner, ["global_admin"])
        key = f"crash-{cycle}-{f.partner}"
        before = partner_snapshot(f.partner)
        server = spawn_server()
        assert _until(lambda: _busy_backends() == 0, 10), "backends busy before the cycle"
        locker = db_connect()
        locker.autocommit = False
        out: dict = {}
        threads = [
            threading.Thread(target=_post, args=(server.url, tok, f"/v1/partners/{f.partner}"
                                                 "/purchases", {"package_id": SILVER}, key,
                                                 out, "purchase")),
            threading.Thread(target=_post, args=(server.url, tok, f"/v1/partners/{f.partner}"
                                                 f"/purchases/{f.purchase}/cancellation", {},
                                                 None, out, "cancel"))]
        try:
            with locker.cursor() as cur:
                cur.execute("SELECT 1 FROM partners WHERE id = %s FOR UPDATE", (f.partner,))
                cur.execute("SELECT 1 FROM purchases WHERE id = %s FOR UPDATE", (f.purchase,))
            for t in threads:
                t.start()
            waiting = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' " \
                      "AND application_name = 'mpn-benefits' AND datname = current_database()"
            assert _until(lambda: db_val(waiting) >= 2, 30), \
                (f"cycle {cycle}: only {db_val(waiting)} requests waited on our locks; answers: "
                 f"{ {k: getattr(v, 'text', v) for k, v in out.items()} }")
            server.kill()  # SIGKILL with both transactions open
        finally:
            locker.rollback()
            locker.close()
        for t in threads:
            t.join(60)
        assert isinstance(out["purchase"], Exception) and isinstance(out["cancel"], Exception), \
            f"cycle {cycle}: a request was answered by a killed server: {out}"
        # the orphaned backends notice their client is gone and roll back
        assert _until(lambda: _busy_backends() == 0, 30), \
            f"cycle {cycle}: transactions of the killed process stay open"
        after = partner_snapshot(f.partner)
        assert not snapshot_diff(before, after), \
            f"cycle {cycle}: the killed transactions left {snapshot_diff(before, after)}"
        assert db_val("SELECT count(*) FROM idempotency_keys WHERE key = %s", key) == 0

        with spawn_server() as again:
            c = again.client(tok)
            base = f"/v1/partners/{f.partner}/purchases"
            first = c.post(base, json={"package_id": SILVER}, headers={"Idempotency-Key": key})
            assert first.status_code == 201, first.text
            replay = c.post(base, json={"package_id": SILVER}, headers={"Idempotency-Key": key})
            assert replay.status_code == 201 and replay.json() == first.json()
            assert replay.headers.get("Idempotent-Replayed") == "true"
            r = c.post(f"{base}/{f.purchase}/cancellation", json={})
            assert r.status_code == 200, r.text
            assert c.post(f"{base}/{f.purchase}/cancellation", json={}).status_code == 409
        assert db_val("SELECT count(*) FROM purchases WHERE partner_id = %s AND package_id = %s",
                      f.partner, SILVER) == 1
        for action in ("purchase.created", "purchase.cancelled"):
            assert db_val("SELECT count(*) FROM audit_events WHERE partner_id = %s AND "
                          "action = %s", f.partner, action) == 1, action
        # every purchase has exactly its package's benefits; the cancelled one is refunded
        assert db_val("""
            SELECT count(*) FROM purchases pu WHERE pu.partner_id = %s AND
              (SELECT count(*) FROM benefits b WHERE b.purchase_id = pu.id) <>
              (SELECT count(*) FROM package_benefits pb WHERE pb.package_id = pu.package_id)""",
                      f.partner) == 0
        assert db_one("SELECT status, refund_amount IS NOT NULL FROM purchases WHERE id = %s",
                      f.purchase) == ("cancelled", True)
    assert db_val("SELECT count(*) FROM pg_stat_activity WHERE state LIKE 'idle in transaction%%'"
                  " AND application_name = 'mpn-benefits'") == 0


def test_purchase_retried_with_its_key_through_an_outage_happens_exactly_once():
    """A client retries one purchase with the same Idempotency-Key before, during and after a
    PostgreSQL outage: outage answers are 503 problems, the purchase is made exactly once, and
    every retry after it replays the first answer."""
    from helpers import assert_problem, pg_down
    p = fresh_partner()
    server = spawn_server()
    c = server.client(token(p.users["global_admin"], p.partner, ["global_admin"]))
    url = f"/v1/partners/{p.partner}/purchases"
    key = {"Idempotency-Key": f"outage-{p.partner}"}
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
    assert db_val("SELECT count(*) FROM purchases WHERE partner_id = %s AND package_id = %s",
                  p.partner, SILVER) == 1
    assert db_val("SELECT count(*) FROM audit_events WHERE partner_id = %s "
                  "AND action = 'purchase.created'", p.partner) == 1
    server.stop()
