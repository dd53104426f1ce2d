"""Partner onboarding by the operator and Account settings (R11): users, their roles, the last
Global admin, seats released with a deleted user."""
import random
import uuid
from types import SimpleNamespace

import pytest

from helpers import (BASE, CONTOSO, FABRIKAM, Client, assert_problem, db_all,
                     db_exec, db_one, db_val, idem, token)

ROLES = ("global_admin", "user_admin", "admin_agent", "mpn_partner_admin")
WHO = {"ga": ["global_admin"], "ua": ["user_admin"], "aa": ["admin_agent"],
       "pa": ["mpn_partner_admin"], "emp": []}
ACTION_PACK = "bbbbbbbb-0000-4000-8000-000000000001"
VS_PRO = "aaaaaaaa-0000-4000-8000-000000000007"


# --- helpers shared by test_purchases, test_idempotency and test_audit ---------------------

def new_mpn_id() -> int:
    return random.randint(10**9, 10**12)


def fresh_partner(location: str = "partner_center", level: str = "gold") -> SimpleNamespace:
    """A new partner made with SQL, with one user per entry of WHO (ga, ua, aa, pa, emp).
    `p.client("ga")` is a Client (through Prism) with that user's token."""
    pid = str(uuid.uuid4())
    tag = pid[:8]
    db_exec("INSERT INTO partners (id, mpn_id, name, account_email, membership_location, level) "
            "VALUES (%s, %s, %s, %s, %s, %s)", pid, new_mpn_id(), f"Test partner {tag}",
            f"owner-{tag}@example.com", location, level)
    users = {}
    for who, roles in WHO.items():
        uid = str(uuid.uuid4())
        db_exec("INSERT INTO users (id, partner_id, email, display_name, roles) "
                "VALUES (%s, %s, %s, %s, %s)", uid, pid, f"{who}-{tag}@example.com",
                f"{who} of {tag}", roles)
        users[who] = uid
    p = SimpleNamespace(id=pid, users=users)
    p.client = lambda who, base=None: Client(base or BASE, token(users[who], pid, WHO[who]))
    return p


def onboarding_body(**over) -> dict:
    tag = uuid.uuid4().hex[:8]
    body = {"mpn_id": new_mpn_id(), "name": f"Northwind {tag}",
            "account_email": f"account-{tag}@northwind.example",
            "membership_location": "partner_center", "level": "silver",
            "competencies": [{"area": "Cloud Platform", "level": "silver"}],
            "co_sell_ready": False,
            "global_admin": {"email": f"ga-{tag}@northwind.example", "display_name": "Nina Admin"}}
    body.update(over)
    return body


def onboard(op, **over) -> tuple[dict, Client]:
    """Onboards a partner through the API; returns the answer and a Client of its Global admin."""
    r = op.post("/v1/admin/partners", json=onboarding_body(**over), headers=idem())
    assert r.status_code == 201, r.text
    doc = r.json()
    return doc, Client(BASE, token(doc["global_admin"]["id"], doc["id"], ["global_admin"]))


def users_url(pid: str, uid: str | None = None) -> str:
    return f"/v1/partners/{pid}/users" + (f"/{uid}" if uid else "")


def user_body(**over) -> dict:
    tag = uuid.uuid4().hex[:8]
    body = {"email": f"user-{tag}@example.com", "display_name": f"User {tag}", "roles": []}
    body.update(over)
    return body


# --- onboarding -----------------------------------------------------------------------------

