"""Issue 12, point 2: GET /v1/partners/{partnerId}/events (DESIGN §4b): the partner's events
oldest first, `after`, `types`, `limit` and `cursor`; roles global_admin, mpn_partner_admin and
the operator (the role matrix checks the others get 403)."""
from __future__ import annotations

import pytest

from fresh_partner import fresh_partner
from helpers import BASE, Client, assert_problem, db_val, operator_token, token


@pytest.fixture(scope="module")
def fp():
    f = fresh_partner()
    c = Client(BASE, token(f.users["global_admin"], f.partner, ["global_admin"]))
    emp = f.users["employee"]
    for k in range(5):
        r = c.patch(f"/v1/partners/{f.partner}/users/{emp}", json={"display_name": f"Feed {k}"})
        assert r.status_code == 200, r.text
    r = c.put(f"/v1/partners/{f.partner}/marketing-contact",
              json={"user_id": f.users["mpn_partner_admin"], "email": f"mkt-{f.partner[:8]}@x.example",
                    "phone": "+14255550123", "preferred_language": "en-US"})
    assert r.status_code == 200, r.text
    yield f, c
    c.close()


def _all(c: Client, partner: str, **params) -> list[dict]:
    items, cursor = [], None
    while True:
        q = dict(params)
        if cursor:
            q["cursor"] = cursor
        r = c.get(f"/v1/partners/{partner}/events", params=q)
        assert r.status_code == 200, r.text
        body = r.json()
        items += body["items"]
        cursor = body["next_cursor"]
        if not cursor:
            return items


def test_feed_lists_every_event_oldest_first_in_pages(fp):
    f, c = fp
    items = _all(c, f.partner, limit=2)
    n = db_val("SELECT count(*) FROM events WHERE partner_id = %s", f.partner)
    assert len(items) == n >= 6
    ids = [e["id"] for e in items]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert [int(i) for i in ids] == sorted(int(i) for i in ids)
    assert [e["type"] for e in items[-6:]] == ["user.updated"] * 5 + ["marketing_contact.updated"]
    assert items[-2]["data"]["display_name"] == "Feed 4"
    assert all(e["partner_id"] == f.partner for e in items)


def test_after_gives_only_newer_events(fp):
    f, c = fp
    items = _all(c, f.partner)
    mid = items[-3]["id"]
    after = _all(c, f.partner, after=mid)
    assert [e["id"] for e in after] == [e["id"] for e in items[-2:]]
    assert _all(c, f.partner, after=items[-1]["id"]) == []


def test_types_filter(fp):
    f, c = fp
    got = _all(c, f.partner, types="marketing_contact.updated")
    assert [e["type"] for e in got] == ["marketing_contact.updated"]
    both = _all(c, f.partner, types="user.updated,marketing_contact.updated")
    assert {e["type"] for e in both} == {"user.updated", "marketing_contact.updated"}
    assert len(both) == 6


def test_operator_and_partner_admin_read_it(fp):
    f, _ = fp
    for tok in (operator_token(), token(f.users["mpn_partner_admin"], f.partner,
                                        ["mpn_partner_admin"])):
        r = Client(BASE, tok).get(f"/v1/partners/{f.partner}/events")
        assert r.status_code == 200 and len(r.json()["items"]) >= 6, r.text


def test_other_roles_and_partners_get_nothing(fp, ga):
    f, _ = fp
    aa = Client(BASE, token(f.users["admin_agent"], f.partner, ["admin_agent"]))
    assert_problem(aa.get(f"/v1/partners/{f.partner}/events"), 403, "forbidden-role")
    # Contoso's Global admin does not see this partner's events
    assert_problem(ga.get(f"/v1/partners/{f.partner}/events"), 404, "not-found")


@pytest.mark.parametrize("params", [{"after": "abc"}, {"after": "-1"}, {"types": "nope.nope"},
                                    {"types": "user.updated,"}, {"limit": "0"},
                                    {"cursor": "!!"}])
def test_bad_query_is_422(fp, params):
    f, c = fp
    assert_problem(c.get(f"/v1/partners/{f.partner}/events", params=params), 422,
                   "validation-failed")
