"""Technical benefits (R8): activation as a long-running operation processed by the operator,
Access ID and Contract ID, support requests that use up the benefit, roles and PMC (R1)."""
import os
import re
import uuid

import pytest

from fresh_partner import (ADVISORY_HOURS, INCIDENTS, PRESALES_HOURS, WINDOWS_SERVER, activate,
                           benefit_row, complete, fresh_partner)
from helpers import CONTOSO, assert_problem, db_all, db_exec, db_val

ACCESS_RE = re.compile(r"^AID-[0-9A-F]{16}$")
CONTRACT_RE = re.compile(r"^CTR-[0-9A-F]{16}$")


def find_in_queue(op, activation_id, status="pending"):
    """Pages through the operator's queue until the activation shows up."""
    cursor = None
    while True:
        params = {"status": status, "limit": 200}
        if cursor:
            params["cursor"] = cursor
        r = op.get("/v1/admin/activations", params=params)
        assert r.status_code == 200, r.text
        body = r.json()
        assert all(a["status"] == status for a in body["items"])
        for a in body["items"]:
            if a["id"] == activation_id:
                return a
        cursor = body["next_cursor"]
        if not cursor:
            return None


@pytest.mark.seed("S30", "S31", "S32")
def test_technical_activation_is_pending_then_operator_completes_with_access_and_contract_ids(
        base, op):
    f = fresh_partner()
    ga = f.client(base)
    r = ga.post(f.benefit_path(INCIDENTS, "/activation"))
    assert r.status_code == 202, r.text
    act = r.json()
    assert act["status"] == "pending" and act["kind"] == "technical"
    assert act["benefit_id"] == f.benefits[INCIDENTS] and act["partner_id"] == f.partner
    assert act["access_id"] is None and act["contract_id"] is None
    assert r.headers["Location"] == f"/v1/partners/{f.partner}/activations/{act['id']}"
    assert int(r.headers["Retry-After"]) > 0

    # the Location answers the pending activation; the benefit follows it
    r = ga.get(r.headers["Location"])
    assert r.status_code == 200 and r.json()["status"] == "pending"
    assert ga.get(f.benefit_path(INCIDENTS)).json()["status"] == "pending"
    assert db_val("SELECT status FROM activations WHERE id = %s", act["id"]) == "pending"
    assert benefit_row(f.benefits[INCIDENTS])[0] == "pending"

    # the operator sees it in the queue across partners
    queued = find_in_queue(op, act["id"])
    assert queued is not None and queued["partner_id"] == f.partner
    assert op.get(f"/v1/partners/{f.partner}/activations/{act['id']}").status_code == 200

    done = complete(op, act["id"])
    assert done["status"] == "active" and done["processed_at"]
    assert ACCESS_RE.match(done["access_id"]) and CONTRACT_RE.match(done["contract_id"])
    assert done["expires_at"] is None

    got = ga.get(f"/v1/partners/{f.partner}/activations/{act['id']}").json()
    assert (got["status"], got["access_id"], got["contract_id"]) == (
        "active", done["access_id"], done["contract_id"])
    benefit = ga.get(f.benefit_path(INCIDENTS)).json()
    assert benefit["status"] == "active"
    assert (benefit["access_id"], benefit["contract_id"]) == (done["access_id"], done["contract_id"])
    status, _, access, contract, _ = benefit_row(f.benefits[INCIDENTS])
    assert (status, access, contract) == ("active", done["access_id"], done["contract_id"])
    assert find_in_queue(op, act["id"]) is None

    actions = [a for (a,) in db_all("SELECT action FROM audit_events WHERE target_id = %s "
                                     "AND partner_id = %s ORDER BY id", act["id"], f.partner)]
    assert actions == ["activation.requested", "activation.completed"]

    # finished: not pending any more, and no second activation
    assert_problem(op.post(f"/v1/admin/activations/{act['id']}/complete"), 409, "not-pending")
    assert_problem(ga.post(f.benefit_path(INCIDENTS, "/activation")), 409, "activation-exists")


