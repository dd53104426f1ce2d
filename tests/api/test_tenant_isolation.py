"""Issue 6, point 2: tenant isolation. A Global admin of partner A (the strongest partner role)
aims every partner-scoped operation of api/openapi.yaml at partner B: B's ids in the path
(all of them, and one at a time under A's own path) -> 404 `not-found`; B's user ids in bodies
-> 422; nothing of B in any answer or in A's own lists; and B's rows are exactly as before.

The operations come from the contract, so a new partner-scoped endpoint is swept without a
change here (a new POST/PUT/PATCH needs a body in BODIES, and the test says so)."""
from __future__ import annotations

import os
import re
import uuid

import pytest
import yaml

from fresh_partner import (GOLD_CORE, INCIDENTS, SILVER, VS_ENTERPRISE, WINDOWS_SERVER, Fresh,
                           assign_seat, fresh_partner, reveal_key, set_contact)
from helpers import (BASE, PARTNER_SNAPSHOT, Client, assert_problem, db_all, db_exec, db_one,
                     db_val, idem, partner_snapshot, token)

SPEC = os.path.join(os.path.dirname(__file__), "..", "..", "api", "openapi.yaml")
AZURE = "aaaaaaaa-0000-4000-8000-000000000004"  # cloud, usage_based
METHODS = ("get", "put", "post", "patch", "delete")


