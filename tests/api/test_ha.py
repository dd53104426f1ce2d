"""PostgreSQL high availability (issue 16): scripts/ha.sh (etcd, three PostgreSQL 15 managed by
Patroni with synchronous replication, two service replicas whose DATABASE_URL lists every node
with target_session_attrs=read-write, nginx in front), under a steady load of purchases and seat
assignments with Idempotency-Keys. The Patroni leader's PostgreSQL is SIGKILLed, then a planned
`patronictl switchover`: every 5xx meanwhile is a 503 `unavailable` problem with Retry-After,
no request hangs, writes come back without restarting anything, every acknowledged write is in
the new primary, every retried key was applied once, seat counts stay within their limits, and
the old primary rejoins (pg_rewind when its history diverged) so that three members run again.

These requests go through ha.sh's nginx, not through Prism (Prism would answer 500s of its own
while the database is away); the answers' shapes are checked here instead."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field

import psycopg2
import pytest
import requests

import helpers
from fresh_partner import ACTION_PACK, GOLD, SILVER, VS_ENTERPRISE, fresh_partner
from helpers import Client, assert_problem, spawn_server, token

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HUNG_S = 10  # a request not answered within this is "hung"
SEATS = 3  # VS Enterprise seats per partner; 5 users try to take them
PARTNERS = 160


# --- the cluster ------------------------------------------------------------------------------


class HA:
    def __init__(self):
        log_dir = os.environ.get("MB_LOG_DIR") or tempfile.gettempdir()
        self.env_file = tempfile.mktemp(prefix="mb-ha-env.")
        self.log_path = os.path.join(log_dir, "ha.log")
        e = dict(os.environ, BIN=helpers.env("MB_BIN"), HA_LOG_DIR=log_dir, HA_FAST="1",
                 DB_POOL_SIZE="4")
        e.pop("HA_PORT", None)
        with open(self.log_path, "ab") as logf:
            self.proc = subprocess.Popen(
                [os.path.join(ROOT, "scripts", "ha.sh"), "-n", "2", "--env-file", self.env_file],
                env=e, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                start_new_session=True)
        deadline = time.monotonic() + 240
        while not os.path.exists(self.env_file):
            if self.proc.poll() is not None:
                raise AssertionError(f"scripts/ha.sh exited {self.proc.returncode}:\n"
                                     f"{self.log()[-4000:]}")
            if time.monotonic() > deadline:
                self.close()
                raise AssertionError(f"scripts/ha.sh not ready after 240 s:\n{self.log()[-4000:]}")
            time.sleep(0.3)
        with open(self.env_file) as f:
            kv = dict(line.rstrip("\n").split("=", 1) for line in f if "=" in line)
        os.unlink(self.env_file)
        self.dir = kv["HA_DIR"]
        self.url = kv["HA_URL"]
        self.database_url = kv["HA_DATABASE_URL"]
        self.patronictl = [kv["HA_PATRONICTL"], "-c", kv["HA_PATRONI_CONFIG"]]
        self.rest_ports = [int(p) for p in kv["HA_REST_PORTS"].split()]
        self.pg_ports = [int(p) for p in kv["HA_PG_PORTS"].split()]

    def log(self) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def close(self) -> int:
        """SIGTERM to ha.sh: it stops nginx, the replicas (each must exit 0), Patroni and etcd,
        and exits 0 only when all of that went well."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(120)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode

    def members(self) -> list[dict]:
        for p in self.rest_ports:
            try:
                return requests.get(f"http://127.0.0.1:{p}/cluster", timeout=2).json()["members"]
            except (requests.RequestException, ValueError, KeyError):
                continue
        return []

    def leader(self) -> dict | None:
        for m in self.members():
            if m["role"] == "leader" and m["state"] == "running":
                return m
        return None

    def node(self, member: dict) -> int:
        """1, 2 or 3: the member's data directory is <dir>/pg<n>/data."""
        return self.pg_ports.index(int(member["port"])) + 1

    def wait_healthy(self, timeout: float = 90) -> list[dict]:
        """Until three members run, one leader, one synchronous standby, all on one timeline."""
        deadline = time.monotonic() + timeout
        while True:
            m = self.members()
            running = [x for x in m if x["state"] in ("running", "streaming")]
            if (len(running) == 3 and sum(x["role"] == "leader" for x in running) == 1
                    and sum(x["role"] == "sync_standby" for x in running) == 1
                    and len({x.get("timeline") for x in running}) == 1):
                return m
            assert time.monotonic() < deadline, f"cluster not healthy after {timeout} s: {m}"
            time.sleep(0.3)

    def primary(self):
        """An autocommit connection to the primary, through DATABASE_URL as ha.sh gives it."""
        c = psycopg2.connect(self.database_url, connect_timeout=5)
        c.autocommit = True
        return c


