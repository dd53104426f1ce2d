"""Expiry (issue 5, point 4): benefits and offers past their own `expires_at` or past their
purchase's `term_end` show `expired` and cannot be activated or used (409 benefit-expired)."""
import pytest
from fresh_partner import (GOLD_CORE, INCIDENTS, activate, benefit_row, complete, fresh_partner,
                           set_contact)
from helpers import assert_problem, db_exec, db_val


def end_term(f):
    db_exec("UPDATE purchases SET purchased_at = now() - interval '400 days', "
            "term_end = now() - interval '1 minute' WHERE id = %s", f.purchase)


def test_benefits_past_the_purchase_term_end_show_expired_and_cannot_be_activated(base):
    f = fresh_partner()
    set_contact(f)
    end_term(f)
    ga = f.client(base)
    for product in (INCIDENTS, GOLD_CORE):
        assert ga.get(f.benefit_path(product)).json()["status"] == "expired"
        body = assert_problem(ga.post(f.benefit_path(product, "/activation")), 409,
                              "benefit-expired")
        assert "expired" in body["detail"]
    expired = ga.get(f.path("/benefits"), params={"status": "expired", "limit": 200}).json()
    assert {b["id"] for b in expired["items"]} == set(f.benefits.values())
    assert db_val("SELECT count(*) FROM activations WHERE partner_id = %s", f.partner) == 0


def test_active_technical_benefit_past_term_end_refuses_support_requests(base, op):
    f = fresh_partner()
    ga = f.client(base)
    complete(op, activate(ga, f, INCIDENTS)["id"])
    path = f.benefit_path(INCIDENTS, "/support-requests")
    assert ga.post(path, json={"type": "on_premises"}).status_code == 201
    end_term(f)
    assert ga.get(f.benefit_path(INCIDENTS)).json()["status"] == "expired"
    assert_problem(ga.post(path, json={"type": "on_premises"}), 409, "benefit-expired")
    assert benefit_row(f.benefits[INCIDENTS])[1] == 1
    # the history stays readable
    assert len(ga.get(path).json()["items"]) == 1


@pytest.mark.seed("S48")
def test_gtm_offer_past_its_expires_at_is_expired_and_cannot_be_activated_again(base, op):
    f = fresh_partner()
    set_contact(f)
    ga = f.client(base)
    act = complete(op, activate(ga, f, GOLD_CORE)["id"])
    assert ga.get(f.benefit_path(GOLD_CORE)).json()["status"] == "active"
    db_exec("UPDATE benefits SET expires_at = now() - interval '1 minute' WHERE id = %s",
            f.benefits[GOLD_CORE])
    assert ga.get(f.benefit_path(GOLD_CORE)).json()["status"] == "expired"
    assert_problem(ga.post(f.benefit_path(GOLD_CORE, "/activation")), 409, "benefit-expired")
    assert db_val("SELECT count(*) FROM activations WHERE benefit_id = %s",
                  f.benefits[GOLD_CORE]) == 1
    assert db_val("SELECT status FROM activations WHERE id = %s", act["id"]) == "active"


def test_technical_benefit_past_its_own_expires_at_refuses_support_requests(base, op):
    f = fresh_partner()
    ga = f.client(base)
    complete(op, activate(ga, f, INCIDENTS)["id"])
    db_exec("UPDATE benefits SET expires_at = now() - interval '1 minute' WHERE id = %s",
            f.benefits[INCIDENTS])
    r = ga.post(f.benefit_path(INCIDENTS, "/support-requests"), json={"type": "on_premises"})
    assert_problem(r, 409, "benefit-expired")
    assert benefit_row(f.benefits[INCIDENTS])[1] == 0


def test_operator_cannot_complete_an_activation_whose_benefit_expired(base, op):
    f = fresh_partner()
    act = activate(f.client(base), f, INCIDENTS)
    end_term(f)
    assert_problem(op.post(f"/v1/admin/activations/{act['id']}/complete"), 409, "benefit-expired")
    assert db_val("SELECT status FROM activations WHERE id = %s", act["id"]) == "pending"
    r = op.post(f"/v1/admin/activations/{act['id']}/reject", json={"reason": "Term ended"})
    assert r.status_code == 200 and r.json()["status"] == "rejected"
