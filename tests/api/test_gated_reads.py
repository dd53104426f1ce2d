"""Partner reads answer the partner gate and the read in one query (issue 7, `mb_gated_query`):
the cases where one of the two halves finds nothing."""
import uuid

from fresh_partner import WINDOWS_SERVER, fresh_partner
from helpers import CONTOSO, FABRIKAM, Client, assert_problem, db_all, db_exec, operator_token

NOBODY = "77777777-7777-4777-8777-777777777777"


def test_operator_on_a_partner_that_does_not_exist_is_404_no_such_partner(base):
    op = Client(base, operator_token())
    for path in (f"/v1/partners/{NOBODY}",
                 f"/v1/partners/{NOBODY}/benefits",
                 f"/v1/partners/{NOBODY}/benefits/{uuid.uuid4()}",
                 f"/v1/partners/{NOBODY}/benefits/not-a-uuid",
                 f"/v1/partners/{NOBODY}/users",
                 f"/v1/partners/{NOBODY}/users/{uuid.uuid4()}",
                 f"/v1/partners/{NOBODY}/purchases",
                 f"/v1/partners/{NOBODY}/purchases/{uuid.uuid4()}",
                 f"/v1/partners/{NOBODY}/activations/{uuid.uuid4()}",
                 f"/v1/partners/{NOBODY}/audit-events"):
        body = assert_problem(op.get(path), 404, "not-found")
        assert body["detail"] == "No such partner.", path


def test_pmc_partner_single_benefit_is_409_for_its_admin_and_the_operator(base):
    """A PMC partner WITH benefits (the demo's Fabrikam has none): its real benefit and its
    list are 409, for its admin and the operator, while the same benefit once the partner is in
    Partner Center is 200: the 409 is the PMC rule, not a missing row."""
    f = fresh_partner(location="pmc")
    bid = next(iter(f.benefits.values()))
    assert db_all("SELECT 1 FROM benefits WHERE id = %s AND partner_id = %s", bid, f.partner)
    for c in (f.client(base), Client(base, operator_token())):
        assert_problem(c.get(f.path(f"/benefits/{bid}")), 409, "membership-in-pmc")
        assert_problem(c.get(f.path("/benefits")), 409, "membership-in-pmc")
    db_exec("UPDATE partners SET membership_location = 'partner_center' WHERE id = %s", f.partner)
    r = f.client(base).get(f.path(f"/benefits/{bid}"))
    assert r.status_code == 200 and r.json()["id"] == bid, r.text


def test_partner_without_benefits_lists_nothing_and_finds_no_benefit(base):
    f = fresh_partner()
    db_exec("DELETE FROM benefits WHERE partner_id = %s", f.partner)
    ga = f.client(base)
    r = ga.get(f.path("/benefits"))
    assert r.status_code == 200, r.text
    assert r.json() == {"items": [], "next_cursor": None}
    for bid in (str(uuid.uuid4()), "not-a-uuid"):
        body = assert_problem(ga.get(f.path(f"/benefits/{bid}")), 404, "not-found")
        assert body["detail"] == "No such benefit."


def test_filters_that_match_nothing_give_an_empty_page(base):
    f = fresh_partner()
    ga = f.client(base)
    r = ga.get(f.path("/benefits"), params={"status": "cancelled"})
    assert r.status_code == 200 and r.json() == {"items": [], "next_cursor": None}
    last = max(f.benefits.values())
    page = ga.get(f.path("/benefits"), params={"limit": 200}).json()
    assert page["next_cursor"] is None and len(page["items"]) == len(f.benefits)
    assert [b["id"] for b in page["items"]] == sorted(f.benefits.values())
    assert page["items"][-1]["id"] == last


