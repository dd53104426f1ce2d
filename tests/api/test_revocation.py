"""Token revocation (issue 11, DESIGN §4b) over two service processes: the suite's service (reached
through Prism) and a second replica (helpers.spawn_server) on the same database. Deleting a
user, removing one of their roles, and the two revoke-tokens routes refuse that user's (that
partner's) tokens issued before the moment, on both, within a second: each process holds the
revocations in memory and LISTENs for new ones. The latency is measured and printed (the
tests assert the outcome, not a time bound). A token issued in the very second of a revocation
is refused too (iat has whole seconds), so the tests wait a second before minting new ones."""
from __future__ import annotations

import re
import time

import pytest
import requests

from fresh_partner import fresh_partner
from helpers import (BASE, DIRECT, Client, assert_problem, db_one, db_val, idem, operator_token,
                     spawn_server, token)

ME = "/v1/me"


@pytest.fixture(scope="module")
def replica():
    s = spawn_server()
    try:
        yield s
        s.stop()
    finally:
        s.kill()


def status(base: str, tok: str) -> int:
    return requests.get(base + ME, headers={"Authorization": f"Bearer {tok}"}, timeout=30).status_code


def refused_everywhere(bases: list[str], tok: str, what: str, t0: float, timeout: float = 10):
    """Polls every base until tok answers 401 there; returns the latest latency (s)."""
    latest = 0.0
    for base in bases:
        end = time.monotonic() + timeout
        while status(base, tok) != 401:
            assert time.monotonic() < end, f"{what}: token still accepted by {base}"
            time.sleep(0.01)
        latest = max(latest, time.monotonic() - t0)
    print(f"\n{what}: refused on {len(bases)} processes {latest * 1000:.0f} ms after the answer")
    return latest


def detail_401(base: str, tok: str) -> str:
    r = requests.get(base + ME, headers={"Authorization": f"Bearer {tok}"}, timeout=30)
    return assert_problem(r, 401, "unauthenticated")["detail"]


def new_token(p, role: str, roles=None) -> str:
    time.sleep(1.05)  # past the second of the revocation
    return token(p.users[role], p.partner, [role] if roles is None else roles)


def test_deleted_users_tokens_are_refused_on_every_replica(replica):
    p = fresh_partner()
    victim = token(p.users["admin_agent"], p.partner, ["admin_agent"])
    other = token(p.users["mpn_partner_admin"], p.partner, ["mpn_partner_admin"])
    bases = [DIRECT, replica.url]
    for b in bases:  # accepted (and in each process's verified-token cache)
        assert status(b, victim) == 200 and status(b, other) == 200
    ga = Client(BASE, token(p.users["global_admin"], p.partner, ["global_admin"]))
    r = ga.delete(f"/v1/partners/{p.partner}/users/{p.users['admin_agent']}")
    assert r.status_code == 204, r.text
    t0 = time.monotonic()
    refused_everywhere(bases, victim, "deleted user", t0)
    assert db_one("SELECT user_id FROM token_revocations WHERE partner_id = %s",
                  p.partner) == (p.users["admin_agent"],)
    for b in bases:
        assert "revoked" in detail_401(b, victim)
        assert status(b, other) == 200  # nobody else


def test_removing_a_role_refuses_the_old_token_and_a_new_one_has_the_remaining_roles(replica):
    p = fresh_partner()
    uid = p.users["mpn_partner_admin"]
    ga = Client(BASE, token(p.users["global_admin"], p.partner, ["global_admin"]))
    assert ga.patch(f"/v1/partners/{p.partner}/users/{uid}",
                    json={"roles": ["mpn_partner_admin", "admin_agent"]}).status_code == 200
    old = new_token(p, "mpn_partner_admin", ["mpn_partner_admin", "admin_agent"])
    bases = [DIRECT, replica.url]
    for b in bases:
        assert status(b, old) == 200
    r = ga.patch(f"/v1/partners/{p.partner}/users/{uid}", json={"roles": ["admin_agent"]})
    assert r.status_code == 200 and r.json()["roles"] == ["admin_agent"], r.text
    t0 = time.monotonic()
    refused_everywhere(bases, old, "role removed", t0)
    # the provider issues the next token from the user's remaining roles
    assert db_val("SELECT roles FROM users WHERE id = %s", uid) == ["admin_agent"]
    fresh = new_token(p, "mpn_partner_admin", ["admin_agent"])
    for b in bases:
        me = requests.get(b + ME, headers={"Authorization": f"Bearer {fresh}"}, timeout=30)
        assert me.status_code == 200 and me.json()["roles"] == ["admin_agent"], me.text
    # adding a role revokes nothing
    assert ga.patch(f"/v1/partners/{p.partner}/users/{uid}",
                    json={"roles": ["admin_agent", "mpn_partner_admin"]}).status_code == 200
    time.sleep(0.3)
    assert all(status(b, fresh) == 200 for b in bases)


