"""Seat assignments (issue 4, R2, R6, R7): Visual Studio seats assigned by the Global admin,
usage-based cloud (Azure) activated by assigning yourself, never more seats than bought.

Every test builds its own partner, users and benefits with SQL (see Tenant), so the demo
partner's data stays as other test files expect it."""
import uuid

import pytest

from helpers import (BASE, CONTOSO, EMP_ID, FABRIKAM, FAB_GA_ID, GA_ID, Client, assert_problem,
                     db_all, db_one, db_val, idem, token)

GOLD_PACKAGE = "bbbbbbbb-0000-4000-8000-000000000003"
WINDOWS_SERVER = "aaaaaaaa-0000-4000-8000-000000000001"  # software
AZURE = "aaaaaaaa-0000-4000-8000-000000000004"  # cloud, usage_based
M365 = "aaaaaaaa-0000-4000-8000-000000000005"  # cloud, license_based
VS_ENTERPRISE = "aaaaaaaa-0000-4000-8000-000000000006"  # visual_studio
TECH_INCIDENTS = "aaaaaaaa-0000-4000-8000-000000000008"  # technical


class Tenant:
    """A fresh partner (in Partner Center unless told) with users and one active purchase whose
    benefits the test chooses: `t.benefit(product_id, quantity)` returns the benefit id.

    users[0] is a Global admin, users[1] an MPN partner admin, users[2] an Admin agent,
    users[3] a User admin, the rest have no role. `t.client(i)` is users[i] through Prism."""

    ROLES = (["global_admin"], ["mpn_partner_admin"], ["admin_agent"], ["user_admin"])

    def __init__(self, n_users: int = 6, location: str = "partner_center"):
        tag = uuid.uuid4().hex[:10]
        self.id = db_val(
            "INSERT INTO partners (mpn_id, name, account_email, membership_location, level) "
            "VALUES (%s, %s, %s, %s, 'gold') RETURNING id::text",
            10**9 + uuid.uuid4().int % 10**11, f"Seats test {tag}", f"owner-{tag}@example.com",
            location)
        self.users: list[str] = []
        self.roles: list[list[str]] = []
        for i in range(n_users):
            roles = self.ROLES[i] if i < len(self.ROLES) else []
            self.users.append(db_val(
                "INSERT INTO users (partner_id, email, display_name, roles) "
                "VALUES (%s, %s, %s, %s) RETURNING id::text",
                self.id, f"u{i}-{tag}@example.com", f"User {i}", roles))
            self.roles.append(roles)
        self.purchase = db_val(
            "INSERT INTO purchases (partner_id, package_id, term_end, created_by) "
            "VALUES (%s, %s, now() + interval '1 year', 'test') RETURNING id::text",
            self.id, GOLD_PACKAGE)

    def benefit(self, product_id: str, quantity: int) -> str:
        return db_val(
            "INSERT INTO benefits (partner_id, purchase_id, product_id, category, quantity) "
            "SELECT %s, %s, p.id, p.category, %s FROM products p WHERE p.id = %s "
            "RETURNING id::text", self.id, self.purchase, quantity, product_id)

    def token(self, i: int) -> str:
        return token(self.users[i], self.id, self.roles[i])

    def client(self, i: int, base: str | None = None) -> Client:
        return Client(base or BASE, self.token(i))

    def path(self, benefit_id: str, suffix: str = "") -> str:
        return f"/v1/partners/{self.id}/benefits/{benefit_id}{suffix}"


def seats(benefit_id: str) -> list[str]:
    return [r[0] for r in db_all("SELECT user_id::text FROM seat_assignments "
                                 "WHERE benefit_id = %s ORDER BY user_id", benefit_id)]


def used_status(benefit_id: str) -> tuple:
    return db_one("SELECT used, status FROM benefits WHERE id = %s", benefit_id)


# --- Visual Studio seats (R7) ----------------------------------------------------------------

@pytest.mark.seed("S02", "S22", "S25")
def test_global_admin_assigns_visual_studio_seat_and_benefit_shows_used():
    t = Tenant()
    b = t.benefit(VS_ENTERPRISE, 3)
    ga = t.client(0)
    r = ga.post(t.path(b, "/assignments"), json={"user_id": t.users[4]}, headers=idem())
    assert r.status_code == 201, r.text
    doc = r.json()
    assert doc["benefit_id"] == b and doc["user_id"] == t.users[4]
    assert doc["product_id"] == VS_ENTERPRISE and doc["category"] == "visual_studio"
    assert doc["portal_url"] == "https://my.visualstudio.com" and doc["assigned_at"]
    assert r.headers["Location"] == t.path(b, f"/assignments/{t.users[4]}")
    assert seats(b) == [t.users[4]]
    assert used_status(b) == (1, "active")
    shown = ga.get(t.path(b)).json()
    assert shown["quantity"] == 3 and shown["used"] == 1 and shown["status"] == "active"
    audit = db_all("SELECT actor, details FROM audit_events WHERE partner_id = %s "
                   "AND action = 'seat.assigned' AND target_id = %s", t.id, b)
    assert audit == [(t.users[0], {"user_id": t.users[4]})]


