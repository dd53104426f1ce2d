"""Issue 19: any number of connections, with memory that does not grow with them.

Each test runs its own server (spawn_server, the ASan build) straight on its port, with a small
HTTP_MAX_CONNECTIONS where the test needs to pass it: the code path is the same as with the
default 1 024, and the bursts stay cheap for a shared CI machine. Figures are printed (pytest -s or
the junit log); the assertions are about outcomes (answers, threads, descriptors), never speed."""
import contextlib
import json
import os
import resource
import selectors
import socket
import threading
import time

import pytest
import requests

from fresh_partner import VS_ENTERPRISE, fresh_partner
from helpers import CONTOSO, GA_ID, db_connect, db_val, spawn_server, token

TOK = token(GA_ID, CONTOSO, ["global_admin"])
REQ = (f"GET /v1/partners/{CONTOSO}/benefits?limit=5 HTTP/1.1\r\nHost: x\r\n"
       f"Authorization: Bearer {TOK}\r\n\r\n").encode()


def proc_status(pid: int) -> dict:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    conn = 0
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{t}/comm") as f:
                conn += f.read().strip() == "MHD-connection"
        except OSError:
            pass
    return {"threads": int(out["Threads"]), "conn_threads": conn,
            "rss_kb": int(out["VmRSS"].split()[0]), "fds": len(os.listdir(f"/proc/{pid}/fd"))}


def metric(srv, name: str) -> float:
    for line in requests.get(srv.url + "/metrics", timeout=5).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no metric {name}")


def none_served(srv, timeout: float = 10) -> None:
    """Waits until no connection is served. spawn_server's readiness probes closed theirs, but
    under load the threads that served them may not have ended yet, and they still count
    against the caps (CI saw the 16th of 16 connections refused once)."""
    deadline = time.monotonic() + timeout
    while proc_status(srv.proc.pid)["conn_threads"] > 0:
        assert time.monotonic() < deadline, "earlier connections were never let go"
        time.sleep(0.05)


def settle(srv, idle: dict, timeout: float = 30) -> dict:
    """Polls until no connection thread is left and descriptors are back to the idle level (with
    a small margin for the pool reconnecting); returns the last reading."""
    deadline = time.monotonic() + timeout
    while True:
        now = proc_status(srv.proc.pid)
        if now["conn_threads"] == 0 and now["fds"] <= idle["fds"] + 4:
            return now
        if time.monotonic() > deadline:
            raise AssertionError(f"not back to idle: {now} (idle {idle})")
        time.sleep(0.2)


def raise_nofile(n: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n:
        if hard < n:
            pytest.fail(f"RLIMIT_NOFILE hard limit {hard} < {n}: cannot run this test")
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, hard))


def read_answer(s: socket.socket, deadline: float) -> tuple[int, bytes, bytes]:
    """One HTTP answer (status, head, body) from a blocking socket, or (0, ...) when the server
    closed without one."""
    data = b""
    while True:
        s.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            chunk = s.recv(65536)
        except (ConnectionResetError, socket.timeout):
            chunk = b""
        if not chunk:
            return 0, data, b""
        data += chunk
        head, sep, body = data.partition(b"\r\n\r\n")
        if sep:
            clen = [int(ln.split(b":", 1)[1]) for ln in head.split(b"\r\n")
                    if ln.lower().startswith(b"content-length:")]
            if clen and len(body) >= clen[0]:
                return int(head.split(b" ", 2)[1]), head, body[:clen[0]]