def test_operator_onboards_partner_with_first_global_admin(op):
    body = onboarding_body(competencies=[
        {"area": "Cloud Platform", "level": "gold", "expires_at": "2030-01-31T00:00:00Z"},
        {"area": "Data Analytics", "level": "silver"}], co_sell_ready=True)
    r = op.post("/v1/admin/partners", json=body, headers=idem())
    assert r.status_code == 201, r.text
    doc = r.json()
    pid = doc["id"]
    assert r.headers["Location"] == f"/v1/partners/{pid}"
    assert doc["mpn_id"] == body["mpn_id"] and doc["name"] == body["name"]
    assert doc["membership_location"] == "partner_center" and doc["level"] == "silver"
    assert doc["co_sell_ready"] is True
    assert [(c["area"], c["level"]) for c in doc["competencies"]] == [
        ("Cloud Platform", "gold"), ("Data Analytics", "silver")]
    ga = doc["global_admin"]
    assert ga["email"] == body["global_admin"]["email"] and ga["roles"] == ["global_admin"]
    # the database holds the partner, its competencies and its first user, linked
    assert db_one("SELECT mpn_id, account_email, level FROM partners WHERE id = %s", pid) == (
        body["mpn_id"], body["account_email"], "silver")
    assert db_val("SELECT count(*) FROM partner_competencies WHERE partner_id = %s", pid) == 2
    assert db_one("SELECT partner_id::text, roles FROM users WHERE id = %s", ga["id"]) == (
        pid, ["global_admin"])
    # the new Global admin can use the partner at once
    me = Client(BASE, token(ga["id"], pid, ["global_admin"]))
    assert me.get(f"/v1/partners/{pid}").json()["id"] == pid
    assert me.get(users_url(pid)).json()["items"][0]["id"] == ga["id"]


def test_onboarding_a_duplicate_mpn_id_is_409_and_writes_nothing(op):
    first, _ = onboard(op)
    body = onboarding_body(mpn_id=first["mpn_id"])
    body_ = assert_problem(op.post("/v1/admin/partners", json=body), 409, "conflict")
    assert str(first["mpn_id"]) in body_["detail"]
    assert db_val("SELECT count(*) FROM partners WHERE mpn_id = %s", first["mpn_id"]) == 1
    assert db_val("SELECT count(*) FROM users WHERE email = %s",
                  body["global_admin"]["email"]) == 0


@pytest.mark.parametrize("change,field", [
    ({"mpn_id": 0}, "mpn_id"),
    ({"mpn_id": "123"}, "mpn_id"),
    ({"level": "platinum"}, "level"),
    ({"membership_location": "elsewhere"}, "membership_location"),
    ({"account_email": "not-an-email"}, "account_email"),
    ({"global_admin": None}, "global_admin"),
    ({"global_admin": {"email": "x@y.example"}}, "global_admin.display_name"),
    ({"competencies": [{"area": "A", "level": "bronze"}]}, "competencies[0].level"),
    ({"competencies": [{"area": "A", "level": "gold"}, {"area": "A", "level": "silver"}]},
     "competencies[1].area"),
    ({"competencies": [{"area": "A", "level": "gold", "expires_at": "tomorrow"}]},
     "competencies[0].expires_at"),
    ({"competencies": [{"area": "A", "level": "gold", "expires_at": "2030-02-30T00:00:00Z"}]},
     "competencies"),
    ({"surprise": 1}, "surprise"),
])
def test_onboarding_bad_input_is_422_naming_the_field(op, change, field):
    body = onboarding_body(**change)
    if body.get("global_admin") is None:
        del body["global_admin"]
    problem = assert_problem(op.post("/v1/admin/partners", json=body), 422, "validation-failed")
    assert problem["errors"][0]["field"] == field
    assert db_val("SELECT count(*) FROM partners WHERE name = %s", body["name"]) == 0


@pytest.mark.parametrize("who", ["ga", "ua"])
def test_only_the_operator_onboards_and_changes_partners(request, who):
    c = request.getfixturevalue(who)
    assert_problem(c.post("/v1/admin/partners", json=onboarding_body()), 403, "forbidden-role")
    assert_problem(c.patch(f"/v1/admin/partners/{CONTOSO}", json={"level": "member"}), 403,
                   "forbidden-role")
    assert db_val("SELECT level FROM partners WHERE id = %s", CONTOSO) == "gold"


def test_operator_migrates_pmc_partner_and_changes_level_and_competencies(op):
    doc, _ = onboard(op, membership_location="pmc", level="member", competencies=[
        {"area": "Old Area", "level": "silver"}])
    pid = doc["id"]
    r = op.patch(f"/v1/admin/partners/{pid}", json={
        "membership_location": "partner_center", "level": "gold", "co_sell_ready": True,
        "competencies": [{"area": "Cloud Platform", "level": "gold"},
                         {"area": "Security", "level": "silver",
                          "expires_at": "2031-06-30T12:00:00+02:00"}]})
    assert r.status_code == 200, r.text
    p = r.json()
    assert p["membership_location"] == "partner_center" and p["level"] == "gold"
    assert p["co_sell_ready"] is True and p["name"] == doc["name"]
    assert [c["area"] for c in p["competencies"]] == ["Cloud Platform", "Security"]
    assert db_one("SELECT membership_location, level, co_sell_ready FROM partners WHERE id = %s",
                  pid) == ("partner_center", "gold", True)
    assert sorted(r[0] for r in db_all(
        "SELECT area FROM partner_competencies WHERE partner_id = %s", pid)) == [
        "Cloud Platform", "Security"]
    # a partial change leaves the rest alone
    r = op.patch(f"/v1/admin/partners/{pid}", json={"name": "Renamed Ltd"})
    assert r.status_code == 200 and r.json()["name"] == "Renamed Ltd"
    assert r.json()["level"] == "gold" and len(r.json()["competencies"]) == 2