def test_same_user_twice_is_409_already_assigned():
    t = Tenant()
    b = t.benefit(VS_ENTERPRISE, 3)
    ga = t.client(0)
    assert ga.post(t.path(b, "/assignments"), json={"user_id": t.users[4]}).status_code == 201
    assert_problem(ga.post(t.path(b, "/assignments"), json={"user_id": t.users[4]}), 409,
                   "already-assigned")
    assert seats(b) == [t.users[4]] and used_status(b) == (1, "active")


@pytest.mark.seed("S24")
def test_no_seat_left_is_409_no_seats_available():
    t = Tenant()
    b = t.benefit(VS_ENTERPRISE, 2)
    ga = t.client(0)
    for u in t.users[4:6]:
        assert ga.post(t.path(b, "/assignments"), json={"user_id": u}).status_code == 201
    body = assert_problem(ga.post(t.path(b, "/assignments"), json={"user_id": t.users[3]}), 409,
                          "no-seats-available")
    assert "remove" in body["detail"]
    assert seats(b) == sorted(t.users[4:6]) and used_status(b) == (2, "active")


@pytest.mark.seed("S26")
def test_removing_frees_the_seat_at_once_and_reassigning_is_remove_plus_assign():
    t = Tenant()
    b = t.benefit(VS_ENTERPRISE, 1)
    ga = t.client(0)
    assert ga.post(t.path(b, "/assignments"), json={"user_id": t.users[4]}).status_code == 201
    assert_problem(ga.post(t.path(b, "/assignments"), json={"user_id": t.users[5]}), 409,
                   "no-seats-available")
    r = ga.delete(t.path(b, f"/assignments/{t.users[4]}"))
    assert r.status_code == 204 and r.content == b""
    assert seats(b) == [] and used_status(b) == (0, "available")
    assert ga.get(t.path(b)).json()["used"] == 0
    assert ga.post(t.path(b, "/assignments"), json={"user_id": t.users[5]}).status_code == 201
    assert seats(b) == [t.users[5]] and used_status(b) == (1, "active")
    assert_problem(ga.delete(t.path(b, f"/assignments/{t.users[4]}")), 404, "not-found")
    assert db_val("SELECT count(*) FROM audit_events WHERE target_id = %s "
                  "AND action = 'seat.removed'", b) == 1


@pytest.mark.seed("S03")
def test_partner_admin_cannot_assign_or_remove_visual_studio_seats():
    t = Tenant()
    b = t.benefit(VS_ENTERPRISE, 3)
    pa = t.client(1)
    body = assert_problem(pa.post(t.path(b, "/assignments"), json={"user_id": t.users[4]}), 403,
                          "forbidden-role")
    assert "Global admin" in body["detail"]
    assert seats(b) == [] and used_status(b) == (0, "available")
    assert t.client(0).post(t.path(b, "/assignments"),
                            json={"user_id": t.users[4]}).status_code == 201
    assert_problem(pa.delete(t.path(b, f"/assignments/{t.users[4]}")), 403, "forbidden-role")
    assert seats(b) == [t.users[4]]


@pytest.mark.parametrize("who", [2, 3, 4])  # admin agent, user admin, no role
@pytest.mark.seed("S03")
def test_other_roles_cannot_assign_or_remove(who):
    t = Tenant()
    vs = t.benefit(VS_ENTERPRISE, 3)
    azure = t.benefit(AZURE, 1)
    c = t.client(who)
    for b in (vs, azure):
        assert_problem(c.post(t.path(b, "/assignments"), json={"user_id": t.users[who]}), 403,
                       "forbidden-role")
        assert_problem(c.delete(t.path(b, f"/assignments/{t.users[who]}")), 403,
                       "forbidden-role")
        assert seats(b) == []


@pytest.mark.seed("S23")
def test_user_from_another_partner_is_422_user_not_in_partner():
    t = Tenant()
    b = t.benefit(VS_ENTERPRISE, 3)
    ga = t.client(0)
    for user in (GA_ID, EMP_ID, FAB_GA_ID, str(uuid.uuid4()), "not-a-uuid"):
        body = assert_problem(ga.post(t.path(b, "/assignments"), json={"user_id": user}), 422,
                              "user-not-in-partner")
        assert "Account settings" in body["detail"]
    assert seats(b) == [] and used_status(b) == (0, "available")


# --- usage-based cloud: assign yourself (R6) ------------------------------------------------

