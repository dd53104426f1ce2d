"""Never oversubscribed (issue 4, R7): the seat limit and the key hand-out hold under
concurrency with two service processes on one database. Requests go straight to the two
processes (not through Prism), half to each, all released at once."""
import pytest
import threading
from concurrent.futures import ThreadPoolExecutor

import requests

from helpers import DIRECT, db_all, db_one, db_val, spawn_server
from test_keys import fresh_keys, load, new_product, service_logs
from test_seats import VS_ENTERPRISE, Tenant


def fire(calls):
    """Runs every (method, url, token, json) at once from its own thread; returns
    [(status, body)] in order."""
    barrier = threading.Barrier(len(calls))

    def one(call):
        method, url, tok, body = call
        with requests.Session() as s:
            barrier.wait(timeout=60)
            r = s.request(method, url, json=body, timeout=120,
                          headers={"Authorization": f"Bearer {tok}"})
            return r.status_code, (r.json() if r.content else None)

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(one, calls))


@pytest.mark.seed("S24")
def test_50_concurrent_assignments_on_two_processes_fill_exactly_5_seats():
    t = Tenant(n_users=50)
    b = t.benefit(VS_ENTERPRISE, 5)
    tok = t.token(0)  # the Global admin assigns everyone
    with spawn_server() as other:
        bases = [DIRECT.rstrip("/"), other.url]
        calls = [("POST", f"{bases[i % 2]}{t.path(b, '/assignments')}", tok,
                  {"user_id": u}) for i, u in enumerate(t.users)]
        results = fire(calls)
    statuses = [s for s, _ in results]
    assert statuses.count(201) == 5, statuses
    assert statuses.count(409) == 45, statuses
    assert all(body["code"] == "no-seats-available" for s, body in results if s == 409)
    winners = sorted(body["user_id"] for s, body in results if s == 201)
    rows = [r[0] for r in db_all("SELECT user_id::text FROM seat_assignments "
                                 "WHERE benefit_id = %s ORDER BY user_id", b)]
    assert rows == winners and len(rows) == 5
    assert db_one("SELECT used, status FROM benefits WHERE id = %s", b) == (5, "active")


def test_20_concurrent_first_reveals_of_two_benefits_hand_the_pool_to_one(op):
    n = 3
    pid = new_product()
    keys = fresh_keys(n)
    assert load(op, pid, keys).json()["available"] == n
    a, c = Tenant(n_users=2), Tenant(n_users=2)
    ba, bc = a.benefit(pid, n), c.benefit(pid, n)
    with spawn_server() as other:
        bases = [DIRECT.rstrip("/"), other.url]
        calls = []
        for i in range(20):
            t, b = (a, ba) if i % 2 == 0 else (c, bc)
            calls.append(("POST", f"{bases[(i // 2) % 2]}{t.path(b, '/keys')}", t.token(0),
                          {"language": "en-US", "os": "x64"}))
        results = fire(calls)
        logs = other.log()
    by_benefit = {ba: [r for i, r in enumerate(results) if i % 2 == 0],
                  bc: [r for i, r in enumerate(results) if i % 2 == 1]}
    winners = [b for b, rs in by_benefit.items() if any(s == 200 for s, _ in rs)]
    assert len(winners) == 1, [s for s, _ in results]
    winner = winners[0]
    loser = bc if winner == ba else ba
    # every reveal of the winner got the same keys; every one of the loser was refused
    assert all(s == 200 for s, _ in by_benefit[winner])
    assert {tuple(body["keys"]) for _, body in by_benefit[winner]} == {tuple(keys)}
    assert all(s == 409 and body["code"] == "key-pool-exhausted" for s, body in by_benefit[loser])
    # no key was handed to two benefits, and the loser holds none
    assert db_all("SELECT benefit_id::text, count(*) FROM license_keys WHERE product_id = %s "
                  "GROUP BY benefit_id", pid) == [(winner, n)]
    assert db_val("SELECT count(*) FROM license_keys WHERE benefit_id IS NOT NULL "
                  "AND product_id = %s", pid) == n
    assert db_one("SELECT status, used FROM benefits WHERE id = %s", loser) == ("available", 0)
    assert db_one("SELECT status, used FROM benefits WHERE id = %s", winner) == ("active", n)
    assert db_val("SELECT count(*) FROM key_reveals WHERE benefit_id = %s", winner) == 10
    assert not any(k in logs or k in service_logs() for k in keys)
