"""Helpers of the API tests (black box: a real service process, a real PostgreSQL).

scripts/test.sh runs the service and puts Prism 5.14.2 in front of it as a validating proxy
(`prism proxy api/openapi.yaml <service> --cors=false`, without --errors), and passes:

  MB_BASE     Prism's URL: use it by default, so that every response is checked against
              api/openapi.yaml. Any RESPONSE violation fails the whole run (test.sh reads
              Prism's log), and `Client` also fails the test at once from the `sl-violations`
              header Prism adds.
  MB_DIRECT   the service itself, for what Prism cannot carry (below).
  DATABASE_URL, JWT_SECRET, JWT_ISSUER, JWT_AUDIENCE, KEY_ENCRYPTION_KEY, CORS_ORIGINS,
  MB_BIN, MB_SERVICE_LOG, MB_LOG_DIR, MB_PGDATA, MB_PGCTL, MB_PGPORT, MB_PGSOCK, MB_PGOPTS,
  MB_PGLOG, MB_PG_USER (database superuser), MB_PG_OSUSER (OS user running the cluster).

What Prism 5.14.2's proxy does (checked by hand against a stub upstream):

  * a path not in the spec: FORWARDS it; logs the warning `Violation: request Selected route
    not found`; the answer is passed back unvalidated.
  * a method not in the spec (e.g. DELETE on a GET-only path): the same, FORWARDS it
    unvalidated ("Selected route not found").
  * a request body that violates the schema (unknown field, too long, missing required field,
    wrong Content-Type, missing required body): FORWARDS it, logs `Violation: request.body…`
    errors, and still validates the answer.
  * a body that is NOT valid JSON with a JSON Content-Type (`{"a":`, trailing commas, single
    quotes, trailing garbage): ANSWERS ITSELF with 400 `application/json`
    `{"error":{"code":"invalid_json","message":"Invalid JSON"}}` and logs nothing; the service
    never sees it. Malformed-JSON tests MUST use MB_DIRECT.
  * valid JSON bodies are parsed and RE-SERIALISED both ways: whitespace goes, duplicate keys
    collapse to the last one, 1.0 becomes 1 (and integers above 2**53 lose precision). Tests
    of duplicate keys, number formats, exact bytes or byte counts MUST use MB_DIRECT; compare
    parsed JSON, not bytes, through MB_BASE.
  * a 2 MB body: FORWARDED in full (JSON or not; no size limit of its own seen), so a 413 test
    works through Prism, provided 413 is documented for that operation.
  * no Authorization header on a secured operation: FORWARDS it; logs the error
    `Violation: request Invalid security scheme used`; the service's 401 is validated.
  * a bad path parameter (`/things/not-a-uuid`): FORWARDS it, logs a request.path violation.
  * an undocumented answer status (e.g. 418, 500): warning `Violation: response Unable to match
    the returned status code with those defined in the document` (error when the request had
    errors too): FAILS the run. Every status a test provokes through MB_BASE must be in the spec.
  * HEAD on an operation whose answer is JSON: Prism tries to parse the empty body and answers
    500 itself (`Request terminated with error: FetchError: invalid json response body`):
    FAILS the run. HEAD tests MUST use MB_DIRECT.
  * CORS: with its default `--cors` Prism answers preflights (OPTIONS + Origin +
    Access-Control-Request-Method) itself with 204 and adds `Access-Control-Allow-Origin` etc.
    to every answer. test.sh passes `--cors=false`, so preflights are forwarded (as an unknown
    route unless OPTIONS is in the spec) and the service's own CORS headers come through.
    Still, CORS tests are clearer against MB_DIRECT.
  * the service down or closing the connection: Prism answers 500 application/problem+json
    `{"type":"FetchError",…}` and logs `Request terminated with error`: FAILS the run. Tests
    that stop the service or PostgreSQL-kill connections should use MB_DIRECT or spawn_server().
  * a chunked request body: not checked against the real service (the stub could not read it);
    prefer MB_DIRECT for Transfer-Encoding tests.
  * request headers (Authorization, Idempotency-Key, If-Match, Origin, …) and query strings are
    forwarded as sent; answer headers (ETag, Location, X-Request-Id, …) come back, plus
    `sl-violations` when Prism found something.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import signal
import socket
import subprocess
import threading
import time
import uuid
from typing import Any, Iterable

import jwt as pyjwt
import psycopg2
import requests

# --- environment ----------------------------------------------------------------------------


def env(name: str, default: str | None = None) -> str:
    v = os.environ.get(name, default)
    if v is None:
        raise RuntimeError(f"{name} is not set: run the API tests through scripts/test.sh")
    return v


BASE = os.environ.get("MB_BASE", "")
DIRECT = os.environ.get("MB_DIRECT", "")
# Issue 18: every answer that comes back through Prism (MB_BASE) is also recorded here, one JSON
# line each, for the strict validator (tests/consumer/validate-traffic.js, run by test.sh).
TRAFFIC_LOG = os.environ.get("MB_TRAFFIC_LOG", "")

# --- demo data (sql/demo/seed.sql) ----------------------------------------------------------

CONTOSO = "11111111-1111-4111-8111-111111111111"  # partner_center
FABRIKAM = "33333333-3333-4333-8333-333333333333"  # still in PMC
GA_ID = "22222222-2222-4222-8222-000000000001"  # global_admin
UA_ID = "22222222-2222-4222-8222-000000000002"  # user_admin
AA_ID = "22222222-2222-4222-8222-000000000003"  # admin_agent
PA_ID = "22222222-2222-4222-8222-000000000004"  # mpn_partner_admin
EMP_ID = "22222222-2222-4222-8222-000000000005"  # employee, no roles
FAB_GA_ID = "44444444-4444-4444-8444-000000000001"  # Fabrikam global_admin
OPERATOR_SUB = "operator-1"

# --- tokens ---------------------------------------------------------------------------------

_HS = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}
_DELETE = object()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64json(obj: Any) -> str:
    return _b64url(json.dumps(obj, separators=(",", ":")).encode())


def token(sub: str | None, partner: str | None = None, roles: Iterable[str] = (), *,
          alg: str = "HS256", key: Any = None, headers: dict | None = None, **overrides) -> str:
    """A JWT as the service expects it: HS256 with JWT_SECRET, iss/aud from the environment,
    iat = nbf = now, exp = now + 600, `tid` only when `partner` is given, `roles` as a list.

    overrides replace claims (`exp=0`, `aud="other"`, `roles="global_admin"`) or delete them
    (value None: `exp=None`). Attack tokens:
      alg="none"                           unsigned (empty signature part)
      alg="HS256", key=b"other"            wrong secret; any bytes or str works, a PEM public
                                           key too (the RS256 -> HS256 confusion attack)
      alg="RS256", key=<PEM private key>   signed by PyJWT
      headers={"kid": "x", "typ": "JWT"}   extra header fields (alg is always set from `alg`)
    """
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": env("JWT_ISSUER"),
        "aud": env("JWT_AUDIENCE"),
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "roles": list(roles),
    }
    if sub is not None:
        claims["sub"] = sub
    if partner is not None:
        claims["tid"] = partner
    for k, v in overrides.items():
        if v is None:
            claims.pop(k, None)
        else:
            claims[k] = v
    header = {"alg": alg, "typ": "JWT"}
    header.update(headers or {})
    header["alg"] = alg
    if alg == "none":
        return f"{_b64json(header)}.{_b64json(claims)}."
    if alg in _HS:
        secret = env("JWT_SECRET") if key is None else key
        if isinstance(secret, str):
            secret = secret.encode()
        signing_input = f"{_b64json(header)}.{_b64json(claims)}"
        sig = hmac.new(secret, signing_input.encode(), _HS[alg]).digest()
        return f"{signing_input}.{_b64url(sig)}"
    extra = {k: v for k, v in header.items() if k not in ("alg",)}
    return pyjwt.encode(claims, key, algorithm=alg, headers=extra)


def operator_token(**kw) -> str:
    return token(OPERATOR_SUB, None, ("operator",), **kw)


# --- HTTP -----------------------------------------------------------------------------------


class ContractViolation(AssertionError):
    pass


class Client:
    """requests.Session bound to a base URL and (optionally) a bearer token.

    `c.get("/v1/me")`, `c.post(path, json=…, headers=…)`… return the requests.Response as is
    (no raise on 4xx/5xx). Through Prism (MB_BASE) a RESPONSE violation that Prism reports in
    its `sl-violations` header raises ContractViolation in the test that caused it
    (check_contract=False turns that off; test.sh still fails the run from Prism's log).
    """

    def __init__(self, base: str | None = None, token: str | None = None, *,
                 headers: dict | None = None, timeout: float = 30, check_contract: bool = True):
        self.base = (base if base is not None else BASE).rstrip("/")
        self.token = token
        self.timeout = timeout
        self.check_contract = check_contract and os.environ.get("MB_CONTRACT_CHECK", "1") != "0"
        self.session = requests.Session()
        self.session.headers.update(headers or {})
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def url(self, path: str) -> str:
        if path.startswith("http://") or path.startswith("https://"):
            return path
        return self.base + (path if path.startswith("/") else "/" + path)

    def request(self, method: str, path: str, **kw) -> requests.Response:
        kw.setdefault("timeout", self.timeout)
        kw.setdefault("allow_redirects", False)
        r = self.session.request(method, self.url(path), **kw)
        if TRAFFIC_LOG and BASE and self.base == BASE.rstrip("/"):
            _record(r, streamed=bool(kw.get("stream")))
        if self.check_contract:
            _check_sl_violations(r)
        return r

    def get(self, path: str, **kw) -> requests.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw) -> requests.Response:
        return self.request("POST", path, **kw)

    def put(self, path: str, **kw) -> requests.Response:
        return self.request("PUT", path, **kw)

    def patch(self, path: str, **kw) -> requests.Response:
        return self.request("PATCH", path, **kw)

    def delete(self, path: str, **kw) -> requests.Response:
        return self.request("DELETE", path, **kw)

    def options(self, path: str, **kw) -> requests.Response:
        return self.request("OPTIONS", path, **kw)

    def head(self, path: str, **kw) -> requests.Response:
        return self.request("HEAD", path, **kw)

    # variants --------------------------------------------------------------------------
    def at(self, base: str) -> "Client":
        """The same caller against another base URL (e.g. `ga.at(DIRECT)`)."""
        return Client(base, self.token, headers=self._extra_headers(), timeout=self.timeout,
                      check_contract=self.check_contract)

    @property
    def direct(self) -> "Client":
        """The same caller straight at the service, bypassing Prism."""
        return self.at(env("MB_DIRECT"))

    def anon(self) -> "Client":
        """The same base URL without Authorization."""
        return Client(self.base, None, headers=self._extra_headers(), timeout=self.timeout,
                      check_contract=self.check_contract)

    def with_token(self, tok: str | None) -> "Client":
        return Client(self.base, tok, headers=self._extra_headers(), timeout=self.timeout,
                      check_contract=self.check_contract)

    def _extra_headers(self) -> dict:
        return {k: v for k, v in self.session.headers.items()
                if k.lower() not in ("authorization", "user-agent", "accept-encoding", "accept",
                                     "connection")}

    def close(self) -> None:
        self.session.close()

    def __repr__(self) -> str:
        return f"Client({self.base!r}, token={'yes' if self.token else 'no'})"


_TRAFFIC_LOCK = threading.Lock()
_RECORD_MAX = 1 << 20  # bodies above 1 MiB are recorded as truncated (and not validated)


def _record(r: requests.Response, streamed: bool) -> None:
    """One line of MB_TRAFFIC_LOG: (method, path, status, headers, body) of an answer that came
    through Prism. A streamed answer (SSE) is recorded without its body: reading it here would
    take it from the test."""
    body, truncated = None, False
    if not streamed:
        raw = r.content
        truncated = len(raw) > _RECORD_MAX
        body = raw[:_RECORD_MAX].decode("utf-8", "replace")
    line = json.dumps({
        "method": r.request.method,
        "path": r.request.path_url.split("?", 1)[0],
        "accept": r.request.headers.get("Accept"),
        "status": r.status_code,
        "headers": {k.lower(): v for k, v in r.headers.items()},
        "body": body,
        "streamed": streamed,
        "truncated": truncated,
    }, separators=(",", ":"))
    with _TRAFFIC_LOCK, open(TRAFFIC_LOG, "a", encoding="utf-8") as f:
        f.write(line + "\n")


def _check_sl_violations(r: requests.Response) -> None:
    raw = r.headers.get("sl-violations")
    if not raw:
        return
    try:
        items = json.loads(raw)
        assert isinstance(items, list) and all(isinstance(v, dict) for v in items)
    except (ValueError, AssertionError):
        # A header we cannot read may hide a response violation: fail, never ignore it.
        raise ContractViolation(f"{r.request.method} {r.request.path_url} -> {r.status_code}: "
                                f"unparsable sl-violations header from Prism: {raw[:500]!r}")
    bad = [v for v in items if (v.get("location") or [""])[0] == "response"]
    if bad:
        lines = "\n".join(f"  {'.'.join(map(str, v.get('location', [])))}: {v.get('message')}"
                          for v in bad)
        raise ContractViolation(
            f"{r.request.method} {r.request.path_url} -> {r.status_code}: the answer breaks "
            f"api/openapi.yaml:\n{lines}\nbody: {r.text[:500]}")


def idem() -> dict:
    """A fresh Idempotency-Key header."""
    return {"Idempotency-Key": str(uuid.uuid4())}


def assert_problem(resp: requests.Response, status: int, code: str | None = None) -> dict:
    """An RFC 9457 answer: the status, application/problem+json, `type`, `title`, `status`
    (equal to the HTTP status), `detail` and, when given, the machine `code`. Returns the body."""
    ctx = f"{resp.request.method} {resp.request.path_url} -> {resp.status_code}: {resp.text[:500]}"
    assert resp.status_code == status, f"expected {status}; {ctx}"
    ctype = resp.headers.get("Content-Type", "")
    assert ctype.split(";")[0].strip().lower() == "application/problem+json", \
        f"Content-Type {ctype!r}; {ctx}"
    body = resp.json()
    for field in ("type", "title", "status", "detail"):
        assert field in body, f"problem without {field!r}; {ctx}"
    assert body["status"] == status, f"problem status {body['status']!r}; {ctx}"
    if code is not None:
        assert body.get("code") == code, f"expected code {code!r}, got {body.get('code')!r}; {ctx}"
    return body


def metric(url: str, name: str) -> float:
    """The value of the first /metrics line of the service at url that starts with name (a
    metric's name, or its name and labels: 'mpn_cache_answers_total{outcome="hit"}')."""
    for line in requests.get(url + "/metrics", timeout=5).text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {name} in /metrics")


def wait_http(url: str, timeout: float = 30, proc: subprocess.Popen | None = None,
              status: int = 200) -> None:
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process exited with {proc.returncode} before {url} answered")
        try:
            last = requests.get(url, timeout=2).status_code
            if last == status:
                return
        except requests.RequestException as e:
            last = type(e).__name__
        time.sleep(0.1)
    raise AssertionError(f"{url} did not answer {status} within {timeout}s (last: {last})")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- database -------------------------------------------------------------------------------

_conn = None


def db_connect():
    """A new autocommit psycopg2 connection to DATABASE_URL."""
    c = psycopg2.connect(env("DATABASE_URL"), connect_timeout=10)
    c.autocommit = True
    return c


def _cursor():
    global _conn
    if _conn is None or _conn.closed:
        _conn = db_connect()
    try:
        cur = _conn.cursor()
        cur.execute("SELECT 1")  # the cluster may have been restarted since
        return cur
    except psycopg2.Error:
        with contextlib.suppress(Exception):
            _conn.close()
        _conn = db_connect()
        return _conn.cursor()


def db_exec(sql: str, *args) -> int:
    """Run a statement (autocommit); returns the row count."""
    with _cursor() as cur:
        cur.execute(sql, args or None)
        return cur.rowcount


def db_all(sql: str, *args) -> list[tuple]:
    with _cursor() as cur:
        cur.execute(sql, args or None)
        return cur.fetchall() if cur.description else []


def db_one(sql: str, *args) -> tuple | None:
    """The first row (a tuple) or None. `db_one("SELECT status FROM purchases WHERE id = %s", pid)`"""
    with _cursor() as cur:
        cur.execute(sql, args or None)
        return cur.fetchone() if cur.description else None


def db_val(sql: str, *args) -> Any:
    """The first column of the first row, or None."""
    row = db_one(sql, *args)
    return row[0] if row else None


# --- the test PostgreSQL cluster ------------------------------------------------------------


def _as_pg_user(cmd: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", env("MB_PG_OSUSER", "postgres"), "--"] + cmd
    return cmd


def pg_stop() -> None:
    """Stop the test cluster (fast mode: open connections are cut)."""
    global _conn
    if _conn is not None:
        with contextlib.suppress(Exception):
            _conn.close()
        _conn = None
    subprocess.run(_as_pg_user([env("MB_PGCTL"), "-D", env("MB_PGDATA"), "-m", "fast", "-w",
                                "-t", "60", "stop"]), check=True, stdout=subprocess.DEVNULL,
                   cwd="/")


def pg_start() -> None:
    """Start the test cluster again with test.sh's options; returns when it accepts connections."""
    cmd = [env("MB_PGCTL"), "-D", env("MB_PGDATA"), "-w", "-t", "60", "-o", env("MB_PGOPTS")]
    if os.environ.get("MB_PGLOG"):
        cmd += ["-l", os.environ["MB_PGLOG"]]
    # A session of its own (like setsid in test.sh): a Ctrl-C must not reach the postmaster.
    subprocess.run(_as_pg_user(cmd + ["start"]), check=True, stdout=subprocess.DEVNULL,
                   start_new_session=True, cwd="/")


@contextlib.contextmanager
def pg_down():
    """`with pg_down(): …` — PostgreSQL is stopped inside the block and started again after it,
    whatever happens."""
    pg_stop()
    try:
        yield
    finally:
        pg_start()


# --- more service instances -----------------------------------------------------------------

SANITIZER_MARKS = ("ERROR: AddressSanitizer", "runtime error:", "ERROR: LeakSanitizer")


class Server:
    """Another `mpn-benefits serve` process (see spawn_server)."""

    def __init__(self, proc: subprocess.Popen, port: int, log_path: str):
        self.proc, self.port, self.log_path = proc, port, log_path
        self.url = f"http://127.0.0.1:{port}"

    def client(self, token: str | None = None, **kw) -> Client:
        return Client(self.url, token, **kw)

    def log(self) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def stop(self, timeout: float = 30, expect_rc: int | None = 0) -> int:
        """SIGTERM, wait, assert the exit status (default 0) and a log free of sanitizer reports."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"server on port {self.port} ignored SIGTERM for {timeout}s")
        rc = self.proc.returncode
        text = self.log()
        hits = [m for m in SANITIZER_MARKS if m in text]
        assert not hits, f"sanitizer report in {self.log_path}:\n{text[-4000:]}"
        if expect_rc is not None:
            assert rc == expect_rc, f"server on port {self.port} exited {rc}; log tail:\n{text[-2000:]}"
        return rc

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, exc_type, *_):
        if exc_type is None:
            self.stop()
        else:
            with contextlib.suppress(Exception):
                self.stop(expect_rc=None)


_spawned: list[Server] = []


def spawn_server(port: int | None = None, env_overrides: dict | None = None,
                 wait: bool = True, timeout: float = 30) -> Server:
    """Start another instance of MB_BIN serve with the test environment (same database, same
    JWT settings, same sanitizer options), on `port` (default: a free one). Waits for /healthz
    200 unless wait=False. Its log goes to MB_LOG_DIR/service-<port>.log (test.sh scans it for
    sanitizer reports too). Stop it with .stop() (asserts exit 0), or use it as a context
    manager: `with spawn_server() as s: s.client(tok).get(...)`. Values None in env_overrides
    remove the variable."""
    port = port or free_port()
    e = dict(os.environ)
    e["PORT"] = str(port)
    # as the service's own database role (scripts/test.sh), like the main service
    e["DATABASE_URL"] = os.environ.get("MB_SERVICE_DATABASE_URL", e.get("DATABASE_URL", ""))
    for k, v in (env_overrides or {}).items():
        if v is None:
            e.pop(k, None)
        else:
            e[k] = str(v)
    log_dir = os.environ.get("MB_LOG_DIR") or os.path.dirname(env("MB_SERVICE_LOG"))
    log_path = os.path.join(log_dir, f"service-{port}.log")
    logf = open(log_path, "ab")
    proc = subprocess.Popen([env("MB_BIN"), "serve"], env=e, stdin=subprocess.DEVNULL,
                            stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
    logf.close()
    server = Server(proc, port, log_path)
    _spawned.append(server)
    if wait:
        try:
            wait_http(server.url + "/healthz", timeout, proc)
        except AssertionError:
            server.kill()
            raise AssertionError(f"spawned server did not come up; log:\n{server.log()[-3000:]}")
    return server


def kill_spawned() -> list[str]:
    """Safety net for the end of the session: stop servers a test forgot to stop with SIGTERM
    (so that LeakSanitizer runs and writes its report to the log test.sh scans), SIGKILL only
    those that ignore it. Returns what went wrong (exit status, SIGKILL), one line each."""
    problems = []
    for s in _spawned:
        if s.proc.poll() is not None:
            continue
        s.proc.send_signal(signal.SIGTERM)
        try:
            rc = s.proc.wait(30)
        except subprocess.TimeoutExpired:
            s.kill()
            problems.append(f"server on port {s.port} ignored SIGTERM: killed ({s.log_path})")
            continue
        if rc != 0:
            problems.append(f"server on port {s.port} exited {rc} on SIGTERM ({s.log_path})")
    _spawned.clear()
    return problems


# --- a partner's rows, to compare before and after a request (issue 20) ---------------------

PARTNER_SNAPSHOT = {
    "partner": "SELECT to_jsonb(p) FROM partners p WHERE id = %(p)s",
    "competencies": "SELECT to_jsonb(c) FROM partner_competencies c WHERE partner_id = %(p)s "
                    "ORDER BY area",
    "users": "SELECT to_jsonb(u) FROM users u WHERE partner_id = %(p)s ORDER BY id",
    "purchases": "SELECT to_jsonb(x) FROM purchases x WHERE partner_id = %(p)s ORDER BY id",
    "benefits": "SELECT to_jsonb(b) FROM benefits b WHERE partner_id = %(p)s ORDER BY id",
    "seat_assignments": "SELECT to_jsonb(s) FROM seat_assignments s WHERE benefit_id IN "
                        "(SELECT id FROM benefits WHERE partner_id = %(p)s) OR user_id IN "
                        "(SELECT id FROM users WHERE partner_id = %(p)s) "
                        "ORDER BY benefit_id, user_id",
    "activations": "SELECT to_jsonb(a) FROM activations a WHERE partner_id = %(p)s OR benefit_id "
                   "IN (SELECT id FROM benefits WHERE partner_id = %(p)s) ORDER BY id",
    "marketing_contacts": "SELECT to_jsonb(m) FROM marketing_contacts m "
                          "WHERE partner_id = %(p)s",
    "support_requests": "SELECT to_jsonb(s) FROM support_requests s WHERE partner_id = %(p)s "
                        "OR benefit_id IN (SELECT id FROM benefits WHERE partner_id = %(p)s) "
                        "ORDER BY id",
    "license_keys": "SELECT to_jsonb(k) FROM license_keys k WHERE benefit_id IN "
                    "(SELECT id FROM benefits WHERE partner_id = %(p)s) ORDER BY id",
    "key_reveals": "SELECT to_jsonb(k) FROM key_reveals k WHERE benefit_id IN "
                   "(SELECT id FROM benefits WHERE partner_id = %(p)s) ORDER BY id",
    "cancellation_requests": "SELECT to_jsonb(x) FROM cancellation_requests x "
                             "WHERE partner_id = %(p)s ORDER BY id",  # issue 13
    "audit_events": "SELECT jsonb_build_array(count(*), max(id)) FROM audit_events "
                    "WHERE partner_id = %(p)s",
    "idempotency_keys": "SELECT jsonb_build_array(count(*)) FROM idempotency_keys "
                        "WHERE scope LIKE %(p)s || ':%%'",
}


def partner_snapshot(partner: str) -> dict:
    """Every row of `partner` in every table that holds partner data (a dict of lists of
    JSON rows): equal snapshots before and after a request mean it wrote nothing there.
    One round trip: each table's rows as one JSON array (in the query's order)."""
    sqls = [sql.replace("%(p)s", "%s") for sql in PARTNER_SNAPSHOT.values()]
    parts = ", ".join(f"(SELECT COALESCE(jsonb_agg(x.r), '[]') FROM ({q}) AS x(r))" for q in sqls)
    row = db_one(f"SELECT {parts}", *([partner] * sum(q.count("%s") for q in sqls)))
    return dict(zip(PARTNER_SNAPSHOT, row))


def snapshot_diff(before: dict, after: dict) -> list[str]:
    """The tables whose rows differ between two snapshots."""
    return [k for k in before if before[k] != after.get(k)]
