"""Round trips to PostgreSQL per write. The statements whose answer a route does not wait for
(the audit row, the outbox event, the idempotency record: `mb_db_defer`) are sent with the
transaction's next statement or with its COMMIT, in one round trip (libpq's pipeline mode), and
the access log counts each request's round trips (`db_trips`). The seat routes also send their
checks together: the partner gate, the benefit locked, the pending cancellation and the user
(`mb_gate_benefit`), and the seat with its document. Before, a seat assignment took 9 round
trips and its removal 6. That nothing is half-written when a deferred statement fails is
tests/api/test_faults_midway.py (the planted failure is on the event's insert, now deferred)."""
import re
import uuid

from helpers import db_val, spawn_server
from test_seats import TECH_INCIDENTS, VS_ENTERPRISE, Tenant


def _trips(log: str, rid: str) -> int:
    lines = [ln for ln in log.splitlines() if f"request_id={rid} " in ln]
    assert len(lines) == 1, lines
    m = re.search(r" db_trips=(\d+) ", lines[0])
    assert m, lines[0]
    return int(m.group(1))


def test_a_seat_assignment_and_its_removal_take_fewer_round_trips():
    t = Tenant()
    b = t.benefit(VS_ENTERPRISE, 3)
    path = f"/v1/partners/{t.id}/benefits/{b}/assignments"
    tag = uuid.uuid4().hex[:8]
    with spawn_server() as srv:
        ga = srv.client(t.token(0))
        r = ga.post(path, json={"user_id": t.users[4]}, headers={"X-Request-Id": f"rt-a-{tag}"})
        assert r.status_code == 201, r.text
        r = ga.delete(f"{path}/{t.users[4]}", headers={"X-Request-Id": f"rt-r-{tag}"})
        assert r.status_code == 204, r.text
        r = ga.post(path, json={"user_id": t.users[5]},
                    headers={"X-Request-Id": f"rt-i-{tag}", "Idempotency-Key": f"rt-{tag}"})
        assert r.status_code == 201, r.text
        # a refused write rolls back: the rollback is a round trip, nothing is deferred
        r = ga.post(path, json={"user_id": t.users[5]}, headers={"X-Request-Id": f"rt-c-{tag}"})
        assert r.status_code == 409, r.text
    log = srv.log()
    # BEGIN, the partner gate, the benefit locked, the pending cancellation, the user; the
    # INSERT and the answer's document; the audit row, the event and the COMMIT
    assert _trips(log, f"rt-a-{tag}") == 3
    # BEGIN, the gate, the benefit locked; the DELETE; the audit row, the event, the COMMIT
    assert _trips(log, f"rt-r-{tag}") == 3
    # the key claimed first (its expired form deleted on the way); its record goes with the COMMIT
    assert _trips(log, f"rt-i-{tag}") == 4
    assert _trips(log, f"rt-c-{tag}") == 3  # the checks, the refused INSERT, the ROLLBACK
    # what was deferred was written, once, in the request's transaction
    for rid, n in ((f"rt-a-{tag}", 1), (f"rt-r-{tag}", 1), (f"rt-i-{tag}", 1), (f"rt-c-{tag}", 0)):
        assert db_val("SELECT count(*) FROM audit_events WHERE request_id = %s", rid) == n, rid
        assert db_val("SELECT count(*) FROM events WHERE request_id = %s", rid) == n, rid
    assert db_val("SELECT status FROM idempotency_keys WHERE key = %s", f"rt-{tag}") == 201


def test_a_key_reveal_takes_three_round_trips_and_the_first_six(op):
    from test_keys import pool
    pid, loaded = pool(op, 4)
    t = Tenant()
    b = t.benefit(pid, 2)
    tag = uuid.uuid4().hex[:8]
    body = {"language": "en-US", "os": "x64"}
    with spawn_server() as srv:
        ga = srv.client(t.token(0))
        first = ga.post(t.path(b, "/keys"), json=body, headers={"X-Request-Id": f"rt-k1-{tag}"})
        assert first.status_code == 200, first.text
        again = ga.post(t.path(b, "/keys"), json=body, headers={"X-Request-Id": f"rt-k2-{tag}"})
        assert again.status_code == 200, again.text
        assert again.json()["keys"] == first.json()["keys"] == loaded[:2]
    log = srv.log()
    # BEGIN, the gate, the benefit locked, the pending cancellation, the catalog, any keys yet;
    # the reveal's row, audit row and event with the answer's read; the COMMIT. Was 10.
    assert _trips(log, f"rt-k2-{tag}") == 3
    # and the first one takes its keys: the product locked, the keys, the benefit. Was 13.
    assert _trips(log, f"rt-k1-{tag}") == 6
    for rid in (f"rt-k1-{tag}", f"rt-k2-{tag}"):
        assert db_val("SELECT count(*) FROM audit_events WHERE request_id = %s", rid) == 1
        assert db_val("SELECT count(*) FROM events WHERE request_id = %s", rid) == 1
    assert db_val("SELECT count(*) FROM key_reveals WHERE benefit_id = %s", b) == 2


def test_an_activation_request_takes_four_round_trips():
    t = Tenant()
    b = t.benefit(TECH_INCIDENTS, 10)
    tag = uuid.uuid4().hex[:8]
    with spawn_server() as srv:
        ga = srv.client(t.token(0))
        r = ga.post(t.path(b, "/activation"), headers={"X-Request-Id": f"rt-act-{tag}"})
        assert r.status_code == 202, r.text
        assert r.headers["Location"].endswith(r.json()["id"])
    # BEGIN, the gate, the benefit locked, the pending cancellation, the live activation; the
    # activation; the benefit's status, the audit row and the event with the answer's read; the
    # COMMIT. Was 11 (the gate was read twice).
    assert _trips(srv.log(), f"rt-act-{tag}") == 4
    assert db_val("SELECT status FROM benefits WHERE id = %s", b) == "pending"
    assert db_val("SELECT count(*) FROM events WHERE request_id = %s", f"rt-act-{tag}") == 1