def test_a_migrated_partner_cannot_move_back_to_pmc(op):
    doc, _ = onboard(op)
    assert_problem(op.patch(f"/v1/admin/partners/{doc['id']}",
                            json={"membership_location": "pmc"}), 409, "conflict")
    assert db_val("SELECT membership_location FROM partners WHERE id = %s",
                  doc["id"]) == "partner_center"


def test_patch_partner_bad_input(op):
    doc, _ = onboard(op)
    assert_problem(op.patch(f"/v1/admin/partners/{doc['id']}", json={"level": "x"}), 422,
                   "validation-failed")
    assert_problem(op.direct.patch(f"/v1/admin/partners/{doc['id']}", json={}), 422,
                   "validation-failed")
    assert_problem(op.patch(f"/v1/admin/partners/{uuid.uuid4()}", json={"level": "gold"}), 404,
                   "not-found")


# --- users: who may manage them ---------------------------------------------------------------

@pytest.mark.seed("S23")
def test_onboarded_global_admin_adds_a_user_with_each_role(op):
    doc, ga = onboard(op)
    pid = doc["id"]
    for role in ROLES:
        body = user_body(roles=[role])
        r = ga.post(users_url(pid), json=body, headers=idem())
        assert r.status_code == 201, r.text
        u = r.json()
        assert r.headers["Location"] == f"/v1/partners/{pid}/users/{u['id']}"
        assert u["roles"] == [role] and u["email"] == body["email"]
        assert db_one("SELECT partner_id::text, roles FROM users WHERE id = %s", u["id"]) == (
            pid, [role])
        assert ga.get(users_url(pid, u["id"])).json() == u
    assert db_val("SELECT count(*) FROM users WHERE partner_id = %s", pid) == 5


def test_user_admin_can_add_users():
    # Issue 11: a User admin grants only roles it holds (test_identity_roles.py has the 403s).
    p = fresh_partner()
    r = p.client("ua").post(users_url(p.id), json=user_body(roles=["user_admin"]))
    assert r.status_code == 201, r.text
    assert r.json()["roles"] == ["user_admin"]
    assert db_val("SELECT roles FROM users WHERE id = %s", r.json()["id"]) == ["user_admin"]


@pytest.mark.parametrize("who", ["aa", "pa", "emp"])
def test_other_roles_cannot_add_change_or_remove_users(who):
    p = fresh_partner()
    c = p.client(who)
    body = user_body()
    assert_problem(c.post(users_url(p.id), json=body), 403, "forbidden-role")
    assert db_val("SELECT count(*) FROM users WHERE email = %s", body["email"]) == 0
    target = p.users["emp"]
    row = "SELECT to_jsonb(u) FROM users u WHERE id = %s"
    before = db_val(row, target)
    assert before is not None
    assert_problem(c.patch(users_url(p.id, target), json={"display_name": "X"}), 403,
                   "forbidden-role")
    assert db_val(row, target) == before, "a refused PATCH changed the user"
    assert_problem(c.delete(users_url(p.id, target)), 403, "forbidden-role")
    # still there, every column as it was (a deleted row would pass a `!= "X"` check)
    assert db_val(row, target) == before, "a refused DELETE removed or changed the user"


def test_read_roles_list_users_and_employee_cannot(op):
    p = fresh_partner()
    for who in ("ga", "ua", "aa", "pa"):
        r = p.client(who).get(users_url(p.id))
        assert r.status_code == 200, r.text
        assert {u["id"] for u in r.json()["items"]} == set(p.users.values())
    assert op.get(users_url(p.id)).status_code == 200
    assert_problem(p.client("emp").get(users_url(p.id)), 403, "forbidden-role")


