"""Idempotent POSTs: the same Idempotency-Key with the same body answers the first answer
without doing the work twice, also when the requests arrive at the same moment; with another
body it is refused. One mechanism for every state-changing POST (run_tx in src/http/server.c)."""
import contextlib
import threading
import time
import uuid

from helpers import BASE, Client, assert_problem, db_connect, db_exec, db_val, token
from test_accounts import fresh_partner, onboarding_body, user_body, users_url

ACTION_PACK = "bbbbbbbb-0000-4000-8000-000000000001"
SILVER = "bbbbbbbb-0000-4000-8000-000000000002"


def key() -> str:
    return f"test-{uuid.uuid4()}"


def purchases(pid: str) -> str:
    return f"/v1/partners/{pid}/purchases"


def count_purchases(pid: str) -> int:
    return db_val("SELECT count(*) FROM purchases WHERE partner_id = %s", pid)


def test_same_key_twice_returns_the_first_answer_and_buys_once():
    p = fresh_partner()
    c, k = p.client("aa"), key()
    first = c.post(purchases(p.id), json={"package_id": ACTION_PACK},
                   headers={"Idempotency-Key": k})
    assert first.status_code == 201, first.text
    again = c.post(purchases(p.id), json={"package_id": ACTION_PACK},
                   headers={"Idempotency-Key": k})
    assert again.status_code == 201, again.text
    assert again.json() == first.json()
    assert again.headers["Location"] == first.headers["Location"]
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert count_purchases(p.id) == 1
    assert db_val("SELECT count(*) FROM benefits WHERE partner_id = %s", p.id) == 5
    assert db_val("SELECT count(*) FROM audit_events WHERE partner_id = %s AND "
                  "action = 'purchase.created'", p.id) == 1
    # byte for byte, straight from the service (the body hash covers the exact bytes sent,
    # and Prism re-serialises JSON: so a new key here)
    k2, raw_body = key(), ('{"package_id": "%s"}' % SILVER).encode()
    hdrs = {"Idempotency-Key": k2, "Content-Type": "application/json"}
    one = c.direct.post(purchases(p.id), data=raw_body, headers=hdrs)
    two = c.direct.post(purchases(p.id), data=raw_body, headers=hdrs)
    assert one.status_code == two.status_code == 201, one.text
    assert one.content == two.content and one.headers["Location"] == two.headers["Location"]
    assert count_purchases(p.id) == 2
    # without the key the retry is a new request: the package is already held
    assert_problem(c.post(purchases(p.id), json={"package_id": ACTION_PACK}), 409,
                   "already-purchased")


