"""The benefit list and the single benefit answer the partner gate and the read in one query
(issue 7, `mb_gated_query`): the cases where one of the two halves finds nothing."""
import uuid

from fresh_partner import fresh_partner
from helpers import CONTOSO, FABRIKAM, Client, assert_problem, db_all, db_exec, operator_token

NOBODY = "77777777-7777-4777-8777-777777777777"


def test_operator_on_a_partner_that_does_not_exist_is_404_no_such_partner(base):
    op = Client(base, operator_token())
    for path in (f"/v1/partners/{NOBODY}/benefits",
                 f"/v1/partners/{NOBODY}/benefits/{uuid.uuid4()}",
                 f"/v1/partners/{NOBODY}/benefits/not-a-uuid"):
        body = assert_problem(op.get(path), 404, "not-found")
        assert body["detail"] == "No such partner.", path


def test_pmc_partner_single_benefit_is_409_for_its_admin_and_the_operator(base, fab_ga):
    rows = db_all("SELECT id::text FROM benefits WHERE partner_id = %s LIMIT 1", FABRIKAM)
    path = f"/v1/partners/{FABRIKAM}/benefits/{rows[0][0] if rows else uuid.uuid4()}"
    for c in (fab_ga, Client(base, operator_token())):
        assert_problem(c.get(path), 409, "membership-in-pmc")
        assert_problem(c.get(f"/v1/partners/{FABRIKAM}/benefits"), 409, "membership-in-pmc")


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
    (other,) = db_all("SELECT id::text FROM benefits WHERE partner_id <> %s LIMIT 1", CONTOSO)[0]
    body = assert_problem(ga.get(f"/v1/partners/{CONTOSO}/benefits/{other}"), 404, "not-found")
    assert body["detail"] == "No such benefit."