def burst(port: int, conns: int, seconds: float) -> dict:
    """`conns` keep-alive connections, each sending the next request as soon as it has an
    answer, for `seconds`; a connection the server closes is reopened. Returns the counts of
    answers by status, and of connections closed without an answer. Every socket waits at most
    10 s for an answer: a hang fails the burst."""
    sel = selectors.DefaultSelector()
    counts: dict = {}
    end = time.monotonic() + seconds

    def open_one():
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.setblocking(False)
        s.sendall(REQ)
        sel.register(s, selectors.EVENT_READ, {"buf": b"", "since": time.monotonic()})

    for _ in range(conns):
        open_one()
    while sel.get_map():
        for key, _ in sel.select(timeout=0.5):
            s, st = key.fileobj, key.data
            try:
                chunk = s.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                sel.unregister(s)
                s.close()
                if st["buf"]:
                    counts["cut"] = counts.get("cut", 0) + 1
                if time.monotonic() < end:
                    open_one()
                continue
            st["buf"] += chunk
            head, sep, body = st["buf"].partition(b"\r\n\r\n")
            if not sep:
                continue
            clen = [int(ln.split(b":", 1)[1]) for ln in head.split(b"\r\n")
                    if ln.lower().startswith(b"content-length:")]
            if not clen or len(body) < clen[0]:
                continue
            status = int(head.split(b" ", 2)[1])
            counts[status] = counts.get(status, 0) + 1
            st["buf"], st["since"] = body[clen[0]:], time.monotonic()
            if b"connection: close" in head.lower() or time.monotonic() >= end:
                sel.unregister(s)
                s.close()
                if time.monotonic() < end:
                    open_one()
            else:
                s.sendall(REQ)
        now = time.monotonic()
        for key in list(sel.get_map().values()):
            if now - key.data["since"] > 10:
                raise AssertionError(f"a connection waited over 10 s for an answer: {counts}")
    return counts


@pytest.mark.parametrize("factor", [2, 4])
def test_a_burst_over_the_cap_leaves_the_service_answering(factor):
    """The outage of issue 19: a burst of connections over HTTP_MAX_CONNECTIONS wedged the
    process for good (libmicrohttpd 0.9.75 returns from its own limit path with a mutex
    locked). Now the excess gets 503s while it lasts, and afterwards the service answers at
    once and gives its threads and descriptors back."""
    cap = 32
    raise_nofile(4096)
    # No rate limit: one token's burst may pass its 10 000 requests a minute on a quiet machine
    # (10 669 answers in 4 s once), and the 429s are not what this test is about.
    with spawn_server(env_overrides={"HTTP_MAX_CONNECTIONS": cap, "DB_POOL_SIZE": 4,
                                     "HTTP_MAX_CONNECTIONS_PER_CLIENT": cap,
                                     "RATE_LIMIT_PER_SUBJECT": 0,
                                     "RATE_LIMIT_PER_PARTNER": 0}) as srv:
        requests.get(srv.url + "/readyz", timeout=5)
        idle = proc_status(srv.proc.pid)
        peak, stop = dict(idle), threading.Event()

        def sample():
            while not stop.is_set():
                now = proc_status(srv.proc.pid)
                for k in now:
                    peak[k] = max(peak[k], now[k])
                time.sleep(0.05)

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            counts = burst(srv.port, factor * cap, 4.0)
        finally:
            stop.set()
            sampler.join()
        busy = peak
        # Within 2 s of the burst's end (its threads notice their clients left), both answer.
        t0 = time.monotonic()
        while True:
            ready = requests.get(srv.url + "/readyz", timeout=2)
            r = requests.get(f"{srv.url}/v1/partners/{CONTOSO}/benefits?limit=1", timeout=2,
                             headers={"Authorization": f"Bearer {TOK}"})
            after = time.monotonic() - t0
            if ready.status_code == 200 and r.status_code == 200:
                break
            assert after < 2.0, (ready.status_code, r.status_code, r.text)
            time.sleep(0.05)
        back = settle(srv, idle)
        refused = metric(srv, "mpn_http_connections_refused_total")
        print(f"\nburst {factor}x{cap}: answers {counts}; idle {idle}; during {busy}; "
              f"readyz + request answered {after:.3f}s after it; back to {back}; refused {refused:.0f}")
        assert counts.get(200, 0) > 0, counts
        assert counts.get(503, 0) > 0 and refused >= counts[503], counts  # the cap was passed
        assert set(counts) <= {200, 503}, counts
        assert busy["conn_threads"] <= cap, (idle, busy)  # never a thread over the cap