def test_pages_of_one_walk_the_benefits_in_id_order(base):
    f = fresh_partner()
    ga = f.client(base)
    seen, cursor = [], None
    for _ in range(len(f.benefits) + 2):
        params = {"limit": 1, **({"cursor": cursor} if cursor else {})}
        page = ga.get(f.path("/benefits"), params=params).json()
        assert len(page["items"]) <= 1
        seen += [b["id"] for b in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(f.benefits.values())


def test_another_partners_benefit_under_own_url_is_404_no_such_benefit(ga):
    other = fresh_partner().benefits[WINDOWS_SERVER]  # a real benefit, of another partner
    assert db_all("SELECT 1 FROM benefits WHERE id = %s AND partner_id <> %s", other, CONTOSO)
    body = assert_problem(ga.get(f"/v1/partners/{CONTOSO}/benefits/{other}"), 404, "not-found")
    assert body["detail"] == "No such benefit."


def test_pmc_partner_purchase_reads_are_409_and_its_users_readable(base, fab_ga):
    f = fresh_partner(location="pmc")
    assert db_all("SELECT 1 FROM purchases WHERE id = %s AND partner_id = %s", f.purchase,
                  f.partner), "the PMC partner must own a real purchase"
    for path in (f.path("/purchases"), f.path(f"/purchases/{f.purchase}")):
        body = assert_problem(f.client(base).get(path), 409, "membership-in-pmc")
        assert "PMC" in body["detail"]
    # users and the partner itself are not behind the PMC rule
    r = fab_ga.get(f"/v1/partners/{FABRIKAM}/users")
    assert r.status_code == 200 and r.json()["items"]
    assert fab_ga.get(f"/v1/partners/{FABRIKAM}").json()["id"] == FABRIKAM


def test_fresh_partner_reads_find_only_their_own_rows(base, ga):
    f = fresh_partner()
    fga = f.client(base)
    # no audit events yet: an empty page, not a page of nothing
    r = fga.get(f.path("/audit-events"))
    assert r.status_code == 200 and r.json() == {"items": [], "next_cursor": None}
    users = fga.get(f.path("/users"), params={"limit": 200}).json()
    assert sorted(u["id"] for u in users["items"]) == sorted(f.users.values())
    assert users["next_cursor"] is None
    one = f.users["admin_agent"]
    assert fga.get(f.path(f"/users/{one}")).json()["id"] == one
    assert fga.get(f.path(f"/purchases/{f.purchase}")).json()["id"] == f.purchase
    assert [p["id"] for p in fga.get(f.path("/purchases")).json()["items"]] == [f.purchase]
    # ids of the demo partner's rows under the fresh partner's URL are nobody's
    (contoso_user,) = db_all("SELECT id::text FROM users WHERE partner_id = %s LIMIT 1",
                             CONTOSO)[0]
    (contoso_purchase,) = db_all("SELECT id::text FROM purchases WHERE partner_id = %s LIMIT 1",
                                 CONTOSO)[0]
    for path, what in ((f"/users/{contoso_user}", "user"), ("/users/x", "user"),
                       (f"/purchases/{contoso_purchase}", "purchase"),
                       ("/purchases/x", "purchase"),
                       (f"/activations/{uuid.uuid4()}", "activation"),
                       ("/activations/x", "activation")):
        body = assert_problem(fga.get(f.path(path)), 404, "not-found")
        assert body["detail"] == f"No such {what}.", path


def test_audit_pages_walk_newest_first(base):
    f = fresh_partner()
    db_exec("INSERT INTO audit_events (partner_id, actor, action, target_type, target_id) "
            "SELECT %s, 'test', 'test.event', 'partner', %s FROM generate_series(1, 5)",
            f.partner, f.partner)
    want = [r[0] for r in db_all("SELECT id FROM audit_events WHERE partner_id = %s "
                                 "ORDER BY id DESC", f.partner)]
    ga = f.client(base)
    seen, cursor = [], None
    for _ in range(10):
        page = ga.get(f.path("/audit-events"),
                      params={"limit": 2, **({"cursor": cursor} if cursor else {})}).json()
        seen += [int(e["id"]) for e in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == want and len(seen) == 5


# Every partner list answers its page and its gate in one query (mb_reply_gated_list): with rows
# the gate comes with them; a page without rows reads the gate on its own. Both halves, for
# every list: no such partner, a partner in PMC (409 where the rule applies), an empty page.
PAGES = ("benefits", "users", "purchases", "activations", "support-requests",
         "cancellation-requests", "events", "audit-events", "webhooks")
PC_ONLY = ("benefits", "purchases", "activations", "support-requests", "cancellation-requests")


def test_every_partner_list_gates_alike_with_rows_and_without(base):
    op = Client(base, operator_token())
    for page in PAGES:
        r = op.get(f"/v1/partners/{NOBODY}/{page}")
        if r.status_code == 403:
            continue  # the operator may not read it at all (the role matrix)
        body = assert_problem(r, 404, "not-found")
        assert body["detail"] == "No such partner.", page

    pmc = fresh_partner(location="pmc")
    ga = pmc.client(base)
    for page in PAGES:
        r = ga.get(pmc.path(f"/{page}"))
        if page in PC_ONLY:
            assert_problem(r, 409, "membership-in-pmc")
        else:
            assert r.status_code == 200, (page, r.text)

    pc = fresh_partner()
    ga = pc.client(base)
    rows = {}
    for page in PAGES:
        r = ga.get(pc.path(f"/{page}"))
        assert r.status_code == 200, (page, r.text)
        rows[page] = len(r.json()["items"])
    # both halves are exercised: pages with rows and pages without
    assert rows["benefits"] > 0 and rows["users"] > 0 and rows["purchases"] > 0, rows
    for page in ("activations", "support-requests", "cancellation-requests", "webhooks"):
        assert rows[page] == 0, rows
        assert ga.get(pc.path(f"/{page}")).json() == {"items": [], "next_cursor": None}