@pytest.mark.seed("S31")
def test_access_and_contract_ids_differ_between_benefits(base, op):
    f = fresh_partner()
    pa = f.client(base, "mpn_partner_admin")
    a = complete(op, activate(pa, f, INCIDENTS)["id"])
    b = complete(op, activate(pa, f, PRESALES_HOURS)["id"])
    assert a["access_id"] != b["access_id"] and a["contract_id"] != b["contract_id"]
    assert len({a["access_id"], b["access_id"], a["contract_id"], b["contract_id"]}) == 4


@pytest.mark.seed("S30")
def test_second_activation_while_pending_is_409_activation_exists(base):
    f = fresh_partner()
    ga = f.client(base)
    first = activate(ga, f, INCIDENTS)
    r = ga.post(f.benefit_path(INCIDENTS, "/activation"), json={})
    body = assert_problem(r, 409, "activation-exists")
    assert first["id"] in body["detail"]
    assert db_val("SELECT count(*) FROM activations WHERE benefit_id = %s",
                  f.benefits[INCIDENTS]) == 1


def test_activation_retry_with_idempotency_key_replays_the_first_answer(base):
    f = fresh_partner()
    ga = f.client(base)
    hdr = {"Idempotency-Key": f"act-{uuid.uuid4()}"}
    r1 = ga.post(f.benefit_path(INCIDENTS, "/activation"), headers=hdr)
    r2 = ga.post(f.benefit_path(INCIDENTS, "/activation"), headers=hdr)
    assert r1.status_code == r2.status_code == 202
    assert r1.json() == r2.json() and r2.headers["Location"] == r1.headers["Location"]
    assert db_val("SELECT count(*) FROM activations WHERE benefit_id = %s",
                  f.benefits[INCIDENTS]) == 1


@pytest.mark.parametrize("role", ["admin_agent", "user_admin", "employee"])
@pytest.mark.seed("S04", "S08", "S09")
def test_technical_activation_by_other_roles_is_403_ask_global_admin(base, role):
    f = fresh_partner()
    c = f.client(base, role)
    body = assert_problem(c.post(f.benefit_path(INCIDENTS, "/activation")), 403, "forbidden-role")
    assert "Global admin" in body["detail"]
    body = assert_problem(c.post(f.benefit_path(INCIDENTS, "/support-requests"),
                                 json={"type": "on_premises"}), 403, "forbidden-role")
    assert "Global admin" in body["detail"]
    assert_problem(c.get(f.benefit_path(INCIDENTS, "/support-requests")), 403, "forbidden-role")
    assert db_val("SELECT count(*) FROM activations WHERE partner_id = %s", f.partner) == 0
    assert benefit_row(f.benefits[INCIDENTS])[0] == "available"


@pytest.mark.seed("S27")
def test_pmc_partner_technical_activation_is_409_pointing_to_partner_frontline(base):
    f = fresh_partner(location="pmc")
    r = f.client(base).post(f.benefit_path(INCIDENTS, "/activation"))
    body = assert_problem(r, 409, "membership-in-pmc")
    assert "Partner Frontline" in body["detail"]
    assert db_val("SELECT count(*) FROM activations WHERE partner_id = %s", f.partner) == 0
    r = f.client(base).post(f.benefit_path(INCIDENTS, "/support-requests"),
                            json={"type": "on_premises"})
    assert "Partner Frontline" in assert_problem(r, 409, "membership-in-pmc")["detail"]


def test_activation_of_another_partners_benefit_is_404(base, ga):
    f = fresh_partner()
    assert_problem(ga.post(f"/v1/partners/{CONTOSO}/benefits/{f.benefits[INCIDENTS]}/activation"),
                   404, "not-found")
    assert_problem(ga.post(f.benefit_path(INCIDENTS, "/activation")), 404, "not-found")
    act = activate(f.client(base), f, INCIDENTS)
    assert_problem(ga.get(f"/v1/partners/{CONTOSO}/activations/{act['id']}"), 404, "not-found")
    assert_problem(ga.get(f"/v1/partners/{CONTOSO}/activations/not-a-uuid"), 404, "not-found")
    assert db_val("SELECT count(*) FROM activations WHERE partner_id = %s", f.partner) == 1


