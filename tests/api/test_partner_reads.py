"""Issue 13 (part a): what a partner can find and see before acting. Its activations
(?status=&benefit_id=) and every support request across benefits; the support request type
checked against the benefit's unit; benefits that show `instructions`, `unit`, `offer_type`,
`eligibility` and their latest activation; Go-To-Market expiry within the purchase's term; and
the Global admins' names and emails for every employee. On the demo data and on fresh partners."""
import datetime as dt
import uuid

import pytest

from fresh_partner import (ADVISORY_HOURS, CO_SELL, GOLD_CORE, INCIDENTS, PRESALES_HOURS, SILVER,
                           SILVER_CORE, WINDOWS_SERVER, activate, benefit_row, complete,
                           fresh_partner, set_contact)
from helpers import CONTOSO, FABRIKAM, GA_ID, Client, assert_problem, db_exec, db_val, token

GOLD_CORE_DEMO = "dddddddd-0000-4000-8000-000000000012"
CO_SELL_DEMO = "dddddddd-0000-4000-8000-000000000013"


def parse_time(s):
    return dt.datetime.fromisoformat(s.replace("Z", "+00:00"))


def reject(op, activation_id, reason):
    r = op.post(f"/v1/admin/activations/{activation_id}/reject", json={"reason": reason})
    assert r.status_code == 200, r.text
    return r.json()


def all_pages(c, path, **params):
    items, cursor = [], None
    for _ in range(50):
        q = dict(params, **({"cursor": cursor} if cursor else {}))
        r = c.get(path, params=q)
        assert r.status_code == 200, r.text
        body = r.json()
        items += body["items"]
        cursor = body["next_cursor"]
        if not cursor:
            return items
    raise AssertionError("more than 50 pages")


# --- 1. the partner's activations, and a benefit's latest one ------------------------------------

def test_partner_lists_its_activations_by_status_and_benefit_and_benefits_show_the_latest(base,
                                                                                        op):
    f = fresh_partner()
    set_contact(f)
    ga, path = f.client(base), f.path("/activations")
    assert ga.get(path).json() == {"items": [], "next_cursor": None}
    never = ga.get(f.benefit_path(PRESALES_HOURS)).json()
    assert (never["activation_id"], never["activation_status"], never["rejection_reason"]) == \
        (None, None, None)

    done = complete(op, activate(ga, f, INCIDENTS)["id"])
    rejected = activate(ga, f, GOLD_CORE)
    reject(op, rejected["id"], "The marketing plan is missing.")
    pending = activate(ga, f, ADVISORY_HOURS)

    listed = all_pages(ga, path, limit=2)
    assert sorted(a["id"] for a in listed) == sorted([done["id"], rejected["id"], pending["id"]])
    assert all(a["partner_id"] == f.partner for a in listed)
    by_status = ga.get(path, params={"status": "rejected"}).json()["items"]
    assert [(a["id"], a["reason"]) for a in by_status] == \
        [(rejected["id"], "The marketing plan is missing.")]
    by_benefit = ga.get(path, params={"benefit_id": f.benefits[INCIDENTS]}).json()["items"]
    assert [a["id"] for a in by_benefit] == [done["id"]]
    both = ga.get(path, params={"benefit_id": f.benefits[INCIDENTS], "status": "pending"})
    assert both.json()["items"] == []

    # the reason stays on the benefit once the Location header is gone
    gtm = ga.get(f.benefit_path(GOLD_CORE)).json()
    assert (gtm["activation_id"], gtm["activation_status"], gtm["rejection_reason"]) == \
        (rejected["id"], "rejected", "The marketing plan is missing.")
    tech = ga.get(f.benefit_path(INCIDENTS)).json()
    assert (tech["activation_id"], tech["activation_status"], tech["rejection_reason"]) == \
        (done["id"], "active", None)
    # activating again: the latest is the new one, the old reason no longer shows
    again = activate(ga, f, GOLD_CORE)
    gtm = ga.get(f.benefit_path(GOLD_CORE)).json()
    assert (gtm["activation_id"], gtm["activation_status"], gtm["rejection_reason"]) == \
        (again["id"], "pending", None)
    listed = {b["id"]: b for b in all_pages(ga, f.path("/benefits"), limit=100)}
    assert listed[f.benefits[GOLD_CORE]]["activation_id"] == again["id"]
    assert len(ga.get(path, params={"benefit_id": f.benefits[GOLD_CORE]}).json()["items"]) == 2

    # who: GA, PA, the operator; AA, UA and an employee do not
    assert f.client(base, "mpn_partner_admin").get(path).status_code == 200
    assert len(op.get(path, params={"limit": 100}).json()["items"]) == 4
    for role in ("admin_agent", "user_admin", "employee"):
        assert_problem(f.client(base, role).get(path), 403, "forbidden-role")


