"""Issue 16, production-safe defaults: the service refuses public or short secrets unless
MPN_DEMO=1, and runs as a database role that can touch rows but not definitions, the audit trail's
history, nor the server's secrets."""
import os

import psycopg2
import psycopg2.errors
import pytest

from helpers import db_val, spawn_server

STRONG = "s3cret-for-the-tests-only-0123456789-abcdef"


def refused(env: dict) -> str:
    srv = spawn_server(env_overrides=env, wait=False)
    try:
        rc = srv.proc.wait(30)
    except Exception:
        srv.kill()
        raise
    log = srv.log()
    assert rc == 2, f"exit {rc}; log:\n{log[-2000:]}"
    return log


def test_the_development_jwt_secret_is_refused_without_mpn_demo():
    log = refused({"MPN_DEMO": None, "KEY_ENCRYPTION_KEY": STRONG})
    assert "JWT_SECRET is a development value" in log, log
    assert os.environ["JWT_SECRET"] not in log  # the secret itself is never printed


def test_the_development_key_encryption_key_is_refused_without_mpn_demo():
    log = refused({"MPN_DEMO": None, "JWT_SECRET": STRONG})
    assert "KEY_ENCRYPTION_KEY is a development value" in log, log


def test_a_secret_under_32_bytes_is_refused_without_mpn_demo():
    log = refused({"MPN_DEMO": None, "JWT_SECRET": STRONG, "KEY_ENCRYPTION_KEY": "x" * 31})
    assert "KEY_ENCRYPTION_KEY is shorter than 32 bytes" in log, log


def test_strong_secrets_start_without_mpn_demo():
    with spawn_server(env_overrides={"MPN_DEMO": None, "JWT_SECRET": STRONG,
                                     "KEY_ENCRYPTION_KEY": STRONG}) as srv:
        assert srv.client().get("/readyz").status_code == 200


@pytest.fixture
def as_service():
    url = os.environ.get("MB_SERVICE_DATABASE_URL")
    assert url, "scripts/test.sh exports MB_SERVICE_DATABASE_URL"
    c = psycopg2.connect(url, connect_timeout=10)
    c.autocommit = True
    yield c.cursor()
    c.close()


def test_the_service_runs_as_its_own_role(ga):
    assert ga.get("/v1/me").status_code == 200  # the pool has connected
    users = db_val("SELECT array_agg(DISTINCT usename::text) FROM pg_stat_activity "
                   "WHERE application_name = 'mpn-benefits' AND datname = current_database()")
    assert users == ["mpn_service"], users


@pytest.mark.parametrize("sql", [
    "CREATE TABLE mb_probe (x int)",
    "SELECT * FROM pg_authid",
    "UPDATE audit_events SET action = action",
    "DELETE FROM audit_events",
    "DROP TABLE benefits",
    "INSERT INTO schema_migrations (version) VALUES ('999_probe.sql')",
])
def test_the_service_role_cannot(as_service, sql):
    with pytest.raises(psycopg2.errors.InsufficientPrivilege):
        as_service.execute(sql)


def test_the_service_role_reads_and_writes_rows_and_logs_no_bind_values(as_service):
    as_service.execute("SELECT count(*) FROM benefits")
    assert as_service.fetchone()[0] > 0
    as_service.execute("UPDATE partners SET name = name WHERE false")
    as_service.execute("SHOW log_parameter_max_length")
    assert as_service.fetchone()[0] == "0"


def test_readyz_pings_the_database_at_most_once_a_second():
    """/readyz answers from a check at most 1 s old: a flood of probes makes one ping a
    second, not one each (and takes no pool connection per probe)."""
    import threading
    import time

    import requests

    def checks(srv):
        for line in requests.get(srv.url + "/metrics", timeout=5).text.splitlines():
            if line.startswith("mpn_readyz_checks_total "):
                return int(line.split()[1])
        raise AssertionError("no mpn_readyz_checks_total")

    with spawn_server(env_overrides={"DB_POOL_SIZE": 1}) as srv:
        before = checks(srv)
        statuses = []

        def probe():
            s = requests.Session()
            for _ in range(50):
                statuses.append(s.get(srv.url + "/readyz", timeout=5).status_code)

        t0 = time.monotonic()
        threads = [threading.Thread(target=probe) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - t0
        made = checks(srv) - before
        print(f"\n{len(statuses)} /readyz in {elapsed:.2f}s: {made} database pings")
        assert statuses.count(200) == 400, set(statuses)
        assert 1 <= made <= int(elapsed) + 2, (made, elapsed)