def lock_waiters() -> int:
    return db_val("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                  "AND application_name = 'mpn-benefits' AND datname = current_database()")


def wait_for(cond, timeout: float = 8) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return False


@contextlib.contextmanager
def partner_locked(pid: str):
    """Holds the partner row locked: a purchase then waits at its INSERT (the foreign key
    check), inside its transaction and after it has claimed its Idempotency-Key."""
    conn = db_connect()
    conn.autocommit = False
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM partners WHERE id = %s FOR UPDATE", (pid,))
        yield
        conn.commit()
    finally:
        conn.close()


def test_two_requests_with_one_key_at_the_same_moment_buy_once():
    """The second request arrives while the first is still in its transaction: it waits on the
    first one's claim of the key, then answers the first one's answer."""
    p = fresh_partner()
    c1, c2, k = p.client("ga"), p.client("ga"), key()  # one caller, two connections
    answers = {}

    def send(name, c):
        answers[name] = c.post(purchases(p.id), json={"package_id": SILVER},
                               headers={"Idempotency-Key": k})

    t1 = threading.Thread(target=send, args=("first", c1))
    t2 = threading.Thread(target=send, args=("second", c2))
    with partner_locked(p.id):
        t1.start()
        assert wait_for(lambda: lock_waiters() >= 1)
        t2.start()
        assert wait_for(lambda: lock_waiters() >= 2)  # the second waits on the key's claim
    t1.join(30)
    t2.join(30)
    first, second = answers["first"], answers["second"]
    assert first.status_code == second.status_code == 201, (first.text, second.text)
    assert first.json() == second.json()
    assert second.headers.get("Idempotent-Replayed") == "true"
    assert count_purchases(p.id) == 1


def test_ten_concurrent_requests_with_one_key_buy_once():
    p = fresh_partner()
    k = key()
    tok = token(p.users["pa"], p.id, ["mpn_partner_admin"])
    barrier = threading.Barrier(10)
    answers = [None] * 10

    def send(i):
        c = Client(BASE, tok)
        barrier.wait()
        r = c.post(purchases(p.id), json={"package_id": SILVER}, headers={"Idempotency-Key": k})
        answers[i] = (r.status_code, r.json(), r.headers.get("Location"))
        c.close()

    threads = [threading.Thread(target=send, args=(i,)) for i in range(10)]
    # the partner lock keeps the first request open until others have joined it
    with partner_locked(p.id):
        for t in threads:
            t.start()
        assert wait_for(lambda: lock_waiters() >= 2, timeout=15), "the requests never waited"
    for t in threads:
        t.join(60)
    assert all(a is not None for a in answers)
    assert {a[0] for a in answers} == {201}, answers
    assert all(a == answers[0] for a in answers)
    assert count_purchases(p.id) == 1
    assert answers[0][1]["id"] == db_val("SELECT id::text FROM purchases WHERE partner_id = %s",
                                         p.id)


def test_same_key_with_a_different_body_is_422_idempotency_key_reused():
    p = fresh_partner()
    c, k = p.client("ga"), key()
    assert c.post(purchases(p.id), json={"package_id": ACTION_PACK},
                  headers={"Idempotency-Key": k}).status_code == 201
    problem = assert_problem(c.post(purchases(p.id), json={"package_id": SILVER},
                                    headers={"Idempotency-Key": k}), 422,
                             "idempotency-key-reused")
    assert "different" in problem["detail"]
    assert count_purchases(p.id) == 1
    assert db_val("SELECT count(*) FROM purchases WHERE partner_id = %s AND package_id = %s",
                  p.id, SILVER) == 0
    # the same key on another endpoint is another request too
    assert_problem(c.post(users_url(p.id), json=user_body(), headers={"Idempotency-Key": k}),
                   422, "idempotency-key-reused")


def test_a_retry_with_the_same_json_written_differently_replays():
    """A client library or proxy may re-serialise the body (spacing, key order): still a retry."""
    p = fresh_partner()
    c, k = p.client("ga"), key()
    d = c.direct
    first = d.post(purchases(p.id), data='{"package_id":"%s"}' % ACTION_PACK,
                   headers={"Idempotency-Key": k, "Content-Type": "application/json"})
    assert first.status_code == 201, first.text
    again = d.post(purchases(p.id), data='{ "package_id" :  "%s" }\n' % ACTION_PACK,
                   headers={"Idempotency-Key": k, "Content-Type": "application/json"})
    assert again.status_code == 201 and again.json() == first.json()
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert count_purchases(p.id) == 1


def test_keys_are_per_partner():
    a, b = fresh_partner(), fresh_partner()
    k = key()
    for p in (a, b):
        r = p.client("ga").post(purchases(p.id), json={"package_id": ACTION_PACK},
                                headers={"Idempotency-Key": k})
        assert r.status_code == 201, r.text
        assert count_purchases(p.id) == 1


def test_a_failed_request_is_not_remembered():
    p = fresh_partner()
    c, k = p.client("ga"), key()
    bad = {"package_id": "00000000-0000-4000-8000-000000000000"}
    assert_problem(c.post(purchases(p.id), json=bad, headers={"Idempotency-Key": k}), 422,
                   "validation-failed")
    assert db_val("SELECT count(*) FROM idempotency_keys WHERE key = %s", k) == 0
    # the client fixes the body and retries with the same key: it is done
    r = c.post(purchases(p.id), json={"package_id": ACTION_PACK}, headers={"Idempotency-Key": k})
    assert r.status_code == 201, r.text


def test_keys_are_kept_24_hours():
    p = fresh_partner()
    c, k = p.client("ga"), key()
    first = c.post(purchases(p.id), json={"package_id": ACTION_PACK},
                   headers={"Idempotency-Key": k})
    assert first.status_code == 201
    db_exec("UPDATE idempotency_keys SET created_at = now() - interval '23 hours' "
            "WHERE scope LIKE %s AND key = %s", p.id + ":%", k)
    again = c.post(purchases(p.id), json={"package_id": ACTION_PACK},
                   headers={"Idempotency-Key": k})
    assert again.status_code == 201 and again.json() == first.json()
    # past 24 hours the key is forgotten: the request runs again (and the package is held)
    db_exec("UPDATE idempotency_keys SET created_at = now() - interval '25 hours' "
            "WHERE scope LIKE %s AND key = %s", p.id + ":%", k)
    assert_problem(c.post(purchases(p.id), json={"package_id": ACTION_PACK},
                          headers={"Idempotency-Key": k}), 409, "already-purchased")
    assert count_purchases(p.id) == 1


def test_onboarding_and_adding_a_user_are_idempotent_too(op):
    k = key()
    body = onboarding_body()
    first = op.post("/v1/admin/partners", json=body, headers={"Idempotency-Key": k})
    assert first.status_code == 201, first.text
    again = op.post("/v1/admin/partners", json=body, headers={"Idempotency-Key": k})
    assert again.status_code == 201 and again.json() == first.json()
    assert db_val("SELECT count(*) FROM partners WHERE mpn_id = %s", body["mpn_id"]) == 1
    p = fresh_partner()
    ub, k2 = user_body(), key()
    r1 = p.client("ua").post(users_url(p.id), json=ub, headers={"Idempotency-Key": k2})
    r2 = p.client("ua").post(users_url(p.id), json=ub, headers={"Idempotency-Key": k2})
    assert r1.status_code == r2.status_code == 201 and r1.json() == r2.json()
    assert db_val("SELECT count(*) FROM users WHERE email = %s", ub["email"]) == 1


def test_a_bad_idempotency_key_is_422():
    p = fresh_partner()
    c = p.client("ga").direct
    r = c.post(purchases(p.id), json={"package_id": ACTION_PACK},
               headers={"Idempotency-Key": "x" * 201})
    assert_problem(r, 422, "validation-failed")
    assert count_purchases(p.id) == 0


def test_a_colleague_with_the_same_key_gets_no_stored_answer():
    """Keys are the caller's own (partner and subject): another user of the same partner who
    sends the same key and body is a new request, never a replay of the first answer."""
    p = fresh_partner()
    k = key()
    first = p.client("ga").post(purchases(p.id), json={"package_id": SILVER},
                                headers={"Idempotency-Key": k})
    assert first.status_code == 201, first.text
    other = p.client("aa").post(purchases(p.id), json={"package_id": SILVER},
                                headers={"Idempotency-Key": k})
    assert "Idempotent-Replayed" not in other.headers
    assert_problem(other, 409, "already-purchased")
    # a user with no role at all gets the role check, not the stored answer
    emp = p.client("emp").post(purchases(p.id), json={"package_id": SILVER},
                                    headers={"Idempotency-Key": k})
    assert "Idempotent-Replayed" not in emp.headers
    assert_problem(emp, 403, "forbidden-role")
    assert db_val("SELECT count(*) FROM purchases WHERE partner_id = %s AND package_id = %s",
                  p.id, SILVER) == 1


def test_a_replay_checks_the_roles_first():
    """The same caller, whose token now lacks a role the first request was made with, gets the
    role check (403) and not the stored answer."""
    p = fresh_partner()
    k = key()
    ga_pa = Client(BASE, token(p.users["ga"], p.id, ["global_admin", "mpn_partner_admin"]))
    first = ga_pa.post(purchases(p.id), json={"package_id": SILVER}, headers={"Idempotency-Key": k})
    assert first.status_code == 201, first.text
    same = ga_pa.post(purchases(p.id), json={"package_id": SILVER}, headers={"Idempotency-Key": k})
    assert same.status_code == 201 and same.headers.get("Idempotent-Replayed") == "true"
    fewer = Client(BASE, token(p.users["ga"], p.id, ["mpn_partner_admin"]))
    r = fewer.post(purchases(p.id), json={"package_id": SILVER}, headers={"Idempotency-Key": k})
    assert "Idempotent-Replayed" not in r.headers
    assert_problem(r, 403, "forbidden-role")
