"""Company marketing contact and Go-To-Market offers (R9): contact rules, ETag / If-Match,
the contact required before activation, eligibility by level and competencies, expiry."""
import datetime as dt

import pytest

from fresh_partner import (CO_SELL, GOLD_CORE, SILVER, SILVER_CORE, benefit_row, complete,
                           fresh_partner, set_contact)
from helpers import GA_ID, assert_problem, db_one, db_val


def contact_body(f, **over):
    body = {"user_id": f.users["mpn_partner_admin"], "email": f"marketing-{f.partner[:8]}@fresh.example",
            "phone": "+14255550100", "preferred_language": "en-US"}
    body.update(over)
    return body


def contact_row(f):
    return db_one("SELECT user_id::text, email, phone, preferred_language, version "
                  "FROM marketing_contacts WHERE partner_id = %s", f.partner)


def parse_time(s):
    return dt.datetime.fromisoformat(s.replace("Z", "+00:00"))


@pytest.mark.seed("S37")
def test_gtm_activation_before_a_marketing_contact_is_409_marketing_contact_required(base):
    f = fresh_partner()
    r = f.client(base).post(f.benefit_path(GOLD_CORE, "/activation"))
    body = assert_problem(r, 409, "marketing-contact-required")
    assert "marketing-contact" in body["detail"]
    assert db_val("SELECT count(*) FROM activations WHERE partner_id = %s", f.partner) == 0
    assert benefit_row(f.benefits[GOLD_CORE])[0] == "available"


@pytest.mark.parametrize("variant", ["same", "upper"])
@pytest.mark.seed("S41")
def test_contact_with_the_account_email_is_422_email_conflict(base, variant):
    f = fresh_partner()
    email = f.account_email if variant == "same" else f.account_email.upper()
    r = f.client(base).put(f.path("/marketing-contact"), json=contact_body(f, email=email))
    assert_problem(r, 422, "marketing-contact-email-conflict")
    assert contact_row(f) is None


@pytest.mark.seed("S39", "S45", "S46", "S47")
def test_valid_contact_then_gtm_activation_completed_is_active_with_expires_at(base, op):
    f = fresh_partner()
    pa = f.client(base, "mpn_partner_admin")
    assert_problem(pa.get(f.path("/marketing-contact")), 404, "not-found")
    r = pa.put(f.path("/marketing-contact"), json=contact_body(f))
    assert r.status_code == 200, r.text
    assert r.headers["ETag"] == '"1"'
    assert r.json()["user_id"] == f.users["mpn_partner_admin"]
    assert contact_row(f) == (f.users["mpn_partner_admin"], contact_body(f)["email"],
                              "+14255550100", "en-US", 1)
    got = pa.get(f.path("/marketing-contact"))
    assert got.status_code == 200 and got.headers["ETag"] == '"1"' and got.json() == r.json()

    r = pa.post(f.benefit_path(GOLD_CORE, "/activation"))
    assert r.status_code == 202, r.text
    act = r.json()
    assert act["kind"] == "go_to_market" and act["status"] == "pending"
    assert r.headers["Location"] == f"/v1/partners/{f.partner}/activations/{act['id']}"
    assert pa.get(r.headers["Location"]).json()["status"] == "pending"

    done = complete(op, act["id"])
    assert done["status"] == "active" and done["access_id"] is None
    expires = parse_time(done["expires_at"])
    # catalog: 365 days, never past the purchase's term (issue 13), which a fresh partner's
    # purchase of yesterday ends a day earlier
    term_end = db_val("SELECT term_end FROM purchases WHERE id = %s", f.purchase)
    expected = min(dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=365), term_end)
    assert abs((expires - expected).total_seconds()) < 600 and expires <= term_end
    benefit = pa.get(f.benefit_path(GOLD_CORE)).json()
    assert benefit["status"] == "active" and parse_time(benefit["expires_at"]) == expires
    status, _, _, _, stored = benefit_row(f.benefits[GOLD_CORE])
    assert status == "active" and stored == expires
    assert pa.get(f"/v1/partners/{f.partner}/activations/{act['id']}").json() == done