@pytest.mark.parametrize("who", [0, 1])  # Global admin, MPN partner admin
@pytest.mark.seed("S18", "S19")
def test_admin_self_assigns_azure_and_gets_the_portal_link(who):
    t = Tenant()
    b = t.benefit(AZURE, 1)
    c = t.client(who)
    r = c.post(t.path(b, "/assignments"), json={"user_id": t.users[who]})
    assert r.status_code == 201, r.text
    assert r.json()["portal_url"] == "https://portal.azure.com"
    assert r.json()["category"] == "cloud"
    assert seats(b) == [t.users[who]] and used_status(b) == (1, "active")
    me = c.get("/v1/me").json()
    assert [a["benefit_id"] for a in me["assignments"]] == [b]
    assert me["assignments"][0]["portal_url"] == "https://portal.azure.com"


@pytest.mark.parametrize("who", [0, 1])
@pytest.mark.seed("S18")
def test_assigning_someone_else_to_azure_is_422(who):
    t = Tenant()
    b = t.benefit(AZURE, 2)
    body = assert_problem(t.client(who).post(t.path(b, "/assignments"),
                                             json={"user_id": t.users[4]}),
                          422, "validation-failed")
    assert "yourself" in body["detail"] and body["errors"][0]["field"] == "user_id"
    assert seats(b) == []


def test_partner_admin_removes_own_azure_assignment_but_not_anothers():
    t = Tenant()
    b = t.benefit(AZURE, 2)
    ga, pa = t.client(0), t.client(1)
    assert ga.post(t.path(b, "/assignments"), json={"user_id": t.users[0]}).status_code == 201
    assert pa.post(t.path(b, "/assignments"), json={"user_id": t.users[1]}).status_code == 201
    assert_problem(pa.delete(t.path(b, f"/assignments/{t.users[0]}")), 403, "forbidden-role")
    assert pa.delete(t.path(b, f"/assignments/{t.users[1]}")).status_code == 204
    assert seats(b) == [t.users[0]] and used_status(b) == (1, "active")
    # the Global admin may remove anyone's
    assert ga.delete(t.path(b, f"/assignments/{t.users[0]}")).status_code == 204
    assert used_status(b) == (0, "available")


# --- GET /v1/me and listing ------------------------------------------------------------------

def test_me_lists_the_callers_own_assignments_only():
    t = Tenant()
    vs = t.benefit(VS_ENTERPRISE, 3)
    azure = t.benefit(AZURE, 1)
    ga = t.client(0)
    assert ga.post(t.path(vs, "/assignments"), json={"user_id": t.users[4]}).status_code == 201
    assert ga.post(t.path(vs, "/assignments"), json={"user_id": t.users[5]}).status_code == 201
    assert ga.post(t.path(azure, "/assignments"), json={"user_id": t.users[0]}).status_code == 201
    me = t.client(4).get("/v1/me").json()
    assert me["user_id"] == t.users[4] and me["roles"] == []
    assert [(a["benefit_id"], a["user_id"], a["category"]) for a in me["assignments"]] == \
        [(vs, t.users[4], "visual_studio")]
    mine = ga.get("/v1/me").json()["assignments"]
    assert [a["benefit_id"] for a in mine] == [azure]
    assert t.client(3).get("/v1/me").json()["assignments"] == []


def test_list_assignments_pages_for_read_roles():
    t = Tenant(n_users=8)
    b = t.benefit(VS_ENTERPRISE, 5)
    ga = t.client(0)
    for u in t.users[3:8]:
        assert ga.post(t.path(b, "/assignments"), json={"user_id": u}).status_code == 201
    for who in (0, 1, 2, 3):
        seen, cursor = [], None
        for _ in range(10):
            params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            r = t.client(who).get(t.path(b, "/assignments"), params=params)
            assert r.status_code == 200, r.text
            page = r.json()
            assert len(page["items"]) <= 2
            seen += [a["user_id"] for a in page["items"]]
            cursor = page["next_cursor"]
            if not cursor:
                break
        assert seen == sorted(t.users[3:8])
    assert_problem(t.client(4).get(t.path(b, "/assignments")), 403, "forbidden-role")
    assert_problem(ga.get(t.path(b, "/assignments"), params={"cursor": "%%"}), 422,
                   "validation-failed")


# --- benefits without seats, closed benefits, tenants ---------------------------------------

@pytest.mark.parametrize("product", [WINDOWS_SERVER, M365, TECH_INCIDENTS])
def test_benefit_without_seats_is_422(product):
    t = Tenant()
    b = t.benefit(product, 2)
    ga = t.client(0)
    assert_problem(ga.get(t.path(b, "/assignments")), 422, "validation-failed")
    body = assert_problem(ga.post(t.path(b, "/assignments"), json={"user_id": t.users[0]}), 422,
                          "validation-failed")
    assert "Visual Studio" in body["detail"]
    assert_problem(ga.delete(t.path(b, f"/assignments/{t.users[0]}")), 422, "validation-failed")
    assert seats(b) == []


