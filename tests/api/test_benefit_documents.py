"""Benefit documents kept in a table (issue 17, sql/015_benefit_documents.sql): the partner reads
page through benefit_documents, written again at the commit of every transaction that changes a
row a document shows. These tests hold the table to the view it is written from (benefit_docs,
the one definition of a document): after concurrent writers, and when the clock passes an instant
a document shows. test_zz_documents.py checks every document the whole suite left behind."""
from __future__ import annotations

import threading
import time

from fresh_partner import CO_SELL, GOLD_CORE, INCIDENTS, VS_ENTERPRISE, fresh_partner
from helpers import db_connect, db_exec, db_one, db_val, spawn_server


def tx_connect():
    """A connection whose transactions the test commits itself."""
    c = db_connect()
    c.autocommit = False
    return c


def stored(benefit_id: str) -> dict:
    return db_val("SELECT doc FROM benefit_documents WHERE id = %s", benefit_id)


def live(benefit_id: str) -> dict:
    return db_val("SELECT doc FROM benefit_docs WHERE id = %s", benefit_id)


def test_a_new_benefit_has_its_document_at_commit():
    f = fresh_partner()
    for bid in f.benefits.values():
        assert stored(bid) is not None and stored(bid) == live(bid)


def test_a_write_in_progress_leaves_the_document_as_it_was_until_commit():
    f = fresh_partner()
    bid = f.benefits[VS_ENTERPRISE]
    before = stored(bid)
    conn = tx_connect()
    try:
        with conn.cursor() as cur:
            cur.execute("UPDATE benefits SET quantity = quantity + 7 WHERE id = %s", (bid,))
        assert stored(bid) == before  # another connection: not committed yet
        conn.commit()
    finally:
        conn.close()
    assert stored(bid)["quantity"] == before["quantity"] + 7
    assert stored(bid) == live(bid)


def _waiting_for_a_lock(pid: int, timeout: float = 20) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if db_val("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", pid) == "Lock":
            return
        time.sleep(0.02)
    raise AssertionError("the second commit never waited for the document's lock")


def test_two_transactions_changing_one_document_leave_both_changes(base, op):
    """The operator completes an activation while another operator edits the catalog (the
    benefit's product); both commits write the benefit's document, the second after the first
    committed, and it shows both changes. Transactions of one partner already queue at its
    data version's row (sql/007), but a catalog edit writes the documents of every partner
    that bought the product, holding none of their rows: without the document's lock taken
    before the view is read, its commit would write what it read before the first commit (a
    lost update: the activation still pending)."""
    f = fresh_partner()
    bid = f.benefits[INCIDENTS]
    r = f.client(base).post(f.benefit_path(INCIDENTS, "/activation"))
    assert r.status_code == 202, r.text
    act = r.json()["id"]
    first, second = tx_connect(), tx_connect()
    try:
        with first.cursor() as cur:
            # the first transaction writes the document now and keeps its lock until it commits
            cur.execute("UPDATE activations SET status = 'active', processed_at = now(), "
                        "processed_by = 'test' WHERE id = %s", (act,))
            cur.execute("SET CONSTRAINTS ALL IMMEDIATE")
        with second.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            pid = cur.fetchone()[0]
            cur.execute("UPDATE products SET unit = 'hours' WHERE id = %s", (INCIDENTS,))
        errors = []

        def commit_second():
            try:
                second.commit()
            except Exception as e:  # noqa: BLE001 (reported below)
                errors.append(e)

        t = threading.Thread(target=commit_second)
        t.start()
        _waiting_for_a_lock(pid)
        first.commit()
        t.join(30)
        assert not t.is_alive() and not errors, errors
        doc = stored(bid)
        assert (doc["activation_status"], doc["unit"]) == ("active", "hours")
        assert doc == live(bid)
    finally:
        first.close()
        second.close()
        db_exec("UPDATE products SET unit = 'incidents' WHERE id = %s", INCIDENTS)
    assert stored(bid)["unit"] == "incidents"


