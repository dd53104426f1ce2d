"""Role grants (issue 11, DESIGN §4b): a caller grants or removes only roles it holds itself,
except a Global admin, who grants and removes any partner role; otherwise 403 `forbidden-role`
and nothing changes. Before, a User admin could make itself MPN partner admin."""
from __future__ import annotations

from fresh_partner import fresh_partner
from helpers import BASE, Client, assert_problem, db_val, token


def users(pid: str, uid: str = "") -> str:
    return f"/v1/partners/{pid}/users" + (f"/{uid}" if uid else "")


def body(tag: str, roles: list[str]) -> dict:
    return {"email": f"grant-{tag}@fresh.example", "display_name": f"Grant {tag}", "roles": roles}


def test_user_admin_cannot_make_itself_mpn_partner_admin():
    p = fresh_partner()
    me = p.users["user_admin"]
    ua = Client(BASE, token(me, p.partner, ["user_admin"]))
    r = ua.patch(users(p.partner, me), json={"roles": ["user_admin", "mpn_partner_admin"]})
    problem = assert_problem(r, 403, "forbidden-role")
    assert "mpn_partner_admin" in problem["detail"]
    assert db_val("SELECT roles FROM users WHERE id = %s", me) == ["user_admin"]


def test_user_admin_grants_and_removes_only_its_own_roles():
    p = fresh_partner()
    ua = Client(BASE, token(p.users["user_admin"], p.partner, ["user_admin"]))
    for role in ("admin_agent", "mpn_partner_admin", "global_admin"):
        n = db_val("SELECT count(*) FROM users WHERE partner_id = %s", p.partner)
        assert_problem(ua.post(users(p.partner), json=body(f"{role}-{p.partner[:8]}", [role])),
                       403, "forbidden-role")
        assert db_val("SELECT count(*) FROM users WHERE partner_id = %s", p.partner) == n
        assert_problem(ua.patch(users(p.partner, p.users["employee"]), json={"roles": [role]}),
                       403, "forbidden-role")
    assert db_val("SELECT roles FROM users WHERE id = %s", p.users["employee"]) == []
    # removing a role it does not hold: refused as well
    assert_problem(ua.patch(users(p.partner, p.users["admin_agent"]), json={"roles": []}), 403,
                   "forbidden-role")
    assert db_val("SELECT roles FROM users WHERE id = %s", p.users["admin_agent"]) == [
        "admin_agent"]
    # its own role: granted and removed
    r = ua.patch(users(p.partner, p.users["employee"]), json={"roles": ["user_admin"]})
    assert r.status_code == 200 and r.json()["roles"] == ["user_admin"], r.text
    r = ua.patch(users(p.partner, p.users["employee"]), json={"roles": []})
    assert r.status_code == 200 and r.json()["roles"] == [], r.text
    # a change of the display name only touches no role
    r = ua.patch(users(p.partner, p.users["admin_agent"]), json={"display_name": "Renamed"})
    assert r.status_code == 200, r.text


def test_a_caller_with_two_roles_grants_both():
    p = fresh_partner()
    uid = p.users["user_admin"]
    ga = Client(BASE, token(p.users["global_admin"], p.partner, ["global_admin"]))
    assert ga.patch(users(p.partner, uid),
                    json={"roles": ["user_admin", "admin_agent"]}).status_code == 200
    both = Client(BASE, token(uid, p.partner, ["user_admin", "admin_agent"]))
    r = both.post(users(p.partner), json=body(f"both-{p.partner[:8]}", ["admin_agent",
                                                                        "user_admin"]))
    assert r.status_code == 201, r.text
    assert r.json()["roles"] == ["user_admin", "admin_agent"]
    assert_problem(both.post(users(p.partner), json=body(f"pa-{p.partner[:8]}",
                                                         ["mpn_partner_admin"])),
                   403, "forbidden-role")


def test_global_admin_grants_and_removes_any_partner_role():
    p = fresh_partner()
    ga = Client(BASE, token(p.users["global_admin"], p.partner, ["global_admin"]))
    roles = ["global_admin", "user_admin", "admin_agent", "mpn_partner_admin"]
    r = ga.patch(users(p.partner, p.users["employee"]), json={"roles": roles})
    assert r.status_code == 200 and r.json()["roles"] == roles, r.text
    r = ga.patch(users(p.partner, p.users["employee"]), json={"roles": []})
    assert r.status_code == 200 and r.json()["roles"] == [], r.text