def test_activation_list_bad_filters_and_another_partners_benefit(base, ga):
    f = fresh_partner()
    c, path = f.client(base), f.path("/activations")
    body = assert_problem(c.get(path, params={"status": "done"}), 422, "validation-failed")
    assert body["errors"][0]["field"] == "status"
    body = assert_problem(c.get(path, params={"benefit_id": "not-a-uuid"}), 422,
                          "validation-failed")
    assert body["errors"][0]["field"] == "benefit_id"
    assert_problem(c.get(path, params={"limit": 0}), 422)
    # a benefit of Contoso, a benefit that does not exist: 404 as their own URLs are
    assert_problem(c.get(path, params={"benefit_id": GOLD_CORE_DEMO}), 404, "not-found")
    assert_problem(c.get(path, params={"benefit_id": str(uuid.uuid4())}), 404, "not-found")
    assert_problem(ga.get(path), 404, "not-found")  # Contoso's admin on the fresh partner
    # the demo partner's own list holds only its own activations
    for a in all_pages(ga, f"/v1/partners/{CONTOSO}/activations", limit=100):
        assert a["partner_id"] == CONTOSO


def test_activation_and_support_lists_of_a_partner_in_pmc_are_409(base, fab_ga):
    for rest in ("/activations", "/support-requests"):
        assert_problem(fab_ga.get(f"/v1/partners/{FABRIKAM}{rest}"), 409, "membership-in-pmc")


# --- 2. support requests across benefits; the type fits the unit --------------------------------

def active_technical(f, op, base, *products):
    ga = f.client(base)
    for p in products:
        complete(op, activate(ga, f, p)["id"])
    return ga


def test_partner_wide_support_requests_list_every_technical_benefit(base, op):
    f = fresh_partner()
    ga = active_technical(f, op, base, INCIDENTS, ADVISORY_HOURS)
    made = []
    for product, body in [(INCIDENTS, {"type": "on_premises"}),
                          (INCIDENTS, {"type": "cloud_on_behalf_of_customer",
                                       "customer_tenant_id": str(uuid.uuid4())}),
                          (ADVISORY_HOURS, {"type": "advisory_hours", "hours": 3}),
                          (ADVISORY_HOURS, {"type": "presales_deployment", "hours": 2})]:
        r = ga.post(f.benefit_path(product, "/support-requests"), json=body)
        assert r.status_code == 201, r.text
        made.append((r.json()["id"], f.benefits[product]))
    path = f.path("/support-requests")
    listed = all_pages(ga, path, limit=3)
    assert sorted((s["id"], s["benefit_id"]) for s in listed) == sorted(made)
    assert sorted(s["id"] for s in all_pages(op, path)) == sorted(i for i, _ in made)
    assert f.client(base, "mpn_partner_admin").get(path).status_code == 200
    for role in ("admin_agent", "user_admin", "employee"):
        assert_problem(f.client(base, role).get(path), 403, "forbidden-role")
    # another partner's requests never show; Contoso's list holds Contoso's benefits only
    g = fresh_partner()
    assert g.client(base).get(g.path("/support-requests")).json()["items"] == []
    own = db_val("SELECT array_agg(id::text) FROM benefits WHERE partner_id = %s", CONTOSO)
    c = Client(base, token(GA_ID, CONTOSO, ["global_admin"]))
    for s in all_pages(c, f"/v1/partners/{CONTOSO}/support-requests", limit=100):
        assert s["benefit_id"] in own
    c.close()