def test_an_answer_over_the_cap_is_a_503_problem_at_once():
    """With HTTP_MAX_CONNECTIONS connections being served (each made a request and keeps its
    connection), one more gets a complete 503 problem, Retry-After and a close, without
    waiting; when one of them goes, a new connection is served again."""
    cap = 16
    with spawn_server(env_overrides={"HTTP_MAX_CONNECTIONS": cap,
                                     "HTTP_MAX_CONNECTIONS_PER_CLIENT": cap}) as srv:
        none_served(srv)
        held = []
        try:
            for _ in range(cap):
                s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                assert read_answer(s, time.monotonic() + 10)[0] == 200
                held.append(s)
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            status, head, body = read_answer(s, time.monotonic() + 5)
            s.close()
            assert status == 503, head
            h = head.decode().lower()
            assert "content-type: application/problem+json" in h and "retry-after: 1" in h
            assert "connection: close" in h and "x-request-id: " in h
            doc = json.loads(body)
            assert doc["code"] == "unavailable" and doc["status"] == 503
            held.pop().close()
            deadline = time.monotonic() + 10
            while True:  # the freed thread ends within a moment
                with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s2:
                    s2.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                    if read_answer(s2, time.monotonic() + 5)[0] == 200:
                        break
                assert time.monotonic() < deadline, "a freed slot was not served again"
                time.sleep(0.1)
        finally:
            for s in held:
                s.close()


def test_10000_idle_connections_hold_no_thread_and_little_memory():
    """10 000 connections that send nothing: no thread each (the thread count does not move),
    a few hundred bytes each of the service's memory, and normal requests served meanwhile
    (p99 printed). The absolute RSS of the release build is in the soak/bench figures: this is
    the ASan build, whose allocations carry red zones."""
    n = 10000
    raise_nofile(n + 1000)
    with spawn_server() as srv:
        c = srv.client(TOK, timeout=10)
        assert c.get(f"/v1/partners/{CONTOSO}/benefits?limit=5").status_code == 200
        before = proc_status(srv.proc.pid)
        socks = []
        try:
            for _ in range(n):
                socks.append(socket.create_connection(("127.0.0.1", srv.port), timeout=10))
            deadline = time.monotonic() + 30
            while metric(srv, "mpn_http_connections_waiting") < n:
                assert time.monotonic() < deadline, "the service did not take the connections"
                time.sleep(0.2)
            held = proc_status(srv.proc.pid)
            lat = []
            for _ in range(200):
                t0 = time.monotonic()
                r = c.get(f"/v1/partners/{CONTOSO}/benefits?limit=5")
                lat.append(time.monotonic() - t0)
                assert r.status_code == 200, r.text
            lat.sort()
            p99 = lat[int(len(lat) * 0.99) - 1]
            grew_kb = held["rss_kb"] - before["rss_kb"]
            print(f"\n{n} idle connections: before {before}, held {held}; RSS grew {grew_kb} kB "
                  f"({grew_kb * 1024 / n:.0f} B a connection); 200 requests meanwhile, "
                  f"p50 {lat[100] * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms")
            # at most the test client's keep-alive connection and the last /metrics one
            assert held["conn_threads"] <= 2, (before, held)
            assert grew_kb < 16 * 1024, (before, held)  # under 1.6 KB a connection, with ASan
        finally:
            for s in socks:
                s.close()


def test_slow_header_clients_hold_no_thread_and_are_closed_at_the_header_timeout():
    """Clients that dribble a request head wait without a thread; one that has not sent a
    whole head by HTTP_HEADER_TIMEOUT_SECONDS is closed (and counted)."""
    with spawn_server(env_overrides={"HTTP_HEADER_TIMEOUT_SECONDS": 2}) as srv:
        requests.get(srv.url + "/healthz", timeout=5)
        before = proc_status(srv.proc.pid)
        socks = [socket.create_connection(("127.0.0.1", srv.port), timeout=10)
                 for _ in range(200)]
        try:
            for s in socks:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # no blank line yet
            time.sleep(0.5)
            held = proc_status(srv.proc.pid)
            assert held["conn_threads"] == 0, (before, held)
            # all of them closed by the server after the header timeout, none answered
            for s in socks:
                status, head, _ = read_answer(s, time.monotonic() + 10)
                assert status == 0 and head == b"", head
            assert metric(srv, "mpn_http_connections_timed_out_total") >= 200
        finally:
            for s in socks:
                s.close()


