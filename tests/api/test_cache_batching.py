"""Issue 17: partners' data versions are read several at once (src/cache/versions.c), and never
from a query that began before the request arrived.

Replica B serves a steady load of reads of one partner from several threads, so that a version
query is nearly always in flight there; every write goes through the shared service (replica
A). Right after each write's 2xx, a read on B must show it: a request that joined a version
query already under way (or reused a recent answer) would get the old version, and with it the
old answer from B's cache."""
from __future__ import annotations

import threading
import time

import pytest

from fresh_partner import fresh_partner
from helpers import BASE, db_connect, db_val, metric, spawn_server


@pytest.fixture(scope="module")
def replica():
    b = spawn_server()
    yield b
    b.stop()


def _load(client, path: str, stop: threading.Event, errors: list) -> None:
    while not stop.is_set():
        r = client.get(path)
        if r.status_code != 200:
            errors.append(r.status_code)


def test_reads_that_arrive_while_version_queries_wait_share_one(replica):
    """A replica with one pooled connection, held by a write that waits on a row lock: the
    first reads lead version queries that wait for that connection, the 20 reads behind them
    queue, and once the lock is gone one query answers all of those (a query per read without
    the batching: 22)."""
    f = fresh_partner()
    solo = spawn_server(env_overrides={"DB_POOL_SIZE": 1, "HTTP_MAX_RUNNING": 64})
    try:
        emp = f.users["employee"]
        lock = db_connect()
        lock.autocommit = False
        lock.cursor().execute("SELECT 1 FROM users WHERE id = %s FOR UPDATE", (emp,))
        out: dict = {}
        w = threading.Thread(target=lambda: out.setdefault("patch", f.client(solo.url).patch(
            f.path(f"/users/{emp}"), json={"display_name": "Held"})))
        w.start()
        deadline = time.monotonic() + 20
        while db_val("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                     "AND application_name = 'mpn-benefits' AND datname = current_database()") < 1:
            assert time.monotonic() < deadline, "the write never waited on the lock"
            time.sleep(0.05)
        reads0 = metric(solo.url, "mpn_cache_version_reads_total")
        queries0 = metric(solo.url, "mpn_cache_version_queries_total")
        answers: list = []
        rs = [threading.Thread(target=lambda: answers.append(
            f.client(solo.url).get(f.path("/benefits?limit=5")).status_code)) for _ in range(22)]
        for t in rs:
            t.start()
        while metric(solo.url, "mpn_cache_version_reads_total") - reads0 < 22:
            assert time.monotonic() < deadline, "the reads did not all arrive"
            time.sleep(0.05)
        time.sleep(0.2)  # the last ones from counted to queued
        lock.commit()
        lock.close()
        for t in rs + [w]:
            t.join(30)
        assert out["patch"].status_code == 200, out["patch"].text
        # the first read's query waited for the connection and may have given up
        # (ACQUIRE_TIMEOUT_MS: 503) on a slow machine; every read behind them is served
        assert answers.count(200) >= 20 and set(answers) <= {200, 503}, answers
        queries = metric(solo.url, "mpn_cache_version_queries_total") - queries0
        assert queries <= 4, f"{queries} version queries for 22 reads"
    finally:
        solo.stop()


def test_a_write_is_seen_at_once_while_version_queries_are_in_flight(replica):
    f = fresh_partner()
    a = f.client(BASE)
    emp = f.users["employee"]
    stop, errors = threading.Event(), []
    # the load reads the very documents checked below, so their old answers stay cached on B
    paths = [f.path("/users"), f.path(f"/users/{emp}"), f.path("/benefits")]
    ts = [threading.Thread(target=_load, args=(f.client(replica.url), paths[i % 3], stop, errors))
          for i in range(12)]
    for t in ts:
        t.start()
    try:
        b = f.client(replica.url)
        for i in range(40):
            name = f"Renamed {i}"
            r = a.patch(f.path(f"/users/{emp}"), json={"display_name": name})
            assert r.status_code == 200, r.text
            one = b.get(f.path(f"/users/{emp}"))
            assert one.status_code == 200 and one.json()["display_name"] == name, \
                f"write {i}: replica B answered {one.json().get('display_name')!r}"
            page = b.get(f.path("/users"))
            mine = [u for u in page.json()["items"] if u["id"] == emp]
            assert mine and mine[0]["display_name"] == name, f"write {i}: the list on B is stale"
    finally:
        stop.set()
        for t in ts:
            t.join()
    assert errors == []


def test_an_upper_case_partner_id_reads_like_the_lower_case_one(replica):
    from helpers import operator_token  # the operator may name any partner
    f = fresh_partner()
    op = replica.client(operator_token())
    low = op.get(f"/v1/partners/{f.partner}/benefits")
    up = op.get(f"/v1/partners/{f.partner.upper()}/benefits")
    assert low.status_code == 200 and up.status_code == 200, (low.text, up.text)
    assert [x["id"] for x in up.json()["items"]] == [x["id"] for x in low.json()["items"]]