@pytest.mark.parametrize("who", [2, 3])  # Admin agent, User admin
@pytest.mark.seed("S29")
def test_technical_benefit_is_403_for_roles_that_may_not_see_it(who):
    """R8: the roles that do not see technical benefits in the list get 403 from every route that
    names one (as from GET .../benefits/{b}), not a 422 telling what the benefit is."""
    t = Tenant()
    b = t.benefit(TECH_INCIDENTS, 2)
    c = t.client(who)
    for r in (c.get(t.path(b)), c.get(t.path(b, "/assignments")),
              c.post(t.path(b, "/assignments"), json={"user_id": t.users[who]}),
              c.delete(t.path(b, f"/assignments/{t.users[who]}")),
              c.post(t.path(b, "/keys"), json={"language": "English", "os": "x64"})):
        body = assert_problem(r, 403, "forbidden-role")
        assert "Global admin" in body["detail"] and "errors" not in body
    assert seats(b) == []
    assert db_val("SELECT count(*) FROM audit_events WHERE target_id = %s", b) == 0


def test_expired_or_cancelled_benefit_is_409_benefit_expired():
    t = Tenant()
    expired = t.benefit(VS_ENTERPRISE, 3)
    cancelled = t.benefit(AZURE, 1)
    db_val("UPDATE benefits SET expires_at = now() - interval '1 day' WHERE id = %s "
           "RETURNING 1", expired)
    db_val("UPDATE benefits SET status = 'cancelled' WHERE id = %s RETURNING 1", cancelled)
    ga = t.client(0)
    assert_problem(ga.post(t.path(expired, "/assignments"), json={"user_id": t.users[4]}), 409,
                   "benefit-expired")
    assert_problem(ga.post(t.path(cancelled, "/assignments"), json={"user_id": t.users[0]}),
                   409, "benefit-expired")
    assert seats(expired) == [] and seats(cancelled) == []


def test_other_partners_benefits_are_404_and_pmc_is_409(fab_ga):
    t = Tenant()
    b = t.benefit(VS_ENTERPRISE, 3)
    contoso_ga = Client(BASE, token(GA_ID, CONTOSO, ["global_admin"]))
    assert_problem(contoso_ga.post(t.path(b, "/assignments"), json={"user_id": GA_ID}), 404,
                   "not-found")
    # a benefit of another partner under one's own partner URL
    assert_problem(contoso_ga.post(f"/v1/partners/{CONTOSO}/benefits/{b}/assignments",
                                   json={"user_id": GA_ID}), 404, "not-found")
    assert_problem(contoso_ga.get(f"/v1/partners/{CONTOSO}/benefits/{b}/assignments"), 404,
                   "not-found")
    assert_problem(contoso_ga.delete(f"/v1/partners/{CONTOSO}/benefits/{b}/assignments/{GA_ID}"),
                   404, "not-found")
    pmc = Tenant(location="pmc")
    pb = pmc.benefit(VS_ENTERPRISE, 3)
    assert_problem(pmc.client(0).post(pmc.path(pb, "/assignments"),
                                      json={"user_id": pmc.users[4]}), 409, "membership-in-pmc")
    assert_problem(fab_ga.get(f"/v1/partners/{FABRIKAM}/benefits/{b}/assignments"), 409,
                   "membership-in-pmc")
    assert seats(b) == [] and seats(pb) == []


def test_bad_assignment_bodies_are_422_or_400():
    t = Tenant()
    b = t.benefit(VS_ENTERPRISE, 3)
    ga = t.client(0)
    for body in ({}, {"user_id": 5}, {"user_id": t.users[4], "seat": 1}, {"user_id": None}):
        assert_problem(ga.post(t.path(b, "/assignments"), json=body), 422, "validation-failed")
    r = ga.direct.post(t.path(b, "/assignments"), data='{"user_id":',
                       headers={"Content-Type": "application/json"})
    assert_problem(r, 400, "malformed-json")
    assert_problem(ga.post(t.path(b, "/assignments"), data="user_id=x",
                           headers={"Content-Type": "text/plain"}), 415,
                   "unsupported-media-type")
    assert_problem(ga.delete(t.path(b, "/assignments/not-a-uuid")), 404, "not-found")
    assert seats(b) == []


def test_assignment_replay_with_same_idempotency_key_assigns_once():
    t = Tenant()
    b = t.benefit(VS_ENTERPRISE, 3)
    ga = t.client(0)
    h = idem()
    first = ga.post(t.path(b, "/assignments"), json={"user_id": t.users[4]}, headers=h)
    again = ga.post(t.path(b, "/assignments"), json={"user_id": t.users[4]}, headers=h)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.headers.get("Idempotent-Replayed") == "true"
    assert used_status(b) == (1, "active")