@pytest.mark.seed("S34")
def test_support_request_type_must_fit_the_benefits_unit(base, op):
    f = fresh_partner()
    ga = active_technical(f, op, base, INCIDENTS, PRESALES_HOURS)
    incidents = f.benefit_path(INCIDENTS, "/support-requests")
    hours = f.benefit_path(PRESALES_HOURS, "/support-requests")
    for path, body in [(incidents, {"type": "advisory_hours", "hours": 4}),
                       (incidents, {"type": "presales_deployment", "hours": 1}),
                       (hours, {"type": "on_premises", "hours": 2}),
                       (hours, {"type": "cloud_on_behalf_of_customer", "hours": 2,
                                "customer_tenant_id": str(uuid.uuid4())})]:
        problem = assert_problem(ga.post(path, json=body), 422, "validation-failed")
        assert problem["errors"][0]["field"] == "type", problem
    # nothing was used, nothing was written
    assert benefit_row(f.benefits[INCIDENTS])[1] == 0
    assert benefit_row(f.benefits[PRESALES_HOURS])[1] == 0
    assert db_val("SELECT count(*) FROM support_requests WHERE partner_id = %s", f.partner) == 0
    # the fitting types still work
    assert ga.post(incidents, json={"type": "on_premises"}).status_code == 201
    assert ga.post(hours, json={"type": "presales_deployment", "hours": 2}).status_code == 201
    assert benefit_row(f.benefits[PRESALES_HOURS])[1] == 2


# --- 3. what a benefit shows before acting ---------------------------------------------------------

@pytest.mark.seed("S13", "S36", "S44")
def test_demo_benefits_show_instructions_unit_offer_type_and_eligibility(ga, aa):
    items = all_pages(ga, f"/v1/partners/{CONTOSO}/benefits", limit=100)
    cats = {b["category"] for b in items}
    assert cats == {"software", "cloud", "visual_studio", "technical", "go_to_market"}
    for b in items:
        assert b["instructions"], b  # every demo product has instructions
        assert (b["unit"] is not None) == (b["category"] == "technical"), b
        gtm = b["category"] == "go_to_market"
        assert (b["offer_type"] is not None) == gtm and (b["eligibility"] is not None) == gtm, b
    units = {b["product_id"]: b["unit"] for b in items if b["category"] == "technical"}
    assert units[INCIDENTS] == "incidents" and units[ADVISORY_HOURS] == "hours"
    # Contoso: gold competency and co-sell ready
    gold = ga.get(f"/v1/partners/{CONTOSO}/benefits/{GOLD_CORE_DEMO}").json()
    assert gold["offer_type"] == "gold_core"
    assert gold["eligibility"] == {"eligible": True, "reasons": []}
    co_sell = aa.get(f"/v1/partners/{CONTOSO}/benefits/{CO_SELL_DEMO}").json()
    assert co_sell["offer_type"] == "isv_co_sell_ready" and co_sell["eligibility"]["eligible"]
    sw = ga.get(f"/v1/partners/{CONTOSO}/benefits/dddddddd-0000-4000-8000-000000000001").json()
    assert "slmgr" in sw["instructions"]


def test_fresh_partner_offers_show_what_they_lack(base):
    f = fresh_partner(package=SILVER, level="silver", co_sell_ready=False,
                      competencies=(("Data Analytics", "silver", "-1 day"),))
    silver = f.client(base, "admin_agent").get(f.benefit_path(SILVER_CORE)).json()
    assert silver["offer_type"] == "silver_core"
    assert silver["eligibility"] == {"eligible": False, "reasons": ["silver-competency-required"]}
    g = fresh_partner(co_sell_ready=False, competencies=(("Data Analytics", "silver", "1 year"),))
    c = g.client(base)
    assert c.get(g.benefit_path(GOLD_CORE)).json()["eligibility"] == \
        {"eligible": False, "reasons": ["gold-competency-required"]}
    assert c.get(g.benefit_path(CO_SELL)).json()["eligibility"] == \
        {"eligible": False, "reasons": ["co-sell-ready-required"]}
    assert c.get(g.benefit_path(WINDOWS_SERVER)).json()["eligibility"] is None