def partner_operations() -> list[tuple[str, str]]:
    with open(SPEC, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    return sorted((m.upper(), p) for p, item in doc["paths"].items() for m in item
                  if m in METHODS and p.startswith("/v1/partners/{partnerId}"))


def body_for(method: str, path: str, ids: dict) -> dict | None:
    """A valid body for the operation, naming the ids given (B's, in the sweep)."""
    if method in ("GET", "DELETE"):
        return None
    tail = path.rsplit("/", 1)[-1]
    t = uuid.uuid4().hex[:8]
    bodies = {
        ("POST", "users"): {"email": f"intruder-{t}@a.example", "display_name": "Intruder",
                            "roles": ["global_admin"]},
        ("PATCH", "{userId}"): {"display_name": "Renamed by A", "roles": ["global_admin"]},
        ("POST", "purchases"): {"package_id": SILVER},
        ("POST", "renewal"): {},
        ("POST", "cancellation"): {},
        ("POST", "cancellation-requests"): {"purchase_id": ids["purchaseId"],
                                            "reason": "from A"},  # issue 13
        ("POST", "keys"): {"language": "en-US", "os": "x64"},
        ("POST", "assignments"): {"user_id": ids["userId"]},
        ("POST", "batch"): {"add": [ids["userId"]], "remove": [ids["userId"]]},  # issue 14
        ("POST", "activation"): {},
        ("PUT", "marketing-contact"): {"user_id": ids["userId"],
                                       "email": f"intruder-{t}@a.example",
                                       "phone": "+14255550199", "preferred_language": "en-US"},
        ("POST", "support-requests"): {"type": "on_premises", "description": "from A"},
        ("POST", "revoke-tokens"): {},  # issue 11
        # issue 12: webhooks
        ("POST", "webhooks"): {"url": "https://hooks.example.com/from-a"},
        ("PATCH", "{webhookId}"): {"description": "Changed by A"},
        ("POST", "rotate-secret"): {},
        ("POST", "ping"): {},
        ("POST", "retry"): {},
    }
    assert (method, tail) in bodies, (f"{method} {path}: add a valid body to "
                                      "test_tenant_isolation.body_for")
    return bodies[(method, tail)]


class Tenant:
    """A fresh partner with something in every table a partner owns."""

    def __init__(self):
        self.f: Fresh = fresh_partner()
        f = self.f
        set_contact(f)
        assign_seat(f.benefits[VS_ENTERPRISE], f.users["employee"])
        assign_seat(f.benefits[AZURE], f.users["global_admin"])
        reveal_key(f.benefits[WINDOWS_SERVER])
        db_exec("INSERT INTO key_reveals (benefit_id, language, os, revealed_by) "
                "VALUES (%s, 'en-US', 'x64', %s)", f.benefits[WINDOWS_SERVER],
                f.users["global_admin"])
        tech = f.benefits[INCIDENTS]
        self.access_id = f"AID-TI{uuid.uuid4().hex[:12].upper()}"
        self.contract_id = f"CTR-TI{uuid.uuid4().hex[:12].upper()}"
        self.activation = db_val(
            "INSERT INTO activations (partner_id, benefit_id, kind, status, requested_by, "
            "processed_by, processed_at, access_id, contract_id) VALUES "
            "(%s, %s, 'technical', 'active', 'test', 'test', now(), %s, %s) RETURNING id::text",
            f.partner, tech, self.access_id, self.contract_id)
        db_exec("UPDATE benefits SET status = 'active', activated_at = now(), access_id = %s, "
                "contract_id = %s WHERE id = %s", self.access_id, self.contract_id, tech)
        self.pending = db_val(
            "INSERT INTO activations (partner_id, benefit_id, kind, requested_by) "
            "VALUES (%s, %s, 'go_to_market', 'test') RETURNING id::text", f.partner,
            f.benefits[GOLD_CORE])
        db_exec("UPDATE benefits SET status = 'pending' WHERE id = %s", f.benefits[GOLD_CORE])
        self.support_request = db_val(
            "INSERT INTO support_requests (partner_id, benefit_id, type, units, created_by) "
            "VALUES (%s, %s, 'on_premises', 1, 'test') RETURNING id::text", f.partner, tech)
        db_exec("INSERT INTO audit_events (partner_id, actor, action, target_type, target_id) "
                "VALUES (%s, 'test', 'test.seeded', 'partner', %s)", f.partner, f.partner)
        # issue 12: a webhook with a delivery
        self.webhook = db_val(
            "INSERT INTO webhooks (partner_id, url, event_types, secret_enc) VALUES (%s, "
            "'https://hooks.example.com/b', '{webhook.disabled}', pgp_sym_encrypt('whsec_x', "
            "'k')) RETURNING id::text", f.partner)
        self.delivery = db_val(
            "INSERT INTO webhook_deliveries (webhook_id, partner_id, event_id, event_type, "
            "payload, status) VALUES (%s, %s, 'ping_ti', 'webhook.ping', '{}', 'failed') "
            "RETURNING id::text", self.webhook, f.partner)
        # issue 13: a cancellation request (rejected: nothing of B stays blocked)
        self.cancellation_request = db_val(
            "INSERT INTO cancellation_requests (partner_id, purchase_id, reason, status, "
            "refund_amount, refund_currency, requested_by, processed_by, processed_at, "
            "rejection_reason) VALUES (%s, %s, 'B wants out', 'rejected', 10, 'USD', 'test', "
            "'test', now(), 'no') RETURNING id::text", f.partner, f.purchase)

    @property
    def partner(self) -> str:
        return self.f.partner

    def ids(self, method: str, path: str) -> dict:
        """A value of this partner for every path parameter of the operation: the benefit the
        operation acts on, a user that holds a seat of it, and so on."""
        f = self.f
        if "/assignments" in path:
            benefit = f.benefits[VS_ENTERPRISE]
        elif "/activation" in path or "/support-requests" in path:
            benefit = f.benefits[INCIDENTS]
        else:
            benefit = f.benefits[WINDOWS_SERVER]
        user = f.users["employee"]
        if path.endswith("/marketing-contact") or (method == "PATCH" and "/users/" in path):
            user = f.users["mpn_partner_admin"]
        return {"partnerId": f.partner, "userId": user, "purchaseId": f.purchase,
                "benefitId": benefit, "activationId": self.activation,
                "supportRequestId": self.support_request, "webhookId": self.webhook,
                "deliveryId": self.delivery, "requestId": self.cancellation_request}

    def secrets(self) -> list[str]:
        """Strings of this partner that must never show in another partner's answers."""
        emails = [e for (e,) in db_all("SELECT email FROM users WHERE partner_id = %s",
                                       self.partner)]
        name, account = db_one("SELECT name, account_email FROM partners WHERE id = %s",
                               self.partner)
        ids = [self.partner, self.f.purchase, self.activation, self.pending,
               self.support_request, self.cancellation_request, *self.f.users.values(), *self.f.benefits.values()]
        return emails + [name, account, self.access_id, self.contract_id] + ids


def fill(path: str, ids: dict) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: ids[m.group(1)], path)


# The partner's rows in every table (helpers.partner_snapshot; the role matrix takes it too).
SNAPSHOT = PARTNER_SNAPSHOT
snapshot = partner_snapshot


@pytest.fixture(scope="module")
def tenants():
    return Tenant(), Tenant()


