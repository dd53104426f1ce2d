"""Issue 17: at most HTTP_MAX_RUNNING authenticated requests run at once; the others wait in
line, first come first served, and give up with a 503 problem after 5 s (src/admit/admit.c).
Probes and public routes never wait.

The places are taken by writes that wait on a row lock this test holds."""
from __future__ import annotations

import threading
import time

import requests

from fresh_partner import fresh_partner
from helpers import assert_problem, db_connect, metric, spawn_server


def _until(cond, what: str, limit: float = 20) -> None:
    end = time.monotonic() + limit
    while not cond():
        assert time.monotonic() < end, what
        time.sleep(0.02)


class Held:
    """`places` writes of the partner's employee, each holding a place while it waits on the
    row lock held here; release() lets them finish."""

    def __init__(self, srv, f, places: int):
        self.srv, self.f = srv, f
        self.lock = db_connect()
        self.lock.autocommit = False
        self.lock.cursor().execute("SELECT 1 FROM users WHERE id = %s FOR UPDATE",
                                   (f.users["employee"],))
        self.answers: list = []
        self.threads = [threading.Thread(target=self._patch, args=(i,)) for i in range(places)]
        for t in self.threads:
            t.start()
        _until(lambda: metric(srv.url, "mpn_http_requests_running") >= places,
               "the writes did not take their places")

    def _patch(self, i: int) -> None:
        self.answers.append(self.f.client(self.srv.url).patch(
            self.f.path(f"/users/{self.f.users['employee']}"), json={"display_name": f"Held {i}"}))

    def release(self) -> None:
        self.lock.commit()
        self.lock.close()
        for t in self.threads:
            t.join(30)
        assert [r.status_code for r in self.answers] == [200] * len(self.threads), \
            [r.text for r in self.answers]


def test_requests_past_the_places_wait_in_line_and_go_in_arrival_order():
    f = fresh_partner()
    srv = spawn_server(env_overrides={"HTTP_MAX_RUNNING": 1})
    try:
        held = Held(srv, f, 1)
        got: list = []

        def read(i: int) -> None:
            r = f.client(srv.url).get(f.path("/benefits?limit=1"))
            got.append((i, r.status_code, r.headers.get("X-Request-Id")))

        ts = []
        for i in range(5):  # one after the other into the line
            ts.append(threading.Thread(target=read, args=(i,)))
            ts[-1].start()
            _until(lambda: metric(srv.url, "mpn_http_requests_in_line") >= i + 1,
                   f"read {i} is not in line")
        assert got == []  # nobody overtook the write holding the only place
        # public routes do not queue
        assert requests.get(srv.url + "/healthz", timeout=2).status_code == 200
        held.release()
        for t in ts:
            t.join(30)
        assert sorted(s for _, s, _ in got) == [200] * 5, got
        # the access log has them in the order they were served: the order they came in
        log = srv.log()
        where = {i: log.find(rid) for i, _, rid in got}
        assert all(p >= 0 for p in where.values()), where
        assert sorted(where, key=where.get) == [0, 1, 2, 3, 4], where
        assert metric(srv.url, "mpn_http_requests_in_line") == 0
        assert metric(srv.url, "mpn_http_requests_running") == 0
    finally:
        srv.stop()


def test_a_request_that_waits_too_long_in_line_gets_a_503_problem():
    f = fresh_partner()
    srv = spawn_server(env_overrides={"HTTP_MAX_RUNNING": 2})
    try:
        held = Held(srv, f, 2)
        t0 = time.monotonic()
        r = f.client(srv.url).get(f.path("/users"))
        waited = time.monotonic() - t0
        body = assert_problem(r, 503, "unavailable")
        assert int(r.headers["Retry-After"]) >= 1 and "waiting" in body["detail"]
        assert 4.5 <= waited < 9, waited
        assert metric(srv.url, "mpn_http_requests_line_timeouts_total") == 1
        held.release()
        # the places are free again
        assert f.client(srv.url).get(f.path("/users")).status_code == 200
        assert metric(srv.url, "mpn_http_requests_running") == 0
    finally:
        srv.stop()