@pytest.mark.seed("S36")
def test_gold_core_for_a_partner_with_only_silver_is_422_not_eligible(base):
    f = fresh_partner(level="silver", competencies=(("Data Analytics", "silver", "1 year"),))
    set_contact(f)
    r = f.client(base).post(f.benefit_path(GOLD_CORE, "/activation"))
    body = assert_problem(r, 422, "not-eligible")
    assert body["missing"] == ["gold_competency"] and "gold competency" in body["detail"]
    assert db_val("SELECT count(*) FROM activations WHERE partner_id = %s", f.partner) == 0
    assert benefit_row(f.benefits[GOLD_CORE])[0] == "available"


@pytest.mark.seed("S36")
def test_silver_core_needs_a_competency_that_has_not_expired(base):
    f = fresh_partner(package=SILVER, competencies=(("Data Analytics", "silver", "-1 day"),))
    set_contact(f)
    body = assert_problem(f.client(base).post(f.benefit_path(SILVER_CORE, "/activation")), 422,
                          "not-eligible")
    assert body["missing"] == ["silver_competency"]
    g = fresh_partner(package=SILVER, competencies=(("Data Analytics", "gold", "1 year"),))
    set_contact(g)
    assert g.client(base).post(g.benefit_path(SILVER_CORE, "/activation")).status_code == 202


@pytest.mark.seed("S36")
def test_co_sell_offer_needs_co_sell_ready_status(base):
    f = fresh_partner(co_sell_ready=False)
    set_contact(f)
    body = assert_problem(f.client(base).post(f.benefit_path(CO_SELL, "/activation")), 422,
                          "not-eligible")
    assert body["missing"] == ["co_sell_ready"]
    g = fresh_partner(co_sell_ready=True)
    set_contact(g)
    assert g.client(base).post(g.benefit_path(CO_SELL, "/activation")).status_code == 202


@pytest.mark.seed("S39")
def test_stale_if_match_is_412_and_changes_nothing(base):
    f = fresh_partner()
    ga = f.client(base)
    path = f.path("/marketing-contact")
    assert ga.put(path, json=contact_body(f)).headers["ETag"] == '"1"'
    # update with the current ETag, then change the user
    r = ga.put(path, json=contact_body(f, phone="+442079460000"), headers={"If-Match": '"1"'})
    assert r.status_code == 200 and r.headers["ETag"] == '"2"'
    stale = ga.put(path, json=contact_body(f, user_id=f.users["global_admin"]),
                   headers={"If-Match": '"1"'})
    assert_problem(stale, 412, "precondition-failed")
    assert contact_row(f)[0] == f.users["mpn_partner_admin"] and contact_row(f)[4] == 2
    assert contact_row(f)[2] == "+442079460000"
    assert_problem(ga.put(path, json=contact_body(f), headers={"If-Match": 'W/"2"'}), 412,
                   "precondition-failed")
    r = ga.put(path, json=contact_body(f, user_id=f.users["global_admin"], preferred_language="de-DE"),
               headers={"If-Match": '"7", "2"'})
    assert r.status_code == 200 and r.headers["ETag"] == '"3"'
    assert r.json()["user_id"] == f.users["global_admin"]
    assert contact_row(f)[0] == f.users["global_admin"] and contact_row(f)[3] == "de-DE"
    r = ga.put(path, json=contact_body(f), headers={"If-Match": "*"})
    assert r.status_code == 200 and r.headers["ETag"] == '"4"'
    assert db_val("SELECT count(*) FROM audit_events WHERE partner_id = %s "
                  "AND action = 'marketing_contact.set'", f.partner) == 4


