"""Scale out and graceful shutdown (issue 7): three service replicas behind nginx, the topology
of docker/compose.yaml with local processes (like scripts/cluster.sh), PostgreSQL as the one
shared state. nginx runs from docker/nginx-cluster.conf.tmpl with docker/nginx-proxy.conf, the
proxy settings compose uses. These requests do not go through Prism: nginx is the proxy here
(and killing replicas would make Prism answer 500s of its own)."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from fresh_partner import ACTION_PACK, SILVER, VS_ENTERPRISE, fresh_partner
from helpers import (Client, assert_problem, db_connect, db_val, free_port, spawn_server, token,
                     wait_http)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


class Cluster:
    """N replicas (helpers.spawn_server: same database, same settings as the main service) and
    nginx in front of them."""

    def __init__(self, n: int = 3, address_rate: int = 100000, address_burst: int = 100000):
        self.replicas = [spawn_server(wait=False) for _ in range(n)]
        for r in self.replicas:
            wait_http(r.url + "/readyz", 30, r.proc)
        self.dir = tempfile.mkdtemp(prefix="mb-nginx-")
        os.chmod(self.dir, 0o755)
        os.makedirs(os.path.join(self.dir, "tmp"))
        os.chmod(os.path.join(self.dir, "tmp"), 0o1777)  # nginx workers run as nobody under root
        self.port = free_port()
        with open(os.path.join(ROOT, "docker", "nginx-cluster.conf.tmpl")) as f:
            conf = f.read()
        upstreams = "\n".join(f"        server 127.0.0.1:{r.port} max_fails=1 fail_timeout=5s;"
                              for r in self.replicas)
        conf = (conf.replace("@DIR@", self.dir).replace("@PORT@", str(self.port))
                .replace("@UPSTREAMS@", upstreams)
                .replace("@PROXY_CONF@", os.path.join(ROOT, "docker", "nginx-proxy.conf"))
                .replace("@ADDRESS_RATE@", str(address_rate))
                .replace("@ADDRESS_BURST@", str(address_burst)))
        with open(os.path.join(self.dir, "nginx.conf"), "w") as f:
            f.write(conf)
        self.nginx = subprocess.Popen(
            [NGINX, "-e", os.path.join(self.dir, "error.log"), "-p", self.dir, "-c",
             os.path.join(self.dir, "nginx.conf")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
            start_new_session=True)
        self.url = f"http://127.0.0.1:{self.port}"
        try:
            wait_http(self.url + "/nginx-health", 10, self.nginx)
        except AssertionError:
            raise AssertionError(f"nginx did not start: {self.error_log()}")

    def error_log(self) -> str:
        try:
            with open(os.path.join(self.dir, "error.log")) as f:
                return f.read()[-3000:]
        except OSError:
            return ""

    def close(self) -> None:
        if self.nginx.poll() is None:
            self.nginx.send_signal(signal.SIGQUIT)  # graceful: finish, then exit
            try:
                self.nginx.wait(10)
            except subprocess.TimeoutExpired:
                self.nginx.kill()
                self.nginx.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
        # Every replica that was not killed must exit 0 on SIGTERM, sanitizer-clean.
        for r in self.replicas:
            if r.proc.returncode != -signal.SIGKILL:
                r.stop()


def test_nginx_limits_requests_per_client_address():
    """Issue 15: the cluster's nginx answers 429 rate-limited (problem+json, Retry-After) past
    its limit per client address, before any replica is asked; its own health location is not
    limited, and the limit frees up again."""
    c = Cluster(1, address_rate=2, address_burst=3)
    try:
        s = requests.Session()
        answers = [s.get(c.url + "/healthz", timeout=10) for _ in range(12)]
        codes = [r.status_code for r in answers]
        assert codes.count(200) >= 1 and codes.count(429) >= 6, codes
        r = next(r for r in answers if r.status_code == 429)
        assert r.headers["Content-Type"] == "application/problem+json"
        assert r.json()["code"] == "rate-limited" and r.json()["status"] == 429
        assert r.headers["Retry-After"] == "1"
        assert "X-Request-Id" not in r.headers  # nginx's own answer: no replica saw it
        assert s.get(c.url + "/nginx-health", timeout=10).status_code == 200
        time.sleep(1.1)
        assert s.get(c.url + "/healthz", timeout=10).status_code == 200
    finally:
        c.close()


@pytest.fixture
def cluster():
    c = Cluster(3)
    yield c
    c.close()


def requests_by_replica(cluster: Cluster, method: str, route: str) -> list[int]:
    """How many requests of METHOD ROUTE (any status) each live replica answered, from its
    /metrics."""
    counts = []
    for r in cluster.replicas:
        if r.proc.poll() is not None:
            continue
        text = requests.get(r.url + "/metrics", timeout=5).text
        n = 0
        for line in text.splitlines():
            if line.startswith("mpn_http_requests_total{") and \
                    f'method="{method}",route="{route}",' in line:
                n += int(line.rsplit(" ", 1)[1])
        counts.append(n)
    return counts


def test_100_concurrent_seat_assignments_through_nginx_fill_exactly_10_seats(cluster):
    f = fresh_partner()
    benefit = f.benefits[VS_ENTERPRISE]
    db_val("UPDATE benefits SET quantity = 10 WHERE id = %s RETURNING 1", benefit)
    tag = uuid.uuid4().hex[:8]
    users = [db_val("INSERT INTO users (partner_id, email, display_name) "
                    "VALUES (%s, %s, 'Seat seeker') RETURNING id::text",
                    f.partner, f"seeker-{i}-{tag}@fresh.example") for i in range(100)]
    tok = token(f.users["global_admin"], f.partner, ["global_admin"])
    path = f.benefit_path(VS_ENTERPRISE, "/assignments")
    start = threading.Barrier(100)

    def assign(user_id):
        start.wait()
        # a session (so a connection to nginx) of its own per request
        return Client(cluster.url, tok, check_contract=False).post(path, json={"user_id": user_id})

    with ThreadPoolExecutor(max_workers=100) as pool:
        answers = list(pool.map(assign, users))

    statuses = sorted(r.status_code for r in answers)
    assert statuses.count(201) == 10, statuses
    assert statuses.count(409) == 90, statuses
    for r in answers:
        if r.status_code == 409:
            assert_problem(r, 409, "no-seats-available")
    assert db_val("SELECT count(*) FROM seat_assignments WHERE benefit_id = %s", benefit) == 10
    assert db_val("SELECT used FROM benefits WHERE id = %s", benefit) == 10
    # nginx spread them: more than one replica took part.
    served = requests_by_replica(cluster, "POST",
                                 "/v1/partners/:partnerId/benefits/:benefitId/assignments")
    assert sum(served) == 100, served
    assert sum(1 for n in served if n > 0) >= 2, served


def _wait_until(cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out ({timeout}s) waiting for {what}"
        time.sleep(0.02)


def test_killing_a_replica_under_load_keeps_answers_coming(cluster):
    """Counted, not timed: 40 answers before the kill, SIGKILL, then 60 answers after it
    (however long a loaded machine takes for them): at most a handful fail at the instant of
    the kill, and the last 20 all succeed."""
    f = fresh_partner()
    tok = token(f.users["global_admin"], f.partner, ["global_admin"])
    stop = threading.Event()
    results: list[tuple[float, object]] = []  # (time, status code or exception name)
    lock = threading.Lock()

    def load():
        client = Client(cluster.url, tok, check_contract=False, timeout=10)  # keep-alive
        while not stop.is_set():
            try:
                outcome = client.get(f.path("/benefits")).status_code
            except requests.RequestException as e:
                outcome = type(e).__name__
            with lock:
                results.append((time.monotonic(), outcome))

    def count(since: float) -> int:
        with lock:
            return sum(1 for at, _ in results if at >= since)

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        _wait_until(lambda: count(0) >= 40, 60, "40 answers before the kill")
        victim = cluster.replicas[0]
        killed_at = time.monotonic()
        victim.kill()  # SIGKILL: no draining, connections reset
        _wait_until(lambda: count(killed_at) >= 60, 60, "60 answers after the kill")
    finally:
        stop.set()
        for t in threads:
            t.join(15)

    before = [o for at, o in results if at < killed_at]
    after = [o for at, o in results if at >= killed_at]
    assert before and all(o == 200 for o in before), before[:20]
    errors = [o for o in after if o != 200]
    # nginx retries a GET that hit the dead replica on another one (proxy_next_upstream):
    # at most a handful of failures at the instant of the kill.
    assert len(errors) <= 3, errors
    assert all(o == 200 for o in after[-20:]), after[-20:]
    assert victim.proc.returncode == -signal.SIGKILL


def test_idempotent_purchase_retried_on_another_replica_returns_the_first_answer(cluster):
    f = fresh_partner(package=ACTION_PACK)
    tok = token(f.users["global_admin"], f.partner, ["global_admin"])
    a, b = cluster.replicas[0], cluster.replicas[1]
    key = {"Idempotency-Key": f"cluster-{uuid.uuid4()}"}
    body = {"package_id": SILVER}

    first = Client(a.url, tok).post(f.path("/purchases"), json=body, headers=key)
    assert first.status_code == 201, first.text
    # The client did not see the answer (say) and retries; this time it reaches replica B.
    retry = Client(b.url, tok).post(f.path("/purchases"), json=body, headers=key)
    assert retry.status_code == 201, retry.text
    assert retry.json() == first.json()
    assert retry.headers.get("Idempotent-Replayed") == "true"
    assert retry.headers.get("Location") == first.headers.get("Location")
    # Replica A dies; the next retry goes through nginx, which skips A.
    a.kill()
    again = Client(cluster.url, tok, check_contract=False).post(f.path("/purchases"), json=body,
                                                               headers=key)
    assert again.status_code == 201, again.text
    assert again.json() == first.json()
    assert db_val("SELECT count(*) FROM purchases WHERE partner_id = %s AND package_id = %s",
                  f.partner, SILVER) == 1
    assert db_val("SELECT count(*) FROM audit_events WHERE partner_id = %s "
                  "AND action = 'purchase.created'", f.partner) == 1


def _connect_refused(port: int) -> bool:
    """True once the port refuses connections. Polled while the listener goes away: a
    connection caught in that moment may be reset or time out instead, which decides
    nothing (False: ask again)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return False
    except ConnectionRefusedError:
        return True
    except OSError:
        return False