@pytest.fixture(scope="module")
def ha():
    cluster = HA()
    try:
        cluster.wait_healthy()
        yield cluster
    finally:
        rc = cluster.close()
    assert rc == 0, f"scripts/ha.sh exited {rc} on SIGTERM:\n{cluster.log()[-3000:]}"


@contextlib.contextmanager
def database(url: str):
    """helpers.db_* (and fresh_partner) against another database inside the block."""
    saved = os.environ["DATABASE_URL"]
    with contextlib.suppress(Exception):
        helpers._conn.close()
    helpers._conn = None
    os.environ["DATABASE_URL"] = url
    try:
        yield
    finally:
        os.environ["DATABASE_URL"] = saved
        with contextlib.suppress(Exception):
            helpers._conn.close()
        helpers._conn = None


# --- the load ---------------------------------------------------------------------------------


@dataclass
class Write:
    kind: str  # "purchase" or "seat"
    partner: str
    target: str  # package id, or user id
    benefit: str | None
    key: str
    attempts: list = field(default_factory=list)  # (started, ended, outcome)
    final: requests.Response | None = None


class Load:
    """Two purchase workers and two seat workers, each with its own partners, each write with
    an Idempotency-Key and retried with that key after a 5xx or a transport error (what a
    client should do when the outcome of a write is unknown), through nginx."""

    def __init__(self, ha: HA, partners: list):
        self.ha = ha
        self.partners = partners
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.writes: list[Write] = []
        self.threads = []

    def start(self) -> None:
        half = len(self.partners) // 2
        jobs = [self._purchases(self.partners[:half][i::2]) for i in range(2)] + \
               [self._seats(self.partners[half:][i::2]) for i in range(2)]
        self.threads = [threading.Thread(target=self._run, args=(j,)) for j in jobs]
        for t in self.threads:
            t.start()

    def _purchases(self, partners):
        for f in partners:
            for pkg in (ACTION_PACK, SILVER):
                yield f, Write("purchase", f.partner, pkg, None, f"ha-{uuid.uuid4()}")

    def _seats(self, partners):
        for f in partners:
            for role in ("employee", "user_admin", "admin_agent", "mpn_partner_admin",
                         "global_admin"):
                yield f, Write("seat", f.partner, f.users[role], f.benefits[VS_ENTERPRISE],
                               f"ha-{uuid.uuid4()}")

    def _run(self, jobs) -> None:
        clients = {}
        for f, w in jobs:
            if self.stop.is_set():
                return
            c = clients.get(f.partner)
            if c is None:
                clients.clear()
                c = clients[f.partner] = Client(
                    self.ha.url, token(f.users["global_admin"], f.partner, ["global_admin"]),
                    check_contract=False, timeout=HUNG_S)
            if w.kind == "purchase":
                path, body = f.path("/purchases"), {"package_id": w.target}
            else:
                path, body = f.benefit_path(VS_ENTERPRISE, "/assignments"), {"user_id": w.target}
            with self.lock:
                self.writes.append(w)
            give_up = time.monotonic() + 60
            while True:
                t0 = time.monotonic()
                try:
                    r = c.post(path, json=body, headers={"Idempotency-Key": w.key})
                    outcome = r
                except requests.RequestException as e:
                    r, outcome = None, type(e).__name__
                w.attempts.append((t0, time.monotonic(), outcome))
                if r is not None and r.status_code < 500:
                    w.final = r
                    break
                if self.stop.is_set() or time.monotonic() > give_up:
                    break
                time.sleep(0.2)  # Retry-After says 2; the load retries sooner, to measure
            time.sleep(0.05)  # a steady load, not a flood

    def finish(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(HUNG_S * 2 + 5)

    def attempts(self):
        with self.lock:
            ws = list(self.writes)
        return [(w, a) for w in ws for a in w.attempts]

    def first_success_after(self, t: float) -> float | None:
        """When the first write sent after t got a 2xx."""
        ok = [a[1] for w, a in self.attempts()
              if a[0] >= t and not isinstance(a[2], str) and 200 <= a[2].status_code < 300]
        return min(ok) if ok else None


def wait_for(what, timeout: float, step: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        v = what()
        if v is not None:  # (a requests.Response is falsy when it is no 2xx)
            return v
        assert time.monotonic() < deadline, f"timed out after {timeout} s"
        time.sleep(step)


def kill_postgres(ha: HA, member: dict) -> None:
    """SIGKILL the member's postmaster and every process of it (its backends too: a machine
    that loses PostgreSQL loses all of it)."""
    data = os.path.join(ha.dir, f"pg{ha.node(member)}", "data")
    with open(os.path.join(data, "postmaster.pid")) as f:
        pm = int(f.readline())
    pids = [pm]
    for d in os.listdir("/proc"):
        if d.isdigit():
            with contextlib.suppress(OSError):
                with open(f"/proc/{d}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pm:
                        pids.append(int(d))
    for p in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGKILL)


def ppid(pid: int) -> int | None:
    with contextlib.suppress(OSError):
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    return None


def pids_of(marker: str) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            with contextlib.suppress(OSError):
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    if marker.encode() in f.read():
                        out.append(int(d))
    return out


def diverge_and_kill(ha: HA, leader: dict) -> None:
    """The leader's history diverges from its standbys' just before it dies: its WAL senders
    are paused, it commits one transaction locally (synchronous_commit = local: never
    acknowledged as replicated), then every process of its PostgreSQL is killed. The promoted
    standby never had that WAL, so the old primary can only rejoin through pg_rewind."""
    data = os.path.join(ha.dir, f"pg{ha.node(leader)}", "data")
    with open(os.path.join(data, "postmaster.pid")) as f:
        pm = int(f.readline())
    receivers = [p for p in pids_of("walsender") if ppid(p) == pm]
    assert len(receivers) == 2, receivers
    conn = psycopg2.connect(ha.database_url, host="127.0.0.1", port=int(leader["port"]),
                            target_session_attrs="any", connect_timeout=5)
    conn.autocommit = True
    try:
        for p in receivers:
            os.kill(p, signal.SIGSTOP)
        with conn.cursor() as cur:
            cur.execute("SET synchronous_commit = local")
            cur.execute("INSERT INTO audit_events (actor, action, target_type, target_id) "
                        "VALUES ('test_ha', 'ha.divergence', 'test', 'not replicated')")
        kill_postgres(ha, leader)
    finally:
        for p in receivers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGCONT)
        with contextlib.suppress(Exception):
            conn.close()


def disruption(ha: HA, partners: list, what: str, act) -> dict:
    """Runs the load, does act() once writes flow, and returns the figures; asserts the answers
    (5xx = 503 problems only, none hung)."""
    load = Load(ha, partners)
    load.start()
    try:
        wait_for(lambda: load.first_success_after(0), 30)
        time.sleep(1.0)  # a steady state before
        old = ha.leader()
        t_act = time.monotonic()
        act(old)
        t_done = time.monotonic()
        wait_for(lambda: load.first_success_after(t_done), 60)
        time.sleep(2.0)  # and some steady state after
    finally:
        load.finish()
    answers = [(w, a) for w, a in load.attempts() if a[0] >= t_act - 1]

    def failed(a):
        return isinstance(a[2], str) or a[2].status_code >= 500

    # Writes are out from the first failed attempt after the action until the first 2xx of an
    # attempt sent after the last failed one.
    fails = [a[0] for w, a in answers if failed(a) and a[0] >= t_act]
    if fails:
        t_out = min(fails)
        back = min(a[1] for w, a in answers
                   if a[0] > max(fails) and not failed(a) and 200 <= a[2].status_code < 300)
    else:
        t_out = back = t_act
    fivexx = [a[2] for w, a in answers if not isinstance(a[2], str) and a[2].status_code >= 500]
    hung = [a[2] for w, a in answers if isinstance(a[2], str)]
    figures = {
        "what": what,
        "seconds_until_writes_succeed": round(back - t_out, 2),
        "seconds_from_action_to_writes_back": round(back - t_act, 2),
        "requests_after": len(answers),
        "answered_5xx": len(fivexx),
        "answered_5xx_not_503": sum(1 for r in fivexx if r.status_code != 503),
        "hung_or_transport_errors": len(hung),
        "retried_keys": sum(1 for w in load.writes if len(w.attempts) > 1),
        "writes_2xx": sum(1 for w in load.writes
                          if w.final is not None and 200 <= w.final.status_code < 300),
    }
    print(f"\nHA {what}: {json.dumps(figures)} (old leader {old['name']})")
    assert not hung, f"requests hung past {HUNG_S} s or lost their connection: {hung[:10]}"
    for r in fivexx:
        assert r.status_code == 503, (r.status_code, r.text[:300])
        assert_problem(r, 503, "unavailable")
        assert r.headers.get("Retry-After"), dict(r.headers)
    assert all(w.final is not None for w in load.writes), \
        [(w.key, w.attempts[-1:]) for w in load.writes if w.final is None][:5]
    check_writes(ha, load.writes)
    return figures


def check_writes(ha: HA, writes: list[Write]) -> None:
    """Every write answered 2xx is in the primary, once; each key was applied once; no benefit
    has more seats taken than it has."""
    conn = ha.primary()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_is_in_recovery()")
            assert cur.fetchone()[0] is False
            for w in writes:
                st = w.final.status_code
                if w.kind == "purchase":
                    assert st == 201, (st, w.final.text[:300])
                    cur.execute("SELECT id::text FROM purchases WHERE partner_id = %s "
                                "AND package_id = %s", (w.partner, w.target))
                    rows = cur.fetchall()
                    assert rows == [(w.final.json()["id"],)], (w.key, rows)
                    cur.execute("SELECT count(*) FROM audit_events WHERE partner_id = %s "
                                "AND action = 'purchase.created' AND target_id = %s",
                                (w.partner, rows[0][0]))
                    assert cur.fetchone()[0] == 1, w.key
                else:
                    assert st in (201, 409), (st, w.final.text[:300])
                    cur.execute("SELECT count(*) FROM seat_assignments WHERE benefit_id = %s "
                                "AND user_id = %s", (w.benefit, w.target))
                    n = cur.fetchone()[0]
                    if st == 201:
                        assert n == 1, (w.key, n)
                    else:
                        assert_problem(w.final, 409, "no-seats-available")
                        assert n == 0, (w.key, n)
            benefits = {w.benefit for w in writes if w.kind == "seat"}
            for b in benefits:
                cur.execute("SELECT quantity, used, (SELECT count(*) FROM seat_assignments s "
                            "WHERE s.benefit_id = b.id) FROM benefits b WHERE id = %s", (b,))
                quantity, used, taken = cur.fetchone()
                assert used == taken <= quantity == SEATS, (b, quantity, used, taken)
            # A benefit whose five users were all answered has exactly its seats taken.
            for b in benefits:
                answered = [w for w in writes if w.benefit == b]
                if len(answered) == 5:
                    assert sum(w.final.status_code == 201 for w in answered) == SEATS, b
    finally:
        conn.close()


def make_partners(ha: HA, n: int) -> list:
    with database(ha.database_url):
        out = []
        for _ in range(n):
            f = fresh_partner(package=GOLD)
            helpers.db_exec("UPDATE benefits SET quantity = %s WHERE id = %s", SEATS,
                            f.benefits[VS_ENTERPRISE])
            out.append(f)
        return out


# --- the tests ----------------------------------------------------------------------------------


def test_failover_and_switchover_under_write_load_lose_nothing_acknowledged(ha):
    partners = make_partners(ha, PARTNERS)
    third = PARTNERS // 2

    # 1. Unplanned: SIGKILL the leader's PostgreSQL.
    before = ha.wait_healthy()
    old = [m for m in before if m["role"] == "leader"][0]
    tl = old["timeline"]
    figures = disruption(ha, partners[:third], "failover (SIGKILL of the leader's postgres)",
                         lambda leader: diverge_and_kill(ha, leader))
    after = ha.wait_healthy(120)
    new = [m for m in after if m["role"] == "leader"][0]
    assert new["name"] != old["name"], after
    assert new["timeline"] > tl, after
    rejoined = [m for m in after if m["name"] == old["name"]][0]
    assert rejoined["role"] in ("replica", "sync_standby"), after
    with open(os.path.join(ha.dir, f"pg{ha.node(old)}", "patroni.log"),
              errors="replace") as f:
        log = f.read()
    print(f"HA failover: {old['name']} -> {new['name']}, timeline {tl} -> {new['timeline']}, "
          f"{old['name']} rejoined as {rejoined['role']}")
    assert "running pg_rewind from" in log, log[-3000:]
    with contextlib.closing(ha.primary()) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM audit_events WHERE action = 'ha.divergence'")
        assert cur.fetchone()[0] == 0  # the unreplicated commit is gone with the old history
    assert figures["writes_2xx"] > 0

    # 2. Planned: patronictl switchover to the synchronous standby.
    sync = [m for m in after if m["role"] == "sync_standby"][0]

    def switchover(leader):
        subprocess.run(ha.patronictl + ["switchover", "--leader", leader["name"], "--candidate",
                                        sync["name"], "--force"],
                       check=True, stdout=subprocess.DEVNULL, timeout=90)

    disruption(ha, partners[third:], "switchover (patronictl)", switchover)
    final = ha.wait_healthy(120)
    assert [m["name"] for m in final if m["role"] == "leader"] == [sync["name"]], final
    assert len(final) == 3
    assert {m["name"] for m in final} == {"pg1", "pg2", "pg3"}


def test_a_read_only_node_answers_503_and_the_pool_reconnects_without_restart():
    """A connection to a node that turned read-only under it (a demoted primary: SQLSTATE
    25006) is a lost connection: 503 unavailable + Retry-After, not 500; once a primary is back
    the same service writes again, without a restart. Shown on the suite's own PostgreSQL with
    default_transaction_read_only, which is what libpq's target_session_attrs=read-write checks
    too."""
    f = fresh_partner(package=ACTION_PACK)
    url = helpers.env("DATABASE_URL")
    url += ("&" if "?" in url else "?") + "target_session_attrs=read-write"
    tok = token(f.users["global_admin"], f.partner, ["global_admin"])
    with spawn_server(env_overrides={"DATABASE_URL": url, "DB_POOL_SIZE": "1"}) as s:
        c = s.client(tok, check_contract=False)
        assert c.get(f.path("/purchases")).status_code == 200  # the one connection is warm
        # A session of its own that stays writable whatever the configuration says.
        admin = psycopg2.connect(helpers.env("DATABASE_URL"), connect_timeout=10,
                                 options="-c default_transaction_read_only=off")
        admin.autocommit = True
        cur = admin.cursor()
        cur.execute("ALTER SYSTEM SET default_transaction_read_only = on")
        try:
            cur.execute("SELECT pg_reload_conf()")
            key = {"Idempotency-Key": f"ro-{uuid.uuid4()}"}
            r = wait_for(lambda: (lambda r: r if r.status_code != 201 else None)(
                c.post(f.path("/purchases"), json={"package_id": SILVER}, headers=key)), 10)
            assert_problem(r, 503, "unavailable")
            assert r.headers.get("Retry-After")
        finally:
            cur.execute("ALTER SYSTEM RESET default_transaction_read_only")
            cur.execute("SELECT pg_reload_conf()")
            admin.close()
        r = wait_for(lambda: (lambda r: r if r.status_code == 201 else None)(
            c.post(f.path("/purchases"), json={"package_id": SILVER}, headers=key)), 10)
        assert helpers.db_val("SELECT count(*) FROM purchases WHERE partner_id = %s "
                              "AND package_id = %s", f.partner, SILVER) == 1