@pytest.mark.seed("S36")
def test_eligibility_before_activating_gives_the_same_reason_as_activating(base, op):
    f = fresh_partner(level="silver", competencies=(("Data Analytics", "silver", "1 year"),))
    set_contact(f)
    pa = f.client(base, "mpn_partner_admin")
    seen = pa.get(f.benefit_path(GOLD_CORE)).json()["eligibility"]
    assert seen == {"eligible": False, "reasons": ["gold-competency-required"]}
    problem = assert_problem(pa.post(f.benefit_path(GOLD_CORE, "/activation")), 422,
                             "not-eligible")
    assert problem["reasons"] == seen["reasons"]
    assert problem["missing"] == ["gold_competency"]  # as the first wave answered
    assert db_val("SELECT count(*) FROM activations WHERE partner_id = %s", f.partner) == 0
    # the operator grants a gold competency: eligible, and activating is accepted
    r = op.patch(f"/v1/admin/partners/{f.partner}",
                 json={"competencies": [{"area": "Data Analytics", "level": "gold"}]})
    assert r.status_code == 200, r.text
    assert pa.get(f.benefit_path(GOLD_CORE)).json()["eligibility"] == \
        {"eligible": True, "reasons": []}
    assert pa.post(f.benefit_path(GOLD_CORE, "/activation")).status_code == 202


def test_go_to_market_expiry_is_never_later_than_the_purchase_term(base, op):
    f = fresh_partner()
    set_contact(f)
    db_exec("UPDATE purchases SET term_end = now() + interval '20 days' WHERE id = %s",
            f.purchase)
    term_end = db_val("SELECT term_end FROM purchases WHERE id = %s", f.purchase)
    ga = f.client(base)
    done = complete(op, activate(ga, f, GOLD_CORE)["id"])  # a 365-day offer
    assert parse_time(done["expires_at"]) == term_end
    benefit = ga.get(f.benefit_path(GOLD_CORE)).json()
    assert parse_time(benefit["expires_at"]) == term_end == parse_time(benefit["term_end"])
    # a term long enough: the offer's own duration
    g = fresh_partner()
    set_contact(g)
    done = complete(op, activate(g.client(base), g, CO_SELL)["id"])  # 180 days
    expires = parse_time(done["expires_at"])
    assert expires < db_val("SELECT term_end FROM purchases WHERE id = %s", g.purchase)
    assert abs((expires - dt.datetime.now(dt.timezone.utc)).days - 180) <= 1


# --- 4. who is the Global admin? -------------------------------------------------------------------

@pytest.mark.seed("S04")
def test_every_token_of_the_partner_sees_the_global_admins_names_and_emails_only(base, emp, aa,
                                                                               ua, op):
    path = f"/v1/partners/{CONTOSO}/global-admins"
    # the employee with no role, who gets 403 on the users list
    assert_problem(emp.get(f"/v1/partners/{CONTOSO}/users"), 403, "forbidden-role")
    r = emp.get(path)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["next_cursor"] is None
    assert {"display_name": "Grace Admin", "email": "ga@contoso.example"} in body["items"]
    assert all(set(i) == {"display_name", "email"} for i in body["items"])
    admins = db_val("SELECT array_agg(lower(email)) FROM users WHERE partner_id = %s "
                    "AND 'global_admin' = ANY (roles)", CONTOSO)
    assert sorted(i["email"].lower() for i in body["items"]) == sorted(admins)
    assert "22222222-2222-4222-8222" not in r.text  # no user id
    for c in (aa, ua, op):
        assert c.get(path).json() == body
    # a fresh partner: two Global admins, the other roles are not listed
    f = fresh_partner()
    db_exec("UPDATE users SET roles = '{global_admin,user_admin}' WHERE id = %s",
            f.users["user_admin"])
    listed = f.client(base, "employee").get(f.path("/global-admins")).json()["items"]
    want = db_val("SELECT array_agg(email ORDER BY email) FROM users WHERE id IN (%s, %s)",
                  f.users["global_admin"], f.users["user_admin"])
    assert sorted(i["email"] for i in listed) == want
    # another partner's: 404; a partner still in PMC answers too (users are not benefits)
    assert_problem(f.client(base, "employee").get(path), 404, "not-found")
    assert_problem(emp.get(f.path("/global-admins")), 404, "not-found")
    assert_problem(emp.get("/v1/partners/not-a-partner/global-admins"), 404, "not-found")
    fab = op.get(f"/v1/partners/{FABRIKAM}/global-admins").json()["items"]
    assert fab == [{"display_name": "Frank Global", "email": "ga@fabrikam.example"}]
