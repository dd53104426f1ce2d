"""Issue 12, point 6: scheduled events and retention (DESIGN §4b). scripts/lib.sh runs the
scheduler every second (SCHEDULER_INTERVAL_SECONDS=1) in every test process.

benefit.expiring (30 days before), purchase.renewal_open (90 days before term_end),
purchase.refund_window_closing (3 days before the 30-day window closes, while still eligible):
exactly one event per occasion however many processes run. Retention: events older than
EVENT_RETENTION_DAYS (90) whose deliveries are done, and idempotency records older than 24 h,
are purged."""
from __future__ import annotations

import threading
import time

from fresh_partner import WINDOWS_SERVER, fresh_partner, reveal_key
from helpers import (BASE, Client, db_all, db_connect, db_exec, db_val, spawn_server,
                     token)


def _wait(cond, what: str, limit: float = 60.0):
    end = time.time() + limit
    while time.time() < end:
        if cond():
            return
        time.sleep(0.2)
    raise AssertionError(f"{what} did not happen")


def _counts(partner: str) -> dict:
    return dict(db_all("SELECT type || ' ' || subject_id, count(*) FROM events WHERE "
                       "partner_id = %s AND occasion IS NOT NULL GROUP BY 1", partner))


def test_each_occasion_gets_one_event_however_many_processes_run():
    f = fresh_partner()
    n_benefits = len(f.benefits)
    with spawn_server() as s2, spawn_server() as s3:
        # the term ends in 20 days (renewal open, every benefit expiring), bought 28 days ago
        # (refund window closing, no key revealed): due now, in 4 processes at once
        db_exec("UPDATE purchases SET purchased_at = now() - interval '28 days', "
                "term_end = now() + interval '20 days' WHERE id = %s", f.purchase)
        want = n_benefits + 2
        _wait(lambda: sum(_counts(f.partner).values()) >= want, "the scheduled events")
        time.sleep(3)  # several more passes of every scheduler
        c = _counts(f.partner)
        assert sum(c.values()) == want and set(c.values()) == {1}, c
        assert c[f"purchase.renewal_open {f.purchase}"] == 1
        assert c[f"purchase.refund_window_closing {f.purchase}"] == 1
        assert sum(1 for k in c if k.startswith("benefit.expiring ")) == n_benefits
    # through the contract: the feed answers them (Prism checks their schema)
    c = Client(BASE, token(f.users["global_admin"], f.partner, ["global_admin"]))
    got = c.get(f"/v1/partners/{f.partner}/events", params={
        "types": "benefit.expiring,purchase.renewal_open,purchase.refund_window_closing",
        "limit": 200}).json()["items"]
    assert len(got) == want and all(e["request_id"] is None for e in got)
    c.close()
    ev = db_all("SELECT doc FROM event_docs WHERE partner_id = %s AND type = "
                "'purchase.renewal_open'", f.partner)[0][0]
    assert ev["data"]["id"] == f.purchase and ev["request_id"] is None
    # ids stay consecutive (a skipped duplicate gives its number back)
    seqs = [s for (s,) in db_all("SELECT seq FROM events WHERE partner_id = %s ORDER BY seq",
                                 f.partner)]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))


def test_refund_window_closing_only_while_eligible():
    f = fresh_partner()
    reveal_key(f.benefits[WINDOWS_SERVER])  # a software key handed out: no refund any more
    db_exec("UPDATE purchases SET purchased_at = now() - interval '28 days' WHERE id = %s",
            f.purchase)
    marker = fresh_partner()  # the scheduler's pass is seen on another purchase
    db_exec("UPDATE purchases SET purchased_at = now() - interval '28 days' WHERE id = %s",
            marker.purchase)
    _wait(lambda: db_val("SELECT count(*) FROM events WHERE partner_id = %s AND type = "
                         "'purchase.refund_window_closing'", marker.partner) == 1, "marker")
    time.sleep(2)
    assert db_val("SELECT count(*) FROM events WHERE partner_id = %s AND type = "
                  "'purchase.refund_window_closing'", f.partner) == 0


def test_retention_purges_old_delivered_events_and_old_idempotency_records():
    f = fresh_partner()
    old_done = db_val("SELECT emit_event(%s::uuid, 'user.updated', 'user', %s, 'old')",
                      f.partner, f.users["employee"])
    old_pending = db_val("SELECT emit_event(%s::uuid, 'user.updated', 'user', %s, 'old')",
                         f.partner, f.users["employee"])
    recent = db_val("SELECT emit_event(%s::uuid, 'user.updated', 'user', %s, 'new')",
                    f.partner, f.users["employee"])
    db_exec("UPDATE events SET occurred_at = now() - interval '91 days' WHERE partner_id = %s "
            "AND seq IN (%s, %s)", f.partner, old_done, old_pending)
    wid = db_val("INSERT INTO webhooks (partner_id, url, event_types, secret_enc, enabled) "
                 "VALUES (%s, 'http://127.0.0.1:9/x', '{}', 'x', false) RETURNING id::text",
                 f.partner)
    for seq, status in ((old_done, "succeeded"), (old_pending, "pending")):
        db_exec("INSERT INTO webhook_deliveries (webhook_id, partner_id, event_id, event_type, "
                "payload, status) VALUES (%s, %s, event_id(%s), 'user.updated', '{}', %s)",
                wid, f.partner, seq, status)
    db_exec("INSERT INTO idempotency_keys (scope, key, request_hash, status, body, created_at) "
            "VALUES (%s, 'old-key', 'x', 200, '', now() - interval '25 hours'), "
            "(%s, 'new-key', 'x', 200, '', now())", f.partner, f.partner)
    _wait(lambda: db_val("SELECT count(*) FROM events WHERE partner_id = %s AND seq = %s",
                         f.partner, old_done) == 0, "the purge")
    left = [s for (s,) in db_all("SELECT seq FROM events WHERE partner_id = %s AND seq IN "
                                 "(%s, %s, %s) ORDER BY seq", f.partner, old_done, old_pending,
                                 recent)]
    assert left == [old_pending, recent]
    assert db_val("SELECT count(*) FROM webhook_deliveries WHERE webhook_id = %s", wid) == 1
    keys = [k for (k,) in db_all("SELECT key FROM idempotency_keys WHERE scope = %s", f.partner)]
    assert keys == ["new-key"]


def test_concurrent_writers_of_one_occasion_write_one_event():
    """The guarantee itself, without the scheduler's timing: 8 connections write the same
    occasion at the same moment; one event is written, and the ids stay consecutive."""
    f = fresh_partner()
    barrier = threading.Barrier(8)
    results = []

    def writer():
        conn = db_connect()
        conn.autocommit = True
        with conn.cursor() as cur:
            barrier.wait()
            try:
                cur.execute("SELECT emit_event(%s::uuid, 'purchase.renewal_open', 'purchase', "
                            "%s, NULL, NULL, 'renewal_open:test')", (f.partner, f.purchase))
                results.append(cur.fetchone()[0])
            except Exception as e:  # the unique index stopped it: also fine
                results.append(type(e).__name__)
        conn.close()

    ts = [threading.Thread(target=writer) for _ in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert db_val("SELECT count(*) FROM events WHERE partner_id = %s AND occasion = "
                  "'renewal_open:test'", f.partner) == 1
    assert sum(1 for r in results if isinstance(r, int)) == 1, results
    seqs = [s for (s,) in db_all("SELECT seq FROM events WHERE partner_id = %s ORDER BY seq",
                                 f.partner)]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
