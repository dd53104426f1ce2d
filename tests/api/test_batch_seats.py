"""Issue 14, step 2: batch seat assignment. Per-row results (one row's failure never hides the
others'), dry run and atomic batches that change nothing, JSON and text/csv bodies, and the seat
limit exact while batches and single assignments run at once on two service processes."""
from __future__ import annotations

from helpers import DIRECT, assert_problem, db_all, db_one, db_val, idem, spawn_server
from test_concurrency import fire
from test_seats import AZURE, VS_ENTERPRISE, Tenant


def snapshot(t: Tenant, b: str) -> dict:
    return {
        "seats": db_all("SELECT user_id::text, assigned_by FROM seat_assignments "
                        "WHERE benefit_id = %s ORDER BY user_id", b),
        "benefit": db_one("SELECT status, used, activated_at FROM benefits WHERE id = %s", b),
        "audit": db_val("SELECT count(*) FROM audit_events WHERE partner_id = %s "
                        "AND action LIKE 'seat.%%'", t.id),
    }


def email_of(user_id: str) -> str:
    return db_val("SELECT email FROM users WHERE id = %s", user_id)


def batch(t: Tenant, b: str, body, **kw):
    return t.client(0).post(t.path(b, "/assignments/batch"), json=body, headers=idem(), **kw)


def csv_batch(t: Tenant, b: str, text: str | bytes, params=None):
    data = text.encode() if isinstance(text, str) else text
    return t.client(0).post(t.path(b, "/assignments/batch"), data=data, params=params,
                            headers=dict(idem(), **{"Content-Type": "text/csv"}))


def test_dry_run_answers_every_row_and_changes_nothing():
    t, other = Tenant(n_users=8), Tenant(n_users=1)
    b = t.benefit(VS_ENTERPRISE, 3)
    db_val("INSERT INTO seat_assignments (benefit_id, user_id, assigned_by) "
           "VALUES (%s, %s, 'test') RETURNING 1", b, t.users[4])
    before = snapshot(t, b)
    r = batch(t, b, {"add": [t.users[5], email_of(t.users[6]).upper(), t.users[7],
                             other.users[0]],
                     "remove": [t.users[4]], "dry_run": True})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["dry_run"] is True and doc["applied"] is False
    rows = [(x["op"], x["user_id"], x["status"], x["code"]) for x in doc["results"]]
    assert rows == [("add", t.users[5], 201, None), ("add", t.users[6], 201, None),
                    ("add", t.users[7], 201, None),
                    ("add", None, 422, "user-not-in-partner"),
                    ("remove", t.users[4], 204, None)]
    assert doc["summary"] == {"succeeded": 4, "failed": 1}
    assert snapshot(t, b) == before


def test_atomic_batch_with_a_bad_row_changes_nothing():
    t = Tenant(n_users=8)
    b = t.benefit(VS_ENTERPRISE, 2)
    before = snapshot(t, b)
    r = batch(t, b, {"add": [t.users[4], t.users[5], t.users[6]], "atomic": True})
    body = assert_problem(r, 409, "batch-failed")
    assert [x["status"] for x in body["results"]] == [201, 201, 409]
    assert body["results"][2]["code"] == "no-seats-available"
    assert snapshot(t, b) == before
    # the same rows within the limit go through
    r = batch(t, b, {"add": [t.users[4], t.users[5]], "atomic": True})
    assert r.status_code == 200 and r.json()["applied"] is True, r.text
    assert snapshot(t, b)["seats"] == sorted((u, t.users[0]) for u in t.users[4:6])


def test_non_atomic_rows_fail_alone():
    t, other = Tenant(n_users=9), Tenant(n_users=1)
    b = t.benefit(VS_ENTERPRISE, 3)
    r = batch(t, b, {"add": [t.users[4], other.users[0], t.users[5], "not an id", t.users[6],
                             t.users[7], t.users[4]],
                     "remove": [t.users[8]]})
    assert r.status_code == 200, r.text
    got = [(x["status"], x["code"]) for x in r.json()["results"]]
    assert got == [(201, None), (422, "user-not-in-partner"), (201, None),
                   (422, "validation-failed"), (201, None), (409, "no-seats-available"),
                   (409, "already-assigned"), (404, "not-found")]
    assert [x["index"] for x in r.json()["results"]] == [0, 1, 2, 3, 4, 5, 6, 0]
    seats = [u for u, _ in snapshot(t, b)["seats"]]
    assert seats == sorted([t.users[4], t.users[5], t.users[6]])
    assert db_one("SELECT used, status FROM benefits WHERE id = %s", b) == (3, "active")
    assert db_val("SELECT count(*) FROM audit_events WHERE partner_id = %s "
                  "AND action = 'seat.assigned'", t.id) == 3
    # removes run first: a batch can hand a seat over
    r = batch(t, b, {"remove": [t.users[6]], "add": [t.users[7]]})
    assert [x["status"] for x in r.json()["results"]] == [201, 204], r.text
    r = batch(t, b, {"remove": [t.users[4], t.users[5], t.users[7]]})
    assert [x["status"] for x in r.json()["results"]] == [204, 204, 204], r.text
    assert db_one("SELECT used, status FROM benefits WHERE id = %s", b) == (0, "available")