def test_an_idle_keep_alive_connection_is_closed_and_its_thread_ends():
    with spawn_server(env_overrides={"HTTP_IDLE_TIMEOUT_SECONDS": 1}) as srv:
        idle = proc_status(srv.proc.pid)  # no connection served yet
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_answer(s, time.monotonic() + 5)[0] == 200
            assert proc_status(srv.proc.pid)["conn_threads"] >= 1
            # this one and the one asking
            assert metric(srv, "mpn_http_connections_served") >= 2
            t0 = time.monotonic()
            status, head, _ = read_answer(s, time.monotonic() + 10)  # the server closes it
            closed_after = time.monotonic() - t0
        assert status == 0 and head == b""
        back = settle(srv, idle)
        print(f"\nidle keep-alive connection closed after {closed_after:.2f}s; threads {back}")


@contextlib.contextmanager
def benefit_locked(benefit_id: str):
    conn = db_connect()
    conn.autocommit = False
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM benefits WHERE id = %s FOR UPDATE", (benefit_id,))
        yield
        conn.commit()
    finally:
        conn.close()


def lock_waiters() -> int:
    return db_val("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                  "AND application_name = 'mpn-benefits' AND datname = current_database()")


def test_a_request_waiting_on_a_lock_does_not_stall_other_connections():
    """What a thread per served connection protects: a seat assignment waits on a row lock in
    PostgreSQL, and meanwhile other clients on other connections are answered."""
    p = fresh_partner()
    vs = p.benefits[VS_ENTERPRISE]
    with spawn_server() as srv:
        c = p.client(srv.url)
        answer = {}

        def assign():
            answer["r"] = c.post(p.benefit_path(VS_ENTERPRISE, "/assignments"),
                                 json={"user_id": p.users["employee"]}, timeout=30)

        t = threading.Thread(target=assign)
        with benefit_locked(vs):
            t.start()
            deadline = time.monotonic() + 10
            while lock_waiters() < 1:
                assert time.monotonic() < deadline, "the assignment never waited on the lock"
                time.sleep(0.05)
            other = p.client(srv.url, "mpn_partner_admin")
            for _ in range(10):
                assert other.get(p.path("/benefits"), timeout=5).status_code == 200
            assert lock_waiters() >= 1 and "r" not in answer  # it was still waiting meanwhile
        t.join(30)
        assert answer["r"].status_code == 201, answer["r"].text


def test_a_client_that_leaves_mid_head_is_forgotten_at_once():
    """A partial head whose client has gone can never be whole: the front closes it when the
    client does, not at the header timeout (30 s by default)."""
    with spawn_server() as srv:
        socks = [socket.create_connection(("127.0.0.1", srv.port), timeout=10)
                 for _ in range(50)]
        for s in socks:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        deadline = time.monotonic() + 10
        while metric(srv, "mpn_http_connections_waiting") < 50:
            assert time.monotonic() < deadline, "the connections never waited"
            time.sleep(0.1)
        for s in socks:
            s.close()
        deadline = time.monotonic() + 10
        while metric(srv, "mpn_http_connections_waiting") > 0:
            assert time.monotonic() < deadline, "closed clients still held after 10 s"
            time.sleep(0.1)
        assert metric(srv, "mpn_http_connections_timed_out_total") == 0


def test_one_client_address_gets_at_most_its_share():
    """HTTP_MAX_CONNECTIONS_PER_CLIENT: one address holding its share gets 503 for one more,
    while another address is still served."""
    with spawn_server(env_overrides={"HTTP_MAX_CONNECTIONS": 64,
                                     "HTTP_MAX_CONNECTIONS_PER_CLIENT": 4}) as srv:
        none_served(srv)
        held = []
        try:
            for _ in range(4):
                s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                assert read_answer(s, time.monotonic() + 10)[0] == 200
                held.append(s)
            with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                status, _, body = read_answer(s, time.monotonic() + 5)
            assert status == 503 and b"HTTP_MAX_CONNECTIONS_PER_CLIENT" in body, body
            # another address of the loopback range is its own client
            with socket.create_connection(("127.0.0.1", srv.port), timeout=10,
                                          source_address=("127.0.0.2", 0)) as s:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                assert read_answer(s, time.monotonic() + 5)[0] == 200
        finally:
            for s in held:
                s.close()
