"""Issue 6, point 1: the role matrix (DESIGN §2), table-driven from tests/api/role_matrix.py.

For every row of the table and each of the six callers, a valid request goes through Prism:
an allowed caller gets the row's success answer (never 401/403), any other caller gets 403
`forbidden-role` and writes nothing. The data is a fresh partner of its own (SQL: users of every
role, a Gold purchase with a benefit of every category, an active technical benefit with a
support request, a marketing contact, keys already handed to the key benefits), so the demo
partners and the demo key pools stay as other tests expect them. Each recipe prepares what its
request needs before every call (a seat to remove, a pending activation to complete, ...), so
each allowed caller gets the full success, in any order."""
from __future__ import annotations

import os
import random
import re
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

import pytest
import yaml

from fresh_partner import (ADVISORY_HOURS, ACTION_PACK, GOLD, GOLD_CORE, INCIDENTS, M365,
                           PRESALES_HOURS, SILVER, VS_ENTERPRISE, WINDOWS_SERVER, Fresh,
                           assign_seat, fresh_partner, set_contact)
from helpers import (BASE, OPERATOR_SUB, Client, assert_problem, db_exec, db_one, db_val, idem,
                     operator_token, partner_snapshot, snapshot_diff, token)
from role_matrix import (CALLERS, EMP, OP, ROLE_OF, ROWS, Row)

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
SPEC = os.path.join(ROOT, "api", "openapi.yaml")
AZURE = "aaaaaaaa-0000-4000-8000-000000000004"  # cloud, usage_based, 1 seat
METHODS = ("get", "put", "post", "patch", "delete")


# --- the table against the contract and the service's routes --------------------------------