def test_sigterm_lets_the_request_in_flight_finish_and_exits_0():
    f = fresh_partner()
    benefit = f.benefits[VS_ENTERPRISE]
    server = spawn_server()
    tok = token(f.users["global_admin"], f.partner, ["global_admin"])
    blocker = db_connect()
    blocker.autocommit = False
    try:
        # Hold the benefit's row lock: the assignment below waits for it inside the service.
        with blocker.cursor() as cur:
            cur.execute("SELECT 1 FROM benefits WHERE id = %s FOR UPDATE", (benefit,))
        answer = {}

        def assign():
            try:
                answer["r"] = Client(server.url, tok, timeout=30).post(
                    f.benefit_path(VS_ENTERPRISE, "/assignments"),
                    json={"user_id": f.users["employee"]})
            except requests.RequestException as e:
                answer["e"] = e

        t = threading.Thread(target=assign)
        t.start()
        deadline = time.monotonic() + 10
        while not db_val("SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
                         "WHERE NOT l.granted AND a.application_name = 'mpn-benefits'"):
            assert time.monotonic() < deadline, "the request never reached the lock"
            time.sleep(0.05)

        server.proc.send_signal(signal.SIGTERM)
        # draining once new connections are refused (polled: no fixed sleep), and still alive
        _wait_until(lambda: _connect_refused(server.port), 15,
                    "the draining server to refuse new connections")
        assert server.proc.poll() is None, "the server exited with a request in flight"
    finally:
        blocker.rollback()  # the request goes on
        blocker.close()
    t.join(30)
    assert "e" not in answer, answer.get("e")
    assert answer["r"].status_code == 201, answer["r"].text
    assert answer["r"].headers.get("Connection", "").lower() == "close"
    server.stop()  # exit status 0, no sanitizer report
    assert db_val("SELECT count(*) FROM seat_assignments WHERE benefit_id = %s AND user_id = %s",
                  benefit, f.users["employee"]) == 1