def test_revoke_tokens_of_a_user(replica):
    p = fresh_partner()
    victim_id = p.users["employee"]
    victim = token(victim_id, p.partner, [])
    ua_tok = token(p.users["user_admin"], p.partner, ["user_admin"])
    bases = [DIRECT, replica.url]
    for b in bases:
        assert status(b, victim) == 200
    ua = Client(BASE, ua_tok)
    r = ua.post(f"/v1/partners/{p.partner}/users/{victim_id}/revoke-tokens", headers=idem())
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["partner_id"] == p.partner and doc["user_id"] == victim_id and doc["revoked_at"]
    t0 = time.monotonic()
    refused_everywhere(bases, victim, "revoke-tokens (user)", t0)
    assert db_val("SELECT count(*) FROM audit_events WHERE action = 'user.tokens_revoked' "
                  "AND target_id = %s", victim_id) == 1
    for b in bases:
        assert status(b, ua_tok) == 200
    # a new sign-in works
    assert all(status(b, new_token(p, "employee", [])) == 200 for b in bases)
    # unknown user, another partner's user, a role without the right
    assert_problem(ua.post(f"/v1/partners/{p.partner}/users/00000000-0000-4000-8000-000000000000"
                           "/revoke-tokens"), 404, "not-found")
    q = fresh_partner()
    assert_problem(ua.post(f"/v1/partners/{q.partner}/users/{q.users['employee']}/revoke-tokens"),
                   404, "not-found")
    pa = Client(BASE, token(p.users["mpn_partner_admin"], p.partner, ["mpn_partner_admin"]))
    assert_problem(pa.post(f"/v1/partners/{p.partner}/users/{victim_id}/revoke-tokens"), 403,
                   "forbidden-role")


def test_operator_revokes_every_token_of_a_partner(replica):
    p, q = fresh_partner(), fresh_partner()
    toks = [token(p.users[r], p.partner, [] if r == "employee" else [r]) for r in p.users]
    bystander = token(q.users["global_admin"], q.partner, ["global_admin"])
    bases = [DIRECT, replica.url]
    for b in bases:
        assert all(status(b, t) == 200 for t in toks + [bystander])
    op = Client(BASE, operator_token())
    r = op.post(f"/v1/admin/partners/{p.partner}/revoke-tokens", headers=idem())
    assert r.status_code == 200, r.text
    assert r.json()["partner_id"] == p.partner and r.json()["user_id"] is None
    t0 = time.monotonic()
    for i, t in enumerate(toks):
        refused_everywhere(bases, t, f"revoke-tokens (partner), user {i}", t0)
    for b in bases:
        assert status(b, bystander) == 200
        assert status(b, operator_token()) == 200
    assert all(status(b, new_token(p, "global_admin")) == 200 for b in bases)
    assert_problem(op.post("/v1/admin/partners/00000000-0000-4000-8000-000000000000/"
                           "revoke-tokens"), 404, "not-found")
    # a process started later loads the revocations from the table
    with spawn_server() as late:
        assert status(late.url, toks[0]) == 401


def test_revocations_reach_the_metrics(replica):
    text = requests.get(replica.url + "/metrics", timeout=10).text
    assert re.search(r"^mpn_token_revocation_listener_up 1$", text, re.M), text
    assert re.search(r"^mpn_token_revocations \d+$", text, re.M), text


def test_revocations_still_arrive_after_the_database_restarted(replica):
    """The LISTEN connection dies with PostgreSQL; each process reconnects (every second) and
    reloads the table, so a revocation made afterwards reaches it too."""
    from helpers import pg_down, wait_http
    p = fresh_partner()
    victim = token(p.users["employee"], p.partner, [])
    bases = [DIRECT, replica.url]
    with pg_down():
        time.sleep(0.5)
    for b in bases:
        wait_http(b + "/readyz", 30)

    def listening(b):
        text = requests.get(b + "/metrics", timeout=10).text
        return re.search(r"^mpn_token_revocation_listener_up 1$", text, re.M) is not None

    end = time.monotonic() + 30
    while not all(listening(b) for b in bases):
        assert time.monotonic() < end, "the revocation listener did not come back"
        time.sleep(0.2)
    for b in bases:
        assert status(b, victim) == 200
    ua = Client(BASE, token(p.users["user_admin"], p.partner, ["user_admin"]))
    r = ua.post(f"/v1/partners/{p.partner}/users/{p.users['employee']}/revoke-tokens",
                headers=idem())
    assert r.status_code == 200, r.text
    refused_everywhere(bases, victim, "revoke-tokens after a database restart", time.monotonic())