def test_partner_a_reaches_nothing_of_partner_b(tenants):
    a, b = tenants
    ga = Client(BASE, token(a.f.users["global_admin"], a.partner, ["global_admin"]))
    before = snapshot(b.partner)
    assert all(before[k] for k in ("users", "purchases", "benefits", "seat_assignments",
                                   "activations", "marketing_contacts", "support_requests",
                                   "license_keys", "key_reveals")), "B must own something of each"
    a_audits = db_val("SELECT count(*) FROM audit_events WHERE actor = %s",
                      a.f.users["global_admin"])
    secrets = b.secrets()
    sent, failures = 0, []

    def attempt(method, template, path_ids, body, expect_status, expect_code, label):
        nonlocal sent
        path = fill(template, path_ids)
        r = ga.request(method, path, json=body,
                       headers=idem() if method in ("POST", "PUT", "PATCH") else None)
        sent += 1
        try:
            assert_problem(r, expect_status, expect_code)
            leaked = [s for s in secrets if s and s in r.text
                      and s not in path and s not in str(body)]
            assert not leaked, f"{method} {path} answered B's data: {leaked}"
        except AssertionError as e:
            failures.append(f"[{label}] {e}")

    ops = partner_operations()
    assert len(ops) >= 25
    for method, template in ops:
        b_ids = b.ids(method, template)
        a_ids = a.ids(method, template)
        # every id B's
        attempt(method, template, b_ids, body_for(method, template, b_ids), 404, "not-found",
                "B path")
        # under A's own partner, one id of B at a time
        for param in re.findall(r"\{(\w+)\}", template):
            if param == "partnerId":
                continue
            mixed = dict(a_ids, **{param: b_ids[param]})
            attempt(method, template, mixed, body_for(method, template, a_ids), 404,
                    "not-found", f"A path, B {param}")

    # B's users in A's bodies
    a_vs = fill("/v1/partners/{partnerId}/benefits/{benefitId}/assignments",
                a.ids("POST", "/assignments"))
    for label, method, path, body, status, code in [
        ("VS seat for B's user", "POST", a_vs, {"user_id": b.f.users["employee"]}, 422,
         "user-not-in-partner"),
        ("usage-based seat for B's user", "POST",
         f"/v1/partners/{a.partner}/benefits/{a.f.benefits[AZURE]}/assignments",
         {"user_id": b.f.users["global_admin"]}, 422, "validation-failed"),
        ("marketing contact B's user", "PUT", f"/v1/partners/{a.partner}/marketing-contact",
         {"user_id": b.f.users["mpn_partner_admin"], "email": "m@a-partner.example",
          "phone": "+14255550198", "preferred_language": "en-US"}, 422, "user-not-in-partner"),
        # issue 13: a cancellation request naming B's purchase or B's benefit
        ("cancellation of B's purchase", "POST", f"/v1/partners/{a.partner}/cancellation-requests",
         {"purchase_id": b.f.purchase, "reason": "from A"}, 404, "not-found"),
        ("cancellation of B's benefit", "POST", f"/v1/partners/{a.partner}/cancellation-requests",
         {"benefit_id": b.f.benefits[GOLD_CORE], "reason": "from A"}, 404, "not-found"),
    ]:
        attempt(method, path, {}, body, status, code, label)

    print(f"tenant isolation: {sent} requests")
    assert not failures, f"{len(failures)} of {sent} requests:\n" + "\n".join(failures)
    after = snapshot(b.partner)
    changed = [k for k in SNAPSHOT if before[k] != after[k]]
    assert not changed, f"B's rows changed: {changed}"
    assert db_val("SELECT count(*) FROM audit_events WHERE actor = %s",
                  a.f.users["global_admin"]) == a_audits, "A's refused requests were audited"
    # nothing stayed in A's seats or contact either
    assert db_val("SELECT count(*) FROM seat_assignments s JOIN users u ON u.id = s.user_id "
                  "JOIN benefits bn ON bn.id = s.benefit_id WHERE u.partner_id <> bn.partner_id "
                  "AND (u.partner_id IN (%s, %s) OR bn.partner_id IN (%s, %s))",
                  a.partner, b.partner, a.partner, b.partner) == 0
    assert db_val("SELECT user_id::text FROM marketing_contacts WHERE partner_id = %s",
                  a.partner) == a.f.users["mpn_partner_admin"]


def test_partner_a_lists_hold_nothing_of_partner_b(tenants):
    a, b = tenants
    ga = Client(BASE, token(a.f.users["global_admin"], a.partner, ["global_admin"]))
    secrets = b.secrets()
    lists = ["", "/users", "/purchases", "/benefits", "/audit-events", "/marketing-contact",
             "/cancellation-requests",
             f"/purchases/{a.f.purchase}", f"/activations/{a.activation}",
             f"/benefits/{a.f.benefits[VS_ENTERPRISE]}/assignments",
             f"/benefits/{a.f.benefits[INCIDENTS]}/support-requests",
             "/activations", "/support-requests", "/global-admins"]  # issue 13
    for rest in lists:
        r = ga.get(f"/v1/partners/{a.partner}{rest}", params={"limit": 200} if rest in (
            "/users", "/purchases", "/benefits", "/audit-events") else None)
        assert r.status_code == 200, f"{rest}: {r.status_code} {r.text[:300]}"
        leaked = [s for s in secrets if s in r.text]
        assert not leaked, f"A's {rest or 'partner'} shows B's data: {leaked}"
    # issue 13: B's benefit as a filter of A's activations is B's id: 404
    assert_problem(ga.get(f"/v1/partners/{a.partner}/activations",
                          params={"benefit_id": b.f.benefits[INCIDENTS]}), 404, "not-found")
    me = ga.get("/v1/me").json()
    assert me["partner_id"] == a.partner
    assert not [s for s in secrets if s in str(me)]