def test_users_of_another_partner_are_404(ga):
    p = fresh_partner()
    assert_problem(ga.get(users_url(p.id)), 404, "not-found")
    assert_problem(ga.get(users_url(CONTOSO, p.users["emp"])), 404, "not-found")
    assert_problem(ga.patch(users_url(CONTOSO, p.users["emp"]), json={"display_name": "X"}),
                   404, "not-found")
    assert_problem(ga.delete(users_url(CONTOSO, p.users["emp"])), 404, "not-found")
    assert_problem(ga.delete(users_url(p.id, p.users["emp"])), 404, "not-found")
    assert db_val("SELECT count(*) FROM users WHERE id = %s", p.users["emp"]) == 1
    assert_problem(ga.get(users_url(CONTOSO, "not-a-uuid")), 404, "not-found")


def test_users_list_pages_with_cursor():
    p = fresh_partner()
    ga = p.client("ga")
    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = ga.get(users_url(p.id), params=params).json()
        assert len(page["items"]) <= 2
        seen += [u["id"] for u in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert sorted(seen) == seen and set(seen) == set(p.users.values()) and len(seen) == 5


# --- users: rules ------------------------------------------------------------------------------

def test_duplicate_email_in_a_partner_is_409_case_insensitively():
    p = fresh_partner()
    ga = p.client("ga")
    body = user_body(email=f"Dup-{uuid.uuid4().hex[:6]}@Example.com")
    assert ga.post(users_url(p.id), json=body).status_code == 201
    again = dict(body, email=body["email"].upper(), display_name="Someone else")
    assert_problem(ga.post(users_url(p.id), json=again), 409, "conflict")
    assert db_val("SELECT count(*) FROM users WHERE partner_id = %s AND lower(email) = %s",
                  p.id, body["email"].lower()) == 1
    # the same email in another partner is fine
    other = fresh_partner()
    assert other.client("ga").post(users_url(other.id), json=body).status_code == 201


@pytest.mark.parametrize("roles", [["operator"], ["root"], ["admin_agent", "admin_agent"],
                                   "global_admin", [1]])
def test_roles_must_be_distinct_partner_roles(roles):
    p = fresh_partner()
    body = user_body(roles=roles)
    problem = assert_problem(p.client("ga").post(users_url(p.id), json=body), 422,
                             "validation-failed")
    assert problem["errors"][0]["field"] == "roles"
    assert db_val("SELECT count(*) FROM users WHERE email = %s", body["email"]) == 0
    assert_problem(p.client("ga").patch(users_url(p.id, p.users["emp"]), json={"roles": roles}),
                   422, "validation-failed")


def test_user_bad_input_is_422():
    p = fresh_partner()
    ga = p.client("ga")
    for body in ({"email": "nope", "display_name": "X"}, {"email": "a@b.example"},
                 {"email": "a@b.example", "display_name": "X", "extra": True}):
        assert_problem(ga.post(users_url(p.id), json=body), 422, "validation-failed")
    assert_problem(ga.direct.patch(users_url(p.id, p.users["emp"]), json={}), 422,
                   "validation-failed")
    assert_problem(ga.patch(users_url(p.id, p.users["emp"]), json={"email": "x@y.example"}), 422,
                   "validation-failed")


def test_global_admin_changes_display_name_and_roles():
    p = fresh_partner()
    ga = p.client("ga")
    uid = p.users["emp"]
    r = ga.patch(users_url(p.id, uid), json={"display_name": "Eve Promoted",
                                             "roles": ["mpn_partner_admin", "global_admin"]})
    assert r.status_code == 200, r.text
    assert r.json()["display_name"] == "Eve Promoted"
    assert r.json()["roles"] == ["global_admin", "mpn_partner_admin"]
    assert db_one("SELECT display_name, roles FROM users WHERE id = %s", uid) == (
        "Eve Promoted", ["global_admin", "mpn_partner_admin"])


def test_only_a_global_admin_grants_or_removes_global_admin():
    p = fresh_partner()
    ua = p.client("ua")
    # granting, at creation or later
    assert_problem(ua.post(users_url(p.id), json=user_body(roles=["global_admin"])), 403,
                   "forbidden-role")
    assert_problem(ua.patch(users_url(p.id, p.users["emp"]), json={"roles": ["global_admin"]}),
                   403, "forbidden-role")
    assert db_val("SELECT roles FROM users WHERE id = %s", p.users["emp"]) == []
    # removing: a second Global admin exists, still a User admin may not demote or delete one
    assert p.client("ga").patch(users_url(p.id, p.users["emp"]),
                                json={"roles": ["global_admin"]}).status_code == 200
    assert_problem(ua.patch(users_url(p.id, p.users["emp"]), json={"roles": []}), 403,
                   "forbidden-role")
    assert_problem(ua.delete(users_url(p.id, p.users["emp"])), 403, "forbidden-role")
    assert db_val("SELECT roles FROM users WHERE id = %s", p.users["emp"]) == ["global_admin"]
    # but a User admin may rename a Global admin (the role does not change)
    r = ua.patch(users_url(p.id, p.users["ga"]), json={"display_name": "Renamed"})
    assert r.status_code == 200 and r.json()["roles"] == ["global_admin"]


def test_last_global_admin_cannot_be_demoted_or_removed(op):
    doc, ga = onboard(op)
    pid, uid = doc["id"], doc["global_admin"]["id"]
    assert_problem(ga.patch(users_url(pid, uid), json={"roles": ["user_admin"]}), 409,
                   "conflict")
    assert_problem(ga.delete(users_url(pid, uid)), 409, "conflict")
    assert db_val("SELECT roles FROM users WHERE id = %s", uid) == ["global_admin"]
    # with a second Global admin, the first can step down and then be removed
    r = ga.post(users_url(pid), json=user_body(roles=["global_admin"]))
    assert r.status_code == 201
    second = Client(BASE, token(r.json()["id"], pid, ["global_admin"]))
    assert ga.patch(users_url(pid, uid), json={"roles": ["user_admin"]}).status_code == 200
    assert_problem(second.patch(users_url(pid, r.json()["id"]), json={"roles": []}), 409,
                   "conflict")
    assert second.delete(users_url(pid, uid)).status_code == 204
    assert db_val("SELECT count(*) FROM users WHERE partner_id = %s AND "
                  "'global_admin' = ANY (roles)", pid) == 1


def test_two_global_admins_demoting_each_other_at_once_leave_one():
    """Of two concurrent demotions of the last two Global admins, one is refused. The test holds
    both user rows locked so that both requests are inside their transactions at once; without
    the partner row lock both would count the other as a remaining Global admin."""
    import threading
    import time

    from helpers import db_connect
    p = fresh_partner()
    ga = p.client("ga")
    assert ga.patch(users_url(p.id, p.users["emp"]),
                    json={"roles": ["global_admin"]}).status_code == 200
    second = Client(BASE, token(p.users["emp"], p.id, ["global_admin"]))
    results = []

    def demote(c, uid):
        results.append(c.patch(users_url(p.id, uid), json={"roles": []}).status_code)

    def waiting(n):
        # pg_stat_activity is read once per transaction: poll outside the one holding the locks
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            if db_val("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                      "AND application_name = 'mpn-benefits' "
                      "AND datname = current_database()") >= n:
                return
            time.sleep(0.05)
        raise AssertionError(f"fewer than {n} requests waited on the users' locks")

    ts = [threading.Thread(target=demote, args=(ga, p.users["emp"])),
          threading.Thread(target=demote, args=(second, p.users["ga"]))]
    hold = db_connect()
    hold.autocommit = False
    try:
        with hold.cursor() as cur:
            cur.execute("SELECT 1 FROM users WHERE id IN (%s, %s) FOR UPDATE",
                        (p.users["ga"], p.users["emp"]))
            # one after the other, so that each request is served by its own worker
            for n, t in enumerate(ts, 1):
                t.start()
                waiting(n)
        hold.commit()
    finally:
        hold.close()
    for t in ts:
        t.join(30)
    assert sorted(results) == [200, 409]
    assert db_val("SELECT count(*) FROM users WHERE partner_id = %s AND "
                  "'global_admin' = ANY (roles)", p.id) == 1


def _buy_action_pack(p) -> list[dict]:
    r = p.client("ga").post(f"/v1/partners/{p.id}/purchases", json={"package_id": ACTION_PACK})
    assert r.status_code == 201, r.text
    return r.json()["benefit_ids"]


def test_deleting_a_user_releases_their_seats_in_the_same_transaction():
    p = fresh_partner()
    _buy_action_pack(p)
    bid = db_val("SELECT id::text FROM benefits WHERE partner_id = %s AND product_id = %s",
                 p.id, VS_PRO)
    uid = p.users["aa"]
    db_exec("INSERT INTO seat_assignments (benefit_id, user_id, assigned_by) VALUES (%s, %s, 'test')",
            bid, uid)
    db_exec("INSERT INTO seat_assignments (benefit_id, user_id, assigned_by) VALUES (%s, %s, 'test')",
            bid, p.users["pa"])
    assert db_val("SELECT used FROM benefits WHERE id = %s", bid) == 2
    r = p.client("ua").delete(users_url(p.id, uid))
    assert r.status_code == 204, r.text
    assert r.content == b""
    assert db_val("SELECT count(*) FROM users WHERE id = %s", uid) == 0
    assert db_val("SELECT count(*) FROM seat_assignments WHERE user_id = %s", uid) == 0
    assert db_val("SELECT used FROM benefits WHERE id = %s", bid) == 1
    assert p.client("ga").get(f"/v1/partners/{p.id}/benefits/{bid}").json()["used"] == 1
    assert_problem(p.client("ga").get(users_url(p.id, uid)), 404, "not-found")
    assert_problem(p.client("ga").delete(users_url(p.id, uid)), 404, "not-found")


def test_deleting_the_holder_of_the_last_seat_makes_the_benefit_available_again():
    """As removing the last seat does (sql/016: the seat trigger keeps the status)."""
    p = fresh_partner()
    _buy_action_pack(p)
    bid = db_val("SELECT id::text FROM benefits WHERE partner_id = %s AND product_id = %s",
                 p.id, VS_PRO)
    uid = p.users["aa"]
    db_exec("INSERT INTO seat_assignments (benefit_id, user_id, assigned_by) VALUES (%s, %s, 'test')",
            bid, uid)
    assert db_one("SELECT status, used, activated_at IS NOT NULL FROM benefits WHERE id = %s",
                  bid) == ("active", 1, True)
    r = p.client("ua").delete(users_url(p.id, uid))
    assert r.status_code == 204, r.text
    assert db_one("SELECT status, used, activated_at FROM benefits WHERE id = %s",
                  bid) == ("available", 0, None)
    doc = p.client("ga").get(f"/v1/partners/{p.id}/benefits/{bid}").json()
    assert (doc["status"], doc["used"]) == ("available", 0)


def test_the_marketing_contact_cannot_be_deleted():
    p = fresh_partner()
    uid = p.users["pa"]
    db_exec("INSERT INTO marketing_contacts (partner_id, user_id, email, phone, "
            "preferred_language) VALUES (%s, %s, 'mkt@example.org', '+14255550100', 'en-US')",
            p.id, uid)
    problem = assert_problem(p.client("ga").delete(users_url(p.id, uid)), 409, "conflict")
    assert "marketing contact" in problem["detail"]
    assert db_val("SELECT count(*) FROM users WHERE id = %s", uid) == 1


def test_user_management_works_for_a_pmc_partner():
    p = fresh_partner(location="pmc")
    ga = p.client("ga")
    r = ga.post(users_url(p.id), json=user_body(roles=["admin_agent"]))
    assert r.status_code == 201, r.text
    uid = r.json()["id"]
    assert ga.get(users_url(p.id)).status_code == 200
    assert ga.patch(users_url(p.id, uid), json={"roles": []}).status_code == 200
    assert ga.delete(users_url(p.id, uid)).status_code == 204
    assert db_val("SELECT count(*) FROM users WHERE id = %s", uid) == 0


def test_demo_fabrikam_users_are_readable_by_its_global_admin(fab_ga):
    r = fab_ga.get(users_url(FABRIKAM))
    assert r.status_code == 200
    assert [u["email"] for u in r.json()["items"]] == ["ga@fabrikam.example"]


def test_operator_reads_but_does_not_manage_users(op):
    p = fresh_partner()
    assert op.get(users_url(p.id, p.users["ga"])).status_code == 200
    assert_problem(op.post(users_url(p.id), json=user_body()), 403, "forbidden-role")