def test_activation_of_a_software_benefit_is_422(base):
    f = fresh_partner()
    r = f.client(base).post(f.benefit_path(WINDOWS_SERVER, "/activation"))
    assert_problem(r, 422, "validation-failed")
    assert db_val("SELECT count(*) FROM activations WHERE partner_id = %s", f.partner) == 0


def test_activation_body_with_unknown_field_is_422(base):
    f = fresh_partner()
    r = f.client(base).post(f.benefit_path(INCIDENTS, "/activation"), json={"force": True})
    assert_problem(r, 422, "validation-failed")
    assert db_val("SELECT count(*) FROM activations WHERE partner_id = %s", f.partner) == 0


def test_operator_rejects_with_reason_and_the_benefit_can_be_activated_again(base, op):
    f = fresh_partner()
    ga = f.client(base)
    act = activate(ga, f, INCIDENTS)
    path = f"/v1/admin/activations/{act['id']}/reject"
    assert_problem(op.post(path, json={}), 422, "validation-failed")
    assert_problem(op.post(path, json={"reason": ""}), 422, "validation-failed")
    assert_problem(ga.post(path, json={"reason": "no"}), 403, "forbidden-role")
    r = op.post(path, json={"reason": "Competency not verified"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "rejected" and r.json()["reason"] == "Competency not verified"
    assert db_val("SELECT status FROM activations WHERE id = %s", act["id"]) == "rejected"
    assert benefit_row(f.benefits[INCIDENTS])[0] == "available"
    assert db_val("SELECT count(*) FROM audit_events WHERE target_id = %s "
                  "AND action = 'activation.rejected' AND partner_id = %s", act["id"], f.partner) == 1
    assert_problem(op.post(path, json={"reason": "again"}), 409, "not-pending")
    assert_problem(op.post(f"/v1/admin/activations/{act['id']}/complete"), 409, "not-pending")
    assert find_in_queue(op, act["id"], "rejected") is not None
    again = activate(ga, f, INCIDENTS)
    assert again["id"] != act["id"]


def test_operator_endpoints_need_the_operator_role_and_known_ids(base, op):
    f = fresh_partner()
    ga = f.client(base)
    assert_problem(ga.get("/v1/admin/activations"), 403, "forbidden-role")
    act = activate(ga, f, INCIDENTS)
    assert_problem(ga.post(f"/v1/admin/activations/{act['id']}/complete"), 403, "forbidden-role")
    assert_problem(op.post(f"/v1/admin/activations/{uuid.uuid4()}/complete"), 404, "not-found")
    assert_problem(op.post("/v1/admin/activations/nope/reject", json={"reason": "x"}), 404,
                   "not-found")
    assert_problem(op.get("/v1/admin/activations", params={"status": "done"}), 422,
                   "validation-failed")
    assert db_val("SELECT status FROM activations WHERE id = %s", act["id"]) == "pending"


def active_technical(base, op, product_id, quantity=None):
    f = fresh_partner()
    complete(op, activate(f.client(base), f, product_id)["id"])
    if quantity is not None:
        db_exec("UPDATE benefits SET quantity = %s WHERE id = %s", quantity, f.benefits[product_id])
    return f


@pytest.mark.seed("S33", "S34")
def test_support_requests_use_up_the_incidents_then_409_benefit_exhausted(base, op):
    f = active_technical(base, op, INCIDENTS, quantity=3)
    ga = f.client(base)
    path = f.benefit_path(INCIDENTS, "/support-requests")
    tenant = str(uuid.uuid4())
    bodies = [{"type": "cloud_on_behalf_of_customer", "customer_tenant_id": tenant,
               "description": "Azure SQL failover"},
              {"type": "on_premises"},
              {"type": "on_premises", "description": "Exchange Server migration"}]
    created = []
    for i, body in enumerate(bodies, 1):
        r = ga.post(path, json=body)
        assert r.status_code == 201, r.text
        doc = r.json()
        assert doc["type"] == body["type"] and doc["units"] == 1
        assert r.headers["Location"] == f"{path}/{doc['id']}"
        assert ga.get(r.headers["Location"]).json() == doc
        assert benefit_row(f.benefits[INCIDENTS])[1] == i
        created.append(doc["id"])
    assert created and db_val("SELECT customer_tenant_id::text FROM support_requests WHERE id = %s",
                              created[0]) == tenant
    body = assert_problem(ga.post(path, json={"type": "on_premises"}), 409, "benefit-exhausted")
    assert "0 of 3" in body["detail"]
    assert benefit_row(f.benefits[INCIDENTS])[1] == 3
    assert db_val("SELECT count(*) FROM support_requests WHERE benefit_id = %s",
                  f.benefits[INCIDENTS]) == 3
    assert ga.get(f.benefit_path(INCIDENTS)).json()["used"] == 3

    listed = ga.get(path, params={"limit": 2})
    assert listed.status_code == 200
    page1 = listed.json()
    assert len(page1["items"]) == 2 and page1["next_cursor"]
    page2 = ga.get(path, params={"limit": 2, "cursor": page1["next_cursor"]}).json()
    assert page2["next_cursor"] is None
    assert sorted(i["id"] for i in page1["items"] + page2["items"]) == sorted(created)
    assert op.get(path).status_code == 200
    assert db_val("SELECT count(*) FROM audit_events WHERE partner_id = %s "
                  "AND action = 'support_request.created'", f.partner) == 3


@pytest.mark.seed("S34")
def test_support_requests_in_hours_use_the_hours(base, op):
    f = active_technical(base, op, ADVISORY_HOURS)  # 50 hours in Gold
    ga = f.client(base)
    path = f.benefit_path(ADVISORY_HOURS, "/support-requests")
    assert_problem(ga.post(path, json={"type": "on_premises"}), 422, "validation-failed")
    r = ga.post(path, json={"type": "advisory_hours", "hours": 30})
    assert r.status_code == 201, r.text
    assert r.json()["units"] == 30 and r.json()["hours"] == 30
    assert benefit_row(f.benefits[ADVISORY_HOURS])[1] == 30
    assert_problem(ga.post(path, json={"type": "advisory_hours", "hours": 21}), 409,
                   "benefit-exhausted")
    assert benefit_row(f.benefits[ADVISORY_HOURS])[1] == 30
    r = ga.post(path, json={"type": "presales_deployment", "hours": 20})
    assert r.status_code == 201 and benefit_row(f.benefits[ADVISORY_HOURS])[1] == 50


@pytest.mark.seed("S33")
def test_support_request_on_a_benefit_not_yet_active_is_409_benefit_not_active(base, op):
    f = fresh_partner()
    ga = f.client(base)
    path = f.benefit_path(INCIDENTS, "/support-requests")
    assert_problem(ga.post(path, json={"type": "on_premises"}), 409, "benefit-not-active")
    activate(ga, f, INCIDENTS)  # pending is not active either
    assert_problem(ga.post(path, json={"type": "on_premises"}), 409, "benefit-not-active")
    assert db_val("SELECT count(*) FROM support_requests WHERE benefit_id = %s",
                  f.benefits[INCIDENTS]) == 0
    assert benefit_row(f.benefits[INCIDENTS])[1] == 0


@pytest.mark.parametrize("body,field", [
    ({"type": "cloud_on_behalf_of_customer"}, "customer_tenant_id"),
    ({"type": "cloud_on_behalf_of_customer", "customer_tenant_id": "tenant-1"},
     "customer_tenant_id"),
    ({"type": "advisory_hours"}, "hours"),
    ({"type": "advisory_hours", "hours": 0}, "hours"),
    ({"type": "phone_call"}, "type"),
    ({}, "type"),
    ({"type": "on_premises", "priority": "high"}, "priority"),
])
@pytest.mark.seed("S34")
def test_invalid_support_request_is_422_naming_the_field(base, op, body, field):
    f = active_technical(base, op, INCIDENTS)
    r = f.client(base).post(f.benefit_path(INCIDENTS, "/support-requests"), json=body)
    problem = assert_problem(r, 422, "validation-failed")
    assert problem["errors"][0]["field"] == field
    assert benefit_row(f.benefits[INCIDENTS])[1] == 0


def test_support_requests_on_a_non_technical_benefit_are_422(base):
    f = fresh_partner()
    ga = f.client(base)
    path = f.benefit_path(WINDOWS_SERVER, "/support-requests")
    assert_problem(ga.post(path, json={"type": "on_premises"}), 422, "validation-failed")
    assert_problem(ga.get(path), 422, "validation-failed")


def _race(calls, lock_sql, lock_arg):
    """Forces a race: holds a row lock (lock_sql) that every request needs, releases the
    requests together from a barrier, waits until as many as the service's pool can hold are
    WAITING on that lock in PostgreSQL, then lets go. Returns the answers, in call order."""
    import threading
    import time
    from helpers import db_connect
    barrier = threading.Barrier(len(calls))
    answers = [None] * len(calls)

    def one(i):
        c, method, path, body = calls[i]
        try:
            barrier.wait(timeout=30)
            answers[i] = c.request(method, path, json=body, timeout=60)
        finally:
            c.close()

    def waiters():
        return db_val("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                      "AND application_name = 'mpn-benefits' AND datname = current_database()")

    want = min(len(calls), int(os.environ.get("DB_POOL_SIZE", "4")))
    locker = db_connect()
    locker.autocommit = False
    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(calls))]
    try:
        with locker.cursor() as cur:
            cur.execute(lock_sql, (lock_arg,))
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        while waiters() < want and time.monotonic() < deadline:
            time.sleep(0.05)
        assert waiters() >= want, f"only {waiters()} of {want} requests waited on the lock"
    finally:
        locker.rollback()
        locker.close()
    for t in threads:
        t.join(60)
    assert all(a is not None for a in answers)
    return answers


def test_concurrent_support_requests_never_exceed_the_incidents(base, op):
    f = active_technical(base, op, INCIDENTS, quantity=3)
    path = f.benefit_path(INCIDENTS, "/support-requests")
    calls = [(f.client(base).direct, "POST", path, {"type": "on_premises"}) for _ in range(8)]
    answers = _race(calls, "SELECT 1 FROM benefits WHERE id = %s FOR UPDATE",
                    f.benefits[INCIDENTS])
    codes = sorted(a.status_code for a in answers)
    assert codes == [201] * 3 + [409] * 5, [a.text[:200] for a in answers]
    for a in answers:
        if a.status_code == 409:
            assert_problem(a, 409, "benefit-exhausted")
    assert benefit_row(f.benefits[INCIDENTS])[1] == 3
    assert db_val("SELECT count(*) FROM support_requests WHERE benefit_id = %s",
                  f.benefits[INCIDENTS]) == 3


def test_concurrent_activation_requests_create_one_activation(base):
    """Six requests wait together on the benefit's row; the handler's own lock and check (not
    the unique index behind it) must then answer the five late ones: their 409 names the
    activation the first one created."""
    f = fresh_partner()
    path = f.benefit_path(INCIDENTS, "/activation")
    calls = [(f.client(base).direct, "POST", path, None) for _ in range(6)]
    answers = _race(calls, "SELECT 1 FROM benefits WHERE id = %s FOR UPDATE",
                    f.benefits[INCIDENTS])
    codes = sorted(a.status_code for a in answers)
    assert codes == [202] + [409] * 5, [a.text[:200] for a in answers]
    (aid,) = db_all("SELECT id::text FROM activations WHERE benefit_id = %s",
                    f.benefits[INCIDENTS])[0]
    assert db_val("SELECT count(*) FROM activations WHERE benefit_id = %s",
                  f.benefits[INCIDENTS]) == 1
    for a in answers:
        if a.status_code == 409:
            body = assert_problem(a, 409, "activation-exists")
            assert f"/activations/{aid}" in body["detail"], body