def test_csv_with_bom_mixed_line_ends_quotes_and_empty_lines():
    t = Tenant(n_users=8)
    b = t.benefit(VS_ENTERPRISE, 10)
    e = [email_of(u) for u in t.users]
    text = ("\ufeffEmail , OP\r\n"
            f"{e[4]},add\n"
            "\n"
            f"\"{e[5]}\",ADD\r"
            f"\"x,{e[6]}\",add\r\n"
            f"{e[7]},grant\n"
            f"{e[6]}\n"
            "\r\n"
            f"{e[7]},add")
    r = csv_batch(t, b, text)
    assert r.status_code == 200, r.text
    got = [(x["line"], x["status"], x["code"]) for x in r.json()["results"]]
    assert got == [(2, 201, None), (4, 201, None), (5, 422, "validation-failed"),
                   (6, 422, "validation-failed"), (7, 422, "validation-failed"),
                   (9, 201, None)]
    assert len(snapshot(t, b)["seats"]) == 3
    # dry run and atomic as query parameters
    r = csv_batch(t, b, f"email,op\n{e[4]},remove\n{e[6]},add\n", {"dry_run": "true"})
    assert r.status_code == 200 and r.json()["dry_run"] is True, r.text
    assert len(snapshot(t, b)["seats"]) == 3
    r = csv_batch(t, b, f"email,op\n{e[4]},remove\nnobody@x.example,add\n", {"atomic": "true"})
    assert_problem(r, 409, "batch-failed")
    assert len(snapshot(t, b)["seats"]) == 3


def test_bad_csv_is_a_problem_naming_the_line():
    t = Tenant(n_users=5)
    b = t.benefit(VS_ENTERPRISE, 10)
    e4 = email_of(t.users[4])
    for text, line in [(f"user,op\n{e4},add\n", 1), (f"\n\nemail\n{e4},add\n", 3),
                       (f"email,op\n{e4},add\n\"{e4},add\n", 3), ("email,op\n\n", 3),
                       ("", 1)]:
        body = assert_problem(csv_batch(t, b, text), 422, "validation-failed")
        assert body["errors"][0]["field"] == f"line {line}", (text, body)
    r = t.client(0).post(t.path(b, "/assignments/batch"), data=b"email,op\n",
                         headers=dict(idem(), **{"Content-Type": "text/plain"}))
    assert_problem(r, 415, "unsupported-media-type")
    big = "email,op\n" + "".join(f"user{i:06d}@example.com,add\n" for i in range(4000))
    assert_problem(csv_batch(t, b, big), 413, "payload-too-large")
    assert snapshot(t, b)["seats"] == []


def test_batch_is_for_visual_studio_benefits_that_are_open():
    t = Tenant(n_users=5)
    azure = t.benefit(AZURE, 1)
    assert_problem(batch(t, azure, {"add": [t.users[0]]}), 422, "validation-failed")
    vs = t.benefit(VS_ENTERPRISE, 5)
    assert_problem(batch(t, vs, {"add": []}), 422, "validation-failed")
    assert_problem(batch(t, vs, {"add": [t.users[4]], "surprise": 1}), 422, "validation-failed")
    db_val("UPDATE benefits SET expires_at = now() - interval '1 day' WHERE id = %s "
           "RETURNING 1", vs)
    assert_problem(batch(t, vs, {"add": [t.users[4]]}), 409, "benefit-expired")
    r = t.client(1).post(t.path(vs, "/assignments/batch"), json={"add": [t.users[4]]},
                         headers=idem())
    assert_problem(r, 403, "forbidden-role")


def test_batches_and_single_assignments_on_two_processes_fill_exactly_60_seats():
    t = Tenant(n_users=300)
    b = t.benefit(VS_ENTERPRISE, 60)
    tok = t.token(0)
    with spawn_server() as other:
        bases = [DIRECT.rstrip("/"), other.url]
        calls = [("POST", f"{bases[i % 2]}{t.path(b, '/assignments')}", tok, {"user_id": u})
                 for i, u in enumerate(t.users[:50])]
        for k in range(5):
            rows = t.users[50 + 50 * k: 100 + 50 * k]
            calls.append(("POST", f"{bases[k % 2]}{t.path(b, '/assignments/batch')}", tok,
                          {"add": rows}))
        results = fire(calls)
    singles, batches = results[:50], results[50:]
    assert all(s in (201, 409) for s, _ in singles), [s for s, _ in singles]
    assert all(s == 200 for s, _ in batches), [s for s, _ in batches]
    won = [body["user_id"] for s, body in singles if s == 201]
    for s, body in batches:
        for row in body["results"]:
            assert (row["status"], row["code"]) in ((201, None), (409, "no-seats-available"))
            if row["status"] == 201:
                won.append(row["user_id"])
    rows = [u for (u,) in db_all("SELECT user_id::text FROM seat_assignments "
                                 "WHERE benefit_id = %s ORDER BY user_id", b)]
    assert len(rows) == 60 and sorted(won) == rows
    assert db_one("SELECT used, status FROM benefits WHERE id = %s", b) == (60, "active")