def spec_operations() -> set[tuple[str, str]]:
    with open(SPEC, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    return {(m.upper(), p) for p, item in doc["paths"].items() for m in item if m in METHODS}


def _shape(path: str) -> str:
    return re.sub(r"\{[^}]+\}|:[A-Za-z]+", "{}", path)


def service_routes() -> set[tuple[str, str]]:
    """(method, path) of every line of the routing tables in src/routes/*.c."""
    routes = set()
    d = os.path.join(ROOT, "src", "routes")
    for name in sorted(os.listdir(d)):
        if name.endswith(".c"):
            with open(os.path.join(d, name), encoding="utf-8") as f:
                routes |= set(re.findall(r'\{"(GET|POST|PUT|PATCH|DELETE)",\s*"(/[^"]*)"',
                                         f.read()))
    return routes


def test_every_operation_has_a_row_and_every_row_an_operation():
    ops = spec_operations()
    rows = {r.op for r in ROWS}
    missing = sorted(ops - rows)
    assert not missing, ("operations of api/openapi.yaml without a row in tests/api/role_matrix.py"
                         f" (add one: who may call it?): {missing}")
    stray = sorted(rows - ops)
    assert not stray, f"rows of role_matrix.py that name no operation of the contract: {stray}"


def test_every_route_of_the_service_is_in_the_contract_and_the_table():
    """The routing tables and the contract name the same operations: a handler added without a
    contract entry (and so without a row) fails here too."""
    shapes = {(m, _shape(p)) for m, p in spec_operations()}
    routes = {(m, _shape(p)) for m, p in service_routes()}
    assert len(routes) >= 30, "could not read the routing tables"
    extra, missing = sorted(routes - shapes), sorted(shapes - routes)
    assert not extra, f"routes of src/routes/*.c not in api/openapi.yaml: {extra}"
    assert not missing, f"operations of api/openapi.yaml without a route: {missing}"


def test_rows_are_unique_and_each_has_a_recipe():
    ids = [r.id for r in ROWS]
    assert len(ids) == len(set(ids)), "duplicate rows"
    assert not sorted(set(ids) - set(RECIPES)), "rows without a request recipe in this file"
    assert not sorted(set(RECIPES) - set(ids)), "recipes without a row"
    for r in ROWS:
        assert r.allowed <= set(CALLERS), r.id


# --- the fresh partner and the callers ----------------------------------------------------------

@dataclass
class World:
    f: Fresh
    clients: dict[str, Client]
    activation: str  # active technical activation (INCIDENTS)
    support_request: str
    product: str  # a software product of this module, for the operator's key loading
    n: list[int] = field(default_factory=lambda: [0])

    @property
    def partner(self) -> str:
        return self.f.partner

    def benefit(self, product_id: str) -> str:
        return self.f.benefits[product_id]

    def uid(self, who: str) -> str:
        return OPERATOR_SUB if who == OP else self.f.users[ROLE_OF[who]]

    def tag(self) -> str:
        self.n[0] += 1
        return f"{uuid.uuid4().hex[:8]}-{self.n[0]}"


def _give_key(benefit_id: str) -> None:
    """A key handed to the benefit as a first reveal would (encrypted like the service does),
    so reveals in the matrix return it and never take keys of the demo pools."""
    kek = os.environ["KEY_ENCRYPTION_KEY"]
    key = f"RM-{uuid.uuid4().hex[:20].upper()}"
    db_exec("INSERT INTO license_keys (product_id, key_enc, key_mac, benefit_id, assigned_at) "
            "SELECT product_id, pgp_sym_encrypt(%s, %s), hmac(%s, %s, 'sha256'), id, now() "
            "FROM benefits WHERE id = %s", key, kek, key, kek, benefit_id)
    db_exec("UPDATE benefits SET status = 'active', activated_at = now(), used = quantity "
            "WHERE id = %s", benefit_id)


@pytest.fixture(scope="module")
def world():
    f = fresh_partner()
    set_contact(f)
    for p in (WINDOWS_SERVER, M365):
        _give_key(f.benefits[p])
    tech = f.benefits[INCIDENTS]
    aid = f"AID-RM{uuid.uuid4().hex[:12].upper()}"
    cid = f"CTR-RM{uuid.uuid4().hex[:12].upper()}"
    activation = db_val(
        "INSERT INTO activations (partner_id, benefit_id, kind, status, requested_by, "
        "processed_by, processed_at, access_id, contract_id) VALUES "
        "(%s, %s, 'technical', 'active', 'test', 'test', now(), %s, %s) RETURNING id::text",
        f.partner, tech, aid, cid)
    db_exec("UPDATE benefits SET status = 'active', activated_at = now(), access_id = %s, "
            "contract_id = %s WHERE id = %s", aid, cid, tech)
    sr = db_val("INSERT INTO support_requests (partner_id, benefit_id, type, units, created_by) "
                "VALUES (%s, %s, 'on_premises', 1, 'test') RETURNING id::text", f.partner, tech)
    code = f"role-matrix-{uuid.uuid4().hex[:10]}"
    product = db_val("WITH p AS (INSERT INTO products (code, name, category, languages, "
                     "os_types) VALUES (%s, %s, 'software', '{en-US}', '{x64}') RETURNING id), "
                     "d AS (INSERT INTO product_downloads (product_id, language, os, url) "
                     "SELECT id, 'en-US', 'x64', 'https://downloads.example/rm.iso' FROM p) "
                     "SELECT id::text FROM p", code, f"Product {code}")
    clients = {}
    for who in CALLERS:
        if who == OP:
            clients[who] = Client(BASE, operator_token())
        else:
            role = ROLE_OF[who]
            clients[who] = Client(BASE, token(f.users[role], f.partner,
                                              [] if who == EMP else [role]))
    yield World(f, clients, activation, sr, product)
    for c in clients.values():
        c.close()


# --- one recipe per row: a valid request, and what an allowed caller gets ------------------------

@dataclass
class Req:
    path: str
    json: Any = None
    params: dict | None = None
    expect: int = 200
    code: str | None = None  # problem code when the allowed answer is a (domain) problem


Recipe = Callable[[World, str], Req]
RECIPES: dict[str, Recipe] = {}
P = "/v1/partners/{partnerId}"
B = P + "/benefits/{benefitId}"


def recipe(method: str, path: str, variant: str = ""):
    def reg(fn: Recipe) -> Recipe:
        RECIPES[Row(method, path, frozenset(), variant).id] = fn
        return fn
    return reg


def pp(w: World, rest: str = "") -> str:
    return f"/v1/partners/{w.partner}{rest}"


def bp(w: World, product_id: str, rest: str = "") -> str:
    return pp(w, f"/benefits/{w.benefit(product_id)}{rest}")


for _path in ("/healthz", "/readyz", "/openapi.yaml", "/docs", "/docs/redoc.standalone.js", "/metrics",
              "/v1/me", "/v1/packages"):
    recipe("GET", _path)(lambda w, who, _p=_path: Req(_p))
recipe("GET", "/v1/packages/{packageId}")(lambda w, who: Req(f"/v1/packages/{GOLD}"))

# membership, users, audit
recipe("GET", P)(lambda w, who: Req(pp(w)))
recipe("GET", P + "/users")(lambda w, who: Req(pp(w, "/users")))
recipe("GET", P + "/users/{userId}")(
    lambda w, who: Req(pp(w, f"/users/{w.f.users['employee']}")))
recipe("GET", P + "/audit-events")(lambda w, who: Req(pp(w, "/audit-events")))


@recipe("POST", P + "/users")
def _(w, who):
    t = w.tag()
    return Req(pp(w, "/users"), {"email": f"new-{t}@fresh.example", "display_name": f"New {t}",
                                 "roles": []}, expect=201)


@recipe("PATCH", P + "/users/{userId}")
def _(w, who):
    return Req(pp(w, f"/users/{w.f.users['employee']}"),
               {"display_name": f"Employee {w.tag()}"})


@recipe("DELETE", P + "/users/{userId}")
def _(w, who):
    t = w.tag()
    victim = db_val("INSERT INTO users (partner_id, email, display_name) VALUES (%s, %s, %s) "
                    "RETURNING id::text", w.partner, f"leaver-{t}@fresh.example", f"Leaver {t}")
    return Req(pp(w, f"/users/{victim}"), expect=204)


# purchases
recipe("GET", P + "/purchases")(lambda w, who: Req(pp(w, "/purchases")))
recipe("GET", P + "/purchases/{purchaseId}")(
    lambda w, who: Req(pp(w, f"/purchases/{w.f.purchase}")))
recipe("GET", P + "/purchases/{purchaseId}/refund-eligibility")(
    lambda w, who: Req(pp(w, f"/purchases/{w.f.purchase}/refund-eligibility")))


@recipe("POST", P + "/purchases")
def _(w, who):
    db_exec("UPDATE purchases SET status = 'cancelled', cancelled_at = now() "
            "WHERE partner_id = %s AND package_id = %s AND status = 'active'", w.partner, SILVER)
    return Req(pp(w, "/purchases"), {"package_id": SILVER}, expect=201)


@recipe("POST", P + "/purchases/{purchaseId}/renewal")
def _(w, who):
    db_exec("UPDATE purchases SET term_end = now() + interval '30 days' WHERE id = %s",
            w.f.purchase)
    return Req(pp(w, f"/purchases/{w.f.purchase}/renewal"), {})


@recipe("POST", P + "/purchases/{purchaseId}/cancellation")
def _(w, who):
    db_exec("UPDATE purchases SET status = 'cancelled', cancelled_at = now() "
            "WHERE partner_id = %s AND package_id = %s AND status = 'active'", w.partner,
            ACTION_PACK)
    pid = db_val("INSERT INTO purchases (partner_id, package_id, purchased_at, term_end, "
                 "created_by) VALUES (%s, %s, now() - interval '1 day', "
                 "now() + interval '1 year', 'test') RETURNING id::text", w.partner, ACTION_PACK)
    return Req(pp(w, f"/purchases/{pid}/cancellation"), {})


# issue 13: cancellation requests, each on a throwaway purchase of its own (a pending request
# blocks its purchase's keys, seats and activations, which other rows use)
def _throwaway_purchase(w: World) -> str:
    db_exec("UPDATE purchases SET status = 'cancelled', cancelled_at = now() "
            "WHERE partner_id = %s AND package_id = %s AND status = 'active'", w.partner,
            ACTION_PACK)
    return db_val("INSERT INTO purchases (partner_id, package_id, purchased_at, term_end, "
                  "created_by) VALUES (%s, %s, now() - interval '1 day', "
                  "now() + interval '1 year', 'test') RETURNING id::text", w.partner, ACTION_PACK)


def _pending_request(w: World) -> str:
    return db_val("INSERT INTO cancellation_requests (partner_id, purchase_id, reason, "
                  "refund_amount, refund_currency, requested_by) VALUES (%s, %s, 'Role matrix', "
                  "0, 'USD', 'test') RETURNING id::text", w.partner, _throwaway_purchase(w))


recipe("GET", P + "/cancellation-requests")(lambda w, who: Req(pp(w, "/cancellation-requests")))
recipe("POST", P + "/cancellation-requests")(
    lambda w, who: Req(pp(w, "/cancellation-requests"),
                       {"purchase_id": _throwaway_purchase(w), "reason": "Role matrix"},
                       expect=202))
recipe("GET", P + "/cancellation-requests/{requestId}")(
    lambda w, who: Req(pp(w, f"/cancellation-requests/{_pending_request(w)}")))
recipe("GET", "/v1/admin/cancellation-requests")(
    lambda w, who: Req("/v1/admin/cancellation-requests", params={"status": "pending"}))
recipe("POST", "/v1/admin/cancellation-requests/{requestId}/complete")(
    lambda w, who: Req(f"/v1/admin/cancellation-requests/{_pending_request(w)}/complete", {}))
recipe("POST", "/v1/admin/cancellation-requests/{requestId}/reject")(
    lambda w, who: Req(f"/v1/admin/cancellation-requests/{_pending_request(w)}/reject",
                       {"reason": "Role matrix: not this time."}))


# benefits
recipe("GET", P + "/benefits", "all categories the caller may see")(
    lambda w, who: Req(pp(w, "/benefits")))
recipe("GET", P + "/benefits", "category=technical")(
    lambda w, who: Req(pp(w, "/benefits"), params={"category": "technical"}))
recipe("GET", B, "software benefit")(lambda w, who: Req(bp(w, WINDOWS_SERVER)))
recipe("GET", B, "technical benefit")(lambda w, who: Req(bp(w, INCIDENTS)))
recipe("POST", B + "/keys", "software benefit")(
    lambda w, who: Req(bp(w, WINDOWS_SERVER, "/keys"), {"language": "en-US", "os": "x64"}))
recipe("POST", B + "/keys", "license-based cloud benefit")(
    lambda w, who: Req(bp(w, M365, "/keys"), {"language": "de-DE", "os": "arm64"}))
recipe("GET", B + "/assignments", "visual_studio benefit")(
    lambda w, who: Req(bp(w, VS_ENTERPRISE, "/assignments")))


@recipe("GET", B + "/assignments/{userId}", "visual_studio seat (the Location of a created one)")
def _(w, who):
    emp, b = w.f.users["employee"], w.benefit(VS_ENTERPRISE)
    if not db_val("SELECT 1 FROM seat_assignments WHERE benefit_id = %s AND user_id = %s", b,
                  emp):
        assign_seat(b, emp)
    return Req(bp(w, VS_ENTERPRISE, f"/assignments/{emp}"))


@recipe("POST", B + "/assignments", "visual_studio seat for another user")
def _(w, who):
    emp = w.f.users["employee"]
    db_exec("DELETE FROM seat_assignments WHERE benefit_id = %s AND user_id = %s",
            w.benefit(VS_ENTERPRISE), emp)
    return Req(bp(w, VS_ENTERPRISE, "/assignments"), {"user_id": emp}, expect=201)


@recipe("POST", B + "/assignments", "usage-based cloud, assigning yourself")
def _(w, who):
    db_exec("DELETE FROM seat_assignments WHERE benefit_id = %s", w.benefit(AZURE))
    return Req(bp(w, AZURE, "/assignments"), {"user_id": w.uid(who)}, expect=201)


@recipe("DELETE", B + "/assignments/{userId}", "visual_studio seat of another user")
def _(w, who):
    emp, b = w.f.users["employee"], w.benefit(VS_ENTERPRISE)
    if not db_val("SELECT 1 FROM seat_assignments WHERE benefit_id = %s AND user_id = %s", b,
                  emp):
        assign_seat(b, emp)
    return Req(bp(w, VS_ENTERPRISE, f"/assignments/{emp}"), expect=204)


@recipe("DELETE", B + "/assignments/{userId}", "usage-based cloud, your own seat")
def _(w, who):
    b = w.benefit(AZURE)
    holder = w.uid(who) if who != OP else w.f.users["global_admin"]
    db_exec("DELETE FROM seat_assignments WHERE benefit_id = %s", b)
    assign_seat(b, holder)
    return Req(bp(w, AZURE, f"/assignments/{holder}"), expect=204)


def _fresh_activation(benefit_id: str) -> None:
    db_exec("DELETE FROM activations WHERE benefit_id = %s", benefit_id)
    db_exec("UPDATE benefits SET status = 'available', activated_at = NULL, access_id = NULL, "
            "contract_id = NULL, expires_at = NULL WHERE id = %s", benefit_id)


@recipe("POST", B + "/activation", "technical benefit")
def _(w, who):
    _fresh_activation(w.benefit(PRESALES_HOURS))
    return Req(bp(w, PRESALES_HOURS, "/activation"), {}, expect=202)


@recipe("POST", B + "/activation", "go_to_market offer")
def _(w, who):
    _fresh_activation(w.benefit(GOLD_CORE))
    return Req(bp(w, GOLD_CORE, "/activation"), {}, expect=202)


recipe("POST", B + "/activation", "software benefit (not activatable)")(
    lambda w, who: Req(bp(w, WINDOWS_SERVER, "/activation"), {}, expect=422,
                       code="validation-failed"))
recipe("GET", P + "/activations/{activationId}")(
    lambda w, who: Req(pp(w, f"/activations/{w.activation}")))
recipe("GET", B + "/support-requests")(
    lambda w, who: Req(bp(w, INCIDENTS, "/support-requests")))
recipe("POST", B + "/support-requests")(
    lambda w, who: Req(bp(w, INCIDENTS, "/support-requests"),
                       {"type": "on_premises", "description": "Role matrix"}, expect=201))
recipe("GET", B + "/support-requests/{supportRequestId}")(
    lambda w, who: Req(bp(w, INCIDENTS, f"/support-requests/{w.support_request}")))

# issue 13 (part a): the partner's activations, support requests, Global admins
recipe("GET", P + "/activations")(
    lambda w, who: Req(pp(w, "/activations"), params={"status": "active"}))
recipe("GET", P + "/support-requests")(lambda w, who: Req(pp(w, "/support-requests")))
recipe("GET", P + "/global-admins")(lambda w, who: Req(pp(w, "/global-admins")))

# marketing contact
recipe("GET", P + "/marketing-contact")(lambda w, who: Req(pp(w, "/marketing-contact")))


@recipe("PUT", P + "/marketing-contact")
def _(w, who):
    return Req(pp(w, "/marketing-contact"),
               {"user_id": w.f.users["mpn_partner_admin"],
                "email": f"marketing-{w.tag()}@fresh.example", "phone": "+14255550123",
                "preferred_language": "en-US"})


# operator
recipe("GET", "/v1/admin/partners")(lambda w, who: Req("/v1/admin/partners"))
recipe("GET", "/v1/admin/activations")(
    lambda w, who: Req("/v1/admin/activations", params={"status": "pending"}))


@recipe("POST", "/v1/admin/partners")
def _(w, who):
    t = w.tag()
    mpn = random.randint(10**9, 9 * 10**11)
    return Req("/v1/admin/partners", {
        "mpn_id": mpn, "name": f"Matrix {t}", "account_email": f"account-{t}@matrix.example",
        "membership_location": "partner_center", "level": "member",
        "global_admin": {"email": f"ga-{t}@matrix.example", "display_name": "Matrix Admin"}},
        expect=201)


recipe("PATCH", "/v1/admin/partners/{partnerId}")(
    lambda w, who: Req(f"/v1/admin/partners/{w.partner}", {"name": f"Fresh {w.tag()}"}))
recipe("POST", "/v1/admin/products/{productId}/keys")(
    lambda w, who: Req(f"/v1/admin/products/{w.product}/keys",
                       {"keys": [f"RM-{uuid.uuid4().hex[:16].upper()}"]}))


def _pending_activation(w: World) -> str:
    b = w.benefit(ADVISORY_HOURS)
    _fresh_activation(b)
    db_exec("UPDATE benefits SET status = 'pending' WHERE id = %s", b)
    return db_val("INSERT INTO activations (partner_id, benefit_id, kind, requested_by) "
                  "VALUES (%s, %s, 'technical', 'test') RETURNING id::text", w.partner, b)


recipe("POST", "/v1/admin/activations/{activationId}/complete")(
    lambda w, who: Req(f"/v1/admin/activations/{_pending_activation(w)}/complete", {}))
recipe("POST", "/v1/admin/activations/{activationId}/reject")(
    lambda w, who: Req(f"/v1/admin/activations/{_pending_activation(w)}/reject",
                       {"reason": "Role matrix: not this time."}))


# token revocation (issue 11): a throwaway user, and a throwaway partner (revoking the world's
# partner would refuse every caller's token from then on)
@recipe("POST", P + "/users/{userId}/revoke-tokens")
def _(w, who):
    t = w.tag()
    victim = db_val("INSERT INTO users (partner_id, email, display_name) VALUES (%s, %s, %s) "
                    "RETURNING id::text", w.partner, f"revoked-{t}@fresh.example", f"Revoked {t}")
    return Req(pp(w, f"/users/{victim}/revoke-tokens"), {})


@recipe("POST", "/v1/admin/partners/{partnerId}/revoke-tokens")
def _(w, who):
    from fresh_partner import _insert_partner
    other = _insert_partner("partner_center", "gold", False, f"rm-{w.tag()}@fresh.example")
    return Req(f"/v1/admin/partners/{other}/revoke-tokens", {})
# events and webhooks (issue 12)
recipe("GET", P + "/events")(lambda w, who: Req(pp(w, "/events"), params={"limit": 5}))


WH = P + "/webhooks/{webhookId}"
NOWHERE = "http://127.0.0.1:9/role-matrix"  # nothing listens; only webhook.disabled is wanted


def _webhook(w: World) -> str:
    return db_val("INSERT INTO webhooks (partner_id, url, event_types, secret_enc) VALUES "
                  "(%s, %s, '{webhook.disabled}', pgp_sym_encrypt('whsec_' || "
                  "encode(gen_random_bytes(32), 'base64'), %s)) RETURNING id::text",
                  w.partner, NOWHERE, os.environ["KEY_ENCRYPTION_KEY"])


def _delivery(w: World, wid: str) -> str:
    return db_val("INSERT INTO webhook_deliveries (webhook_id, partner_id, event_id, event_type, "
                  "payload, status, attempts) VALUES (%s, %s, %s, 'webhook.ping', '{}', "
                  "'failed', 8) RETURNING id::text", wid, w.partner, f"ping_{w.tag()}")


recipe("GET", P + "/webhooks")(lambda w, who: Req(pp(w, "/webhooks")))
recipe("POST", P + "/webhooks")(
    lambda w, who: Req(pp(w, "/webhooks"), {"url": NOWHERE, "event_types": ["webhook.disabled"]},
                       expect=201))
recipe("GET", WH)(lambda w, who: Req(pp(w, f"/webhooks/{_webhook(w)}")))
recipe("PATCH", WH)(
    lambda w, who: Req(pp(w, f"/webhooks/{_webhook(w)}"), {"description": f"Matrix {w.tag()}"}))
recipe("DELETE", WH)(lambda w, who: Req(pp(w, f"/webhooks/{_webhook(w)}"), expect=204))
recipe("POST", WH + "/rotate-secret")(
    lambda w, who: Req(pp(w, f"/webhooks/{_webhook(w)}/rotate-secret"), {}))
recipe("POST", WH + "/ping")(
    lambda w, who: Req(pp(w, f"/webhooks/{_webhook(w)}/ping"), {}, expect=202))
recipe("GET", WH + "/deliveries")(
    lambda w, who: Req(pp(w, f"/webhooks/{_webhook(w)}/deliveries")))


@recipe("POST", WH + "/deliveries/{deliveryId}/retry")
def _(w, who):
    wid = _webhook(w)
    return Req(pp(w, f"/webhooks/{wid}/deliveries/{_delivery(w, wid)}/retry"), {}, expect=202)


recipe("GET", "/v1/admin/mail-deliveries")(
    lambda w, who: Req("/v1/admin/mail-deliveries", params={"limit": 5}))
# issue 14: the catalog by API
recipe("POST", "/v1/admin/products")(
    lambda w, who: Req("/v1/admin/products",
                       {"code": f"rm-{w.tag()}", "name": "Role matrix product",
                        "category": "visual_studio"}, expect=201))
recipe("GET", "/v1/admin/products/{productId}")(
    lambda w, who: Req(f"/v1/admin/products/{w.product}"))
recipe("PATCH", "/v1/admin/products/{productId}")(
    lambda w, who: Req(f"/v1/admin/products/{w.product}", {"name": f"Product {w.tag()}"}))
recipe("PUT", "/v1/admin/products/{productId}/downloads")(
    lambda w, who: Req(f"/v1/admin/products/{w.product}/downloads",
                       {"items": [{"language": "en-US", "os": "x64",
                                   "url": f"https://downloads.example/{w.tag()}.iso"}]}))
recipe("GET", "/v1/admin/products/{productId}/key-pool")(
    lambda w, who: Req(f"/v1/admin/products/{w.product}/key-pool"))
recipe("GET", P + "/benefits/summary")(lambda w, who: Req(pp(w, "/benefits/summary")))
recipe("GET", B + "/downloads", "software benefit")(
    lambda w, who: Req(bp(w, WINDOWS_SERVER, "/downloads"), params={"language": "en-US"}))


@recipe("POST", B + "/assignments/batch", "visual_studio seats")
def _(w, who):
    emp = w.f.users["employee"]
    db_exec("DELETE FROM seat_assignments WHERE benefit_id = %s AND user_id = %s",
            w.benefit(VS_ENTERPRISE), emp)
    return Req(bp(w, VS_ENTERPRISE, "/assignments/batch"), {"add": [emp]})


def _package(w: World) -> dict:
    return {"code": f"rm-pkg-{w.tag()}", "name": "Role matrix package", "price": 10.5,
            "currency": "USD", "term_months": 12,
            "benefits": [{"product_id": w.product, "quantity": 2}]}


recipe("POST", "/v1/admin/packages")(
    lambda w, who: Req("/v1/admin/packages", _package(w), expect=201))


@recipe("PATCH", "/v1/admin/packages/{packageId}")
def _(w, who):
    body = _package(w)
    pkg = db_val("INSERT INTO packages (code, name, price, currency, term_months) "
                 "VALUES (%s, 'x', 1, 'USD', 12) RETURNING id::text", body["code"])
    return Req(f"/v1/admin/packages/{pkg}", {"name": f"Package {w.tag()}", "price": 3,
                                             "benefits": body["benefits"]})


# --- the matrix ---------------------------------------------------------------------------------

def _send(c: Client, method: str, req: Req):
    headers = idem() if method == "POST" else None
    return c.request(method, req.path, json=req.json, params=req.params, headers=headers)


def _audit_count(actor: str) -> int:
    return db_val("SELECT count(*) FROM audit_events WHERE actor = %s", actor)


def _state(w: World) -> dict:
    """Everything a refused call could write: every row of the matrix's partner (helpers'
    partner snapshot, as the tenant sweep takes it), plus what the operator rows write outside
    it (new partners, keys of the module's product) and the audit trail of every actor."""
    s = partner_snapshot(w.partner)
    s["outside (partners, product keys, all audit events)"] = db_one(
        "SELECT (SELECT count(*) FROM partners), (SELECT max(created_at)::text FROM partners), "
        "(SELECT count(*) FROM license_keys WHERE product_id = %s), "
        "(SELECT count(*) FROM audit_events), (SELECT max(id) FROM audit_events)", w.product)
    return s


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_role_matrix(world, row: Row):
    failures = []
    for who in CALLERS:
        req = RECIPES[row.id](world, who)
        mutating = row.method != "GET"
        refused = who not in row.allowed
        before = _audit_count(world.uid(who)) if mutating else None
        state = _state(world) if refused else None
        r = _send(world.clients[who], row.method, req)
        what = f"{who} ({ROLE_OF[who]}) {row.method} {req.path}"
        try:
            if who in row.allowed:
                assert r.status_code not in (401, 403), f"{what}: allowed, got {r.status_code}"
                if req.code:
                    assert_problem(r, req.expect, req.code)
                else:
                    assert r.status_code == req.expect, \
                        f"{what}: expected {req.expect}, got {r.status_code}: {r.text[:300]}"
            else:
                body = assert_problem(r, 403, "forbidden-role")
                if row.path.startswith("/v1/partners/"):
                    assert "Global admin" in body["detail"], body
                elif row.path.startswith("/v1/admin/"):
                    assert "operator" in body["detail"], body
                if mutating:
                    assert _audit_count(world.uid(who)) == before, f"{what}: denied, yet audited"
                # writes nothing, audited or not (a GET must not write either)
                changed = snapshot_diff(state, _state(world))
                assert not changed, f"{what}: denied, yet changed {changed}"
        except AssertionError as e:
            failures.append(str(e))
    assert not failures, f"{row.id}:\n" + "\n".join(failures)


@pytest.mark.parametrize("row", [r for r in ROWS if r.public], ids=lambda r: r.id)
def test_public_routes_need_no_token(base, row):
    r = Client(base).request(row.method, row.path)
    assert r.status_code == 200, r.text[:300]
