"""Fixtures of the API tests. Run them through scripts/test.sh, which starts PostgreSQL, the
service and Prism and exports the environment described in helpers.py.

Fixtures:
  base, direct          Prism's URL (validating proxy) and the service's own URL
  anon                  Client without a token, through Prism
  ga, ua, aa, pa, emp   Clients (through Prism) of the Contoso demo users: global_admin,
                        user_admin, admin_agent, mpn_partner_admin, employee without roles
  fab_ga                Fabrikam's (PMC) global_admin
  op                    an operator (no partner)
  db                    a psycopg2 connection to the test database (autocommit)
Every Client has `.direct` (same token, bypassing Prism), `.anon()`, `.with_token(t)`.
Tokens are minted per test (they live 10 minutes).
"""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import helpers  # noqa: E402
from helpers import (  # noqa: E402
    AA_ID, CONTOSO, EMP_ID, FAB_GA_ID, FABRIKAM, GA_ID, OPERATOR_SUB, PA_ID, UA_ID, Client,
    token)

REQUIRED = ("MB_BASE", "MB_DIRECT", "DATABASE_URL", "JWT_SECRET", "JWT_ISSUER", "JWT_AUDIENCE")


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "seed(*ids): the test proves these sentences of the seed page "
        "(tests/seed_sentences.tsv; README table: scripts/seed_table.py)")
    missing = [v for v in REQUIRED if not os.environ.get(v)]
    if missing:
        pytest.exit(f"{', '.join(missing)} not set: run the API tests with scripts/test.sh "
                    f"(e.g. scripts/test.sh -k smoke)", returncode=4)


def pytest_sessionfinish(session, exitstatus):
    problems = helpers.kill_spawned()
    if problems:
        print("\nspawned servers left running at the end:\n  " + "\n  ".join(problems),
              file=sys.stderr)
        session.exitstatus = 1


@pytest.fixture(scope="session")
def base():
    return os.environ["MB_BASE"].rstrip("/")


@pytest.fixture(scope="session")
def direct():
    return os.environ["MB_DIRECT"].rstrip("/")


def _client(base, tok):
    c = Client(base, tok)
    yield c
    c.close()


@pytest.fixture
def anon(base):
    yield from _client(base, None)


@pytest.fixture
def ga(base):
    yield from _client(base, token(GA_ID, CONTOSO, ["global_admin"]))


@pytest.fixture
def ua(base):
    yield from _client(base, token(UA_ID, CONTOSO, ["user_admin"]))


@pytest.fixture
def aa(base):
    yield from _client(base, token(AA_ID, CONTOSO, ["admin_agent"]))


@pytest.fixture
def pa(base):
    yield from _client(base, token(PA_ID, CONTOSO, ["mpn_partner_admin"]))


@pytest.fixture
def emp(base):
    yield from _client(base, token(EMP_ID, CONTOSO, []))


@pytest.fixture
def fab_ga(base):
    yield from _client(base, token(FAB_GA_ID, FABRIKAM, ["global_admin"]))


@pytest.fixture
def op(base):
    yield from _client(base, token(OPERATOR_SUB, None, ["operator"]))


@pytest.fixture
def db():
    conn = helpers.db_connect()
    yield conn
    conn.close()