def test_documents_follow_the_clock_and_the_scheduler_writes_them_again(base):
    """A benefit whose expiry passes shows `expired`, and a Go-To-Market offer whose competency
    expires shows it ineligible, from that instant on, though no row changed; the scheduler then
    writes those documents again."""
    f = fresh_partner(competencies=(("Cloud Platform", "gold", "1 year"),))
    ga = f.client(base)
    vs, gold = f.benefits[VS_ENTERPRISE], f.benefits[GOLD_CORE]

    def listed():
        r = ga.get(f.path("/benefits"), params={"limit": 200})
        assert r.status_code == 200, r.text
        return {b["id"]: b for b in r.json()["items"]}

    # Any scheduler may write the document again as soon as its instant has passed: the main
    # service's (once a minute) and every service another test starts (at once). So the
    # instant is set again, up to three times, until the stored row is seen still stale.
    for attempt in range(3):
        deadline = time.time() + 1.5
        db_exec("UPDATE benefits SET expires_at = to_timestamp(%s) WHERE id = %s", deadline, vs)
        db_exec("UPDATE partner_competencies SET expires_at = to_timestamp(%s) "
                "WHERE partner_id = %s", deadline, f.partner)
        assert db_val("SELECT valid_until IS NOT NULL FROM benefit_documents WHERE id = %s", vs)
        assert db_val("SELECT valid_until IS NOT NULL FROM benefit_documents WHERE id = %s",
                      gold)
        before = listed()
        assert before[vs]["status"] == "available"
        assert before[gold]["eligibility"] == {"eligible": True, "reasons": []}
        time.sleep(max(0.0, deadline - time.time()) + 0.1)
        # in one statement (one snapshot): the table still holds what was true before the
        # instant, and what the reads page through is what is true now
        table, fast = db_one("SELECT m.status, f.status FROM benefit_documents m "
                             "JOIN benefit_docs_fast f ON f.id = m.id WHERE m.id = %s", vs)
        assert fast == "expired"
        if table == "available":
            break
        print(f"attempt {attempt + 1}: a scheduler wrote the document first")
    assert (table, fast) == ("available", "expired")
    after = listed()
    assert after[vs]["status"] == "expired"
    assert after[gold]["eligibility"] == {"eligible": False,
                                          "reasons": ["gold-competency-required"]}
    assert ga.get(f.path(f"/benefits/{vs}")).json()["status"] == "expired"
    expired = ga.get(f.path("/benefits"), params={"status": "expired"}).json()["items"]
    assert [b["id"] for b in expired] == [vs]
    srv = spawn_server(env_overrides={"SCHEDULER_INTERVAL_SECONDS": "1"})
    try:
        t0 = time.monotonic()
        while time.monotonic() - t0 < 30 and stored(vs)["status"] != "expired":
            time.sleep(0.2)
    finally:
        srv.stop()
    assert stored(vs)["status"] == "expired"
    assert stored(vs) == live(vs) and stored(gold) == live(gold)
    assert db_one("SELECT valid_until FROM benefit_documents WHERE id = %s", vs) == (None,)


def test_co_sell_ready_and_a_catalog_edit_reach_the_documents_they_show_in():
    f = fresh_partner(co_sell_ready=True)
    co, inc = f.benefits[CO_SELL], f.benefits[INCIDENTS]
    assert stored(co)["eligibility"] == {"eligible": True, "reasons": []}
    db_exec("UPDATE partners SET co_sell_ready = false WHERE id = %s", f.partner)
    assert stored(co)["eligibility"] == {"eligible": False, "reasons": ["co-sell-ready-required"]}
    assert stored(co) == live(co)
    # a product's unit shows in every benefit of it, whoever bought it
    assert stored(inc)["unit"] == "incidents"
    db_exec("UPDATE products SET unit = 'hours' WHERE id = %s", INCIDENTS)
    try:
        assert stored(inc)["unit"] == "hours"
        assert db_val("SELECT count(*) FROM benefit_documents m JOIN benefits b ON b.id = m.id "
                      "WHERE b.product_id = %s AND m.doc->>'unit' <> 'hours'", INCIDENTS) == 0
    finally:
        db_exec("UPDATE products SET unit = 'incidents' WHERE id = %s", INCIDENTS)
    assert stored(inc) == live(inc) and stored(inc)["unit"] == "incidents"
