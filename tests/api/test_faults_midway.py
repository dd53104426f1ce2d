"""A statement that fails in the middle of a write (after the route's first statements ran and
their results were freed): every state-changing operation that writes an event answers a 5xx
problem, writes nothing (the partner's rows are as before), and the process lives on.

The failure is planted as a trigger that raises on the insert of the operation's event (the
outbox row, written late in each route's transaction), for this module's partner only. Under
the ASan build this is the path where a result freed early and freed again on the error path
aborts the process (assignment_create did, seen once in the HA test's failovers)."""
from __future__ import annotations

import pytest

import test_role_matrix as rm
from helpers import assert_problem, db_exec, partner_snapshot
from role_matrix import ROWS, Row
from test_events_outbox import EVENT_OF, _caller, _events, _last

world = rm.world  # a fresh partner of this module's own

WRITERS = [r for r in ROWS if r.id in EVENT_OF]


@pytest.fixture
def planted(world):
    db_exec("CREATE OR REPLACE FUNCTION test_fail_midway() RETURNS trigger LANGUAGE plpgsql AS "
            "$$BEGIN RAISE EXCEPTION 'planted failure mid-transaction'; END$$")
    db_exec(f"CREATE TRIGGER test_fail_midway BEFORE INSERT ON events FOR EACH ROW "
            f"WHEN (NEW.partner_id = '{world.partner}'::uuid) EXECUTE FUNCTION test_fail_midway()")
    try:
        yield
    finally:
        db_exec("DROP TRIGGER IF EXISTS test_fail_midway ON events")
        db_exec("DROP FUNCTION IF EXISTS test_fail_midway()")


def test_writers_are_the_event_table():
    assert len(WRITERS) == len(EVENT_OF) >= 19


@pytest.mark.parametrize("row", WRITERS, ids=[r.id for r in WRITERS])
def test_a_failure_mid_write_answers_5xx_writes_nothing_and_the_process_lives(world, planted,
                                                                              row: Row):
    who = _caller(row)
    req = rm.RECIPES[row.id](world, who)
    client = world.clients[who].direct  # Prism would add its own view of a 500
    before_state = partner_snapshot(world.partner)
    before = _last(world.partner)
    r = rm._send(client, row.method, req)
    assert r.status_code in (500, 503), f"{row.id}: {r.status_code} {r.text[:300]}"
    assert_problem(r, r.status_code)
    assert _events(world.partner, before) == []
    assert partner_snapshot(world.partner) == before_state, f"{row.id} half-wrote"
    # the process is alive and serves the next request
    assert client.get(f"/v1/partners/{world.partner}").status_code == 200
    client.close()