def test_if_match_without_a_contact_is_412(base):
    f = fresh_partner()
    for tag in ('"1"', "*"):
        r = f.client(base).put(f.path("/marketing-contact"), json=contact_body(f),
                               headers={"If-Match": tag})
        assert_problem(r, 412, "precondition-failed")
    assert contact_row(f) is None


@pytest.mark.seed("S40")
def test_contact_must_be_a_user_of_the_partner(base):
    f = fresh_partner()
    r = f.client(base).put(f.path("/marketing-contact"), json=contact_body(f, user_id=GA_ID))
    assert_problem(r, 422, "user-not-in-partner")
    assert contact_row(f) is None


@pytest.mark.parametrize("over,field", [
    ({"phone": "4255550100"}, "phone"),
    ({"phone": "+0123456789"}, "phone"),
    ({"preferred_language": "English"}, "preferred_language"),
    ({"email": "not-an-email"}, "email"),
    ({"user_id": "me"}, "user_id"),
    ({"nickname": "Pat"}, "nickname"),
    ({"phone": None}, "phone"),
])
@pytest.mark.seed("S43")
def test_invalid_contact_is_422_naming_the_field(base, over, field):
    f = fresh_partner()
    body = {k: v for k, v in contact_body(f, **over).items() if v is not None}
    problem = assert_problem(f.client(base).put(f.path("/marketing-contact"), json=body), 422,
                             "validation-failed")
    assert problem["errors"][0]["field"] == field
    assert contact_row(f) is None


@pytest.mark.parametrize("role", ["admin_agent", "user_admin"])
@pytest.mark.seed("S35")
def test_marketing_contact_and_gtm_need_global_or_partner_admin(base, role):
    f = fresh_partner()
    set_contact(f)
    c = f.client(base, role)
    for r in (c.get(f.path("/marketing-contact")),
              c.put(f.path("/marketing-contact"), json=contact_body(f)),
              c.post(f.benefit_path(GOLD_CORE, "/activation"))):
        assert "Global admin" in assert_problem(r, 403, "forbidden-role")["detail"]
    assert contact_row(f)[4] == 1
    assert db_val("SELECT count(*) FROM activations WHERE partner_id = %s", f.partner) == 0


def test_marketing_contact_of_a_pmc_partner_is_409_and_of_another_partner_404(base, ga):
    f = fresh_partner(location="pmc")
    assert_problem(f.client(base).put(f.path("/marketing-contact"), json=contact_body(f)), 409,
                   "membership-in-pmc")
    assert_problem(f.client(base).get(f.path("/marketing-contact")), 409, "membership-in-pmc")
    assert contact_row(f) is None
    assert_problem(ga.get(f.path("/marketing-contact")), 404, "not-found")
    # a partner in Partner Center WITH a contact: its own GA reads it, Contoso's GA gets 404
    g = fresh_partner()
    set_contact(g)
    r = g.client(base).get(g.path("/marketing-contact"))
    assert r.status_code == 200, r.text
    assert r.json()["email"] == f"marketing-{g.partner[:8]}@fresh.example"
    assert_problem(ga.get(g.path("/marketing-contact")), 404, "not-found")


@pytest.mark.seed("S41")
def test_account_email_cannot_become_the_marketing_contacts_email(base, op):
    f = fresh_partner()
    set_contact(f)
    contact_email = db_val("SELECT email FROM marketing_contacts WHERE partner_id = %s", f.partner)
    r = op.patch(f"/v1/admin/partners/{f.partner}", json={"account_email": contact_email.upper()})
    assert_problem(r, 422, "marketing-contact-email-conflict")
    assert db_val("SELECT account_email FROM partners WHERE id = %s", f.partner) == f.account_email
    r = op.patch(f"/v1/admin/partners/{f.partner}", json={"account_email": "new-owner@fresh.example"})
    assert r.status_code == 200 and r.json()["account_email"] == "new-owner@fresh.example"
