"""The role matrix of DESIGN §2, per operation of api/openapi.yaml: THE one table.

test_role_matrix.py reads api/openapi.yaml and fails when an operation has no row here, or a row
names no operation; then, for every row and each of the six callers below, it sends a valid
request through Prism and checks: allowed -> the success status (or the row's domain answer),
never 401/403; not allowed -> 403 `forbidden-role`.

A new endpoint needs a row here and a request recipe in test_role_matrix.py (RECIPES).

Callers (all of one partner, except the operator, who has none):
  GA  global_admin        PA  mpn_partner_admin     AA  admin_agent
  UA  user_admin          OP  operator              EMP an employee whose token has no role

Some operations allow different callers depending on the benefit they act on (R6-R9); they
have one row per `variant` (the same method and path).

Where the decided matrix goes beyond DESIGN §2's table, the row says why (`note`):
  * the operator reads every partner (DESIGN §2 row 1, "✓ all partners") also where a row of
    §2 names only partner roles: technical benefits, their activations and support requests,
    users, refund eligibility. It never reads the marketing contact (§2: GA, PA only) and never
    changes a partner's data.
  * users are read by every partner role (Account settings lists the people one can assign),
    managed by GA and UA (§2 row R11).
"""
from __future__ import annotations

from dataclasses import dataclass

GA, PA, AA, UA, OP, EMP = "GA", "PA", "AA", "UA", "OP", "EMP"
CALLERS = (GA, PA, AA, UA, OP, EMP)
ROLE_OF = {GA: "global_admin", PA: "mpn_partner_admin", AA: "admin_agent", UA: "user_admin",
           OP: "operator", EMP: "employee"}

# DESIGN §2, one entry per line of its table (plus the catalog and /v1/me of §4a).
ANYONE = frozenset(CALLERS)                      # public routes, and any valid token
READ = frozenset({GA, PA, AA, UA, OP})           # read membership, benefits, purchases
PURCHASE = frozenset({GA, PA, AA})               # purchase / renew (R2)
KEYS = frozenset({GA, PA})                       # get keys, self-assign usage-based cloud (R4-R6)
ASSIGN_OTHERS = frozenset({GA})                  # seats for other users (R2, R7)
TECHNICAL = frozenset({GA, PA})                  # technical benefits (R8)
TECHNICAL_READ = frozenset({GA, PA, OP})         # ... and the operator reads them
MARKETING = frozenset({GA, PA})                  # marketing contact, Go-To-Market (R9)
CANCEL = frozenset({GA, PA})                     # request cancellation (R10)
REFUND_READ = frozenset({GA, PA, OP})            # refund eligibility: R10 roles + operator
MANAGE_USERS = frozenset({GA, UA})               # manage users and roles (R11)
AUDIT = frozenset({GA, OP})                      # audit trail of the partner
OPERATE = frozenset({OP})                        # activations, catalog, key pools; /v1/admin/*


@dataclass(frozen=True)
class Row:
    method: str
    path: str  # as in api/openapi.yaml
    allowed: frozenset
    variant: str = ""  # what the request acts on, when that changes who may do it
    note: str = ""

    @property
    def op(self) -> tuple[str, str]:
        return (self.method, self.path)

    @property
    def id(self) -> str:
        return f"{self.method} {self.path}" + (f" [{self.variant}]" if self.variant else "")

    @property
    def public(self) -> bool:
        return not self.path.startswith("/v1/")


P = "/v1/partners/{partnerId}"
B = P + "/benefits/{benefitId}"

ROWS: list[Row] = [
    # --- public and any token (DESIGN §4a) -----------------------------------------------------
    Row("GET", "/healthz", ANYONE),
    Row("GET", "/readyz", ANYONE),
    Row("GET", "/openapi.yaml", ANYONE),
    Row("GET", "/docs", ANYONE),
    Row("GET", "/docs/redoc.standalone.js", ANYONE),
    Row("GET", "/metrics", ANYONE),
    Row("GET", "/v1/me", ANYONE),
    Row("GET", "/v1/packages", ANYONE),
    Row("GET", "/v1/packages/{packageId}", ANYONE),
    # --- membership, users (R11), audit ----------------------------------------------------------
    Row("GET", P, READ),
    Row("GET", P + "/users", READ, note="users are read by every role and the operator"),
    Row("POST", P + "/users", MANAGE_USERS),
    Row("GET", P + "/users/{userId}", READ, note="users are read by every role and the operator"),
    Row("PATCH", P + "/users/{userId}", MANAGE_USERS),
    Row("DELETE", P + "/users/{userId}", MANAGE_USERS),
    Row("GET", P + "/audit-events", AUDIT),
    # --- purchases (R2, R10) -------------------------------------------------------------------
    Row("GET", P + "/purchases", READ),
    Row("POST", P + "/purchases", PURCHASE),
    Row("GET", P + "/purchases/{purchaseId}", READ),
    Row("POST", P + "/purchases/{purchaseId}/renewal", PURCHASE),
    Row("GET", P + "/purchases/{purchaseId}/refund-eligibility", REFUND_READ,
        note="the operator reads it too (back office answers refund questions)"),
    Row("POST", P + "/purchases/{purchaseId}/cancellation", CANCEL),
    # issue 13: cancellation as a service request (the roles of the immediate cancellation)
    Row("GET", P + "/cancellation-requests", REFUND_READ,
        note="the operator reads every partner's requests (its queue is /v1/admin)"),
    Row("POST", P + "/cancellation-requests", CANCEL),
    Row("GET", P + "/cancellation-requests/{requestId}", REFUND_READ,
        note="the operator reads every partner's requests"),
    Row("GET", "/v1/admin/cancellation-requests", OPERATE),
    Row("POST", "/v1/admin/cancellation-requests/{requestId}/complete", OPERATE),
    Row("POST", "/v1/admin/cancellation-requests/{requestId}/reject", OPERATE),
    # --- benefits (R3-R8) ----------------------------------------------------------------------
    Row("GET", P + "/benefits", READ, "all categories the caller may see"),
    Row("GET", P + "/benefits", TECHNICAL_READ, "category=technical",
        note="R8: technical benefits are visible to GA, PA (and the operator)"),
    Row("GET", B, READ, "software benefit"),
    Row("GET", B, TECHNICAL_READ, "technical benefit", note="R8, operator reads"),
    Row("POST", B + "/keys", KEYS, "software benefit"),
    Row("POST", B + "/keys", KEYS, "license-based cloud benefit"),
    Row("GET", B + "/assignments", READ, "visual_studio benefit"),
    Row("GET", B + "/assignments/{userId}", READ, "visual_studio seat (the Location of a created one)"),
    Row("POST", B + "/assignments", ASSIGN_OTHERS, "visual_studio seat for another user"),
    Row("POST", B + "/assignments", KEYS, "usage-based cloud, assigning yourself"),
    Row("DELETE", B + "/assignments/{userId}", ASSIGN_OTHERS, "visual_studio seat of another user"),
    Row("DELETE", B + "/assignments/{userId}", KEYS, "usage-based cloud, your own seat"),
    Row("POST", B + "/activation", TECHNICAL, "technical benefit"),
    Row("POST", B + "/activation", MARKETING, "go_to_market offer"),
    Row("POST", B + "/activation", TECHNICAL | MARKETING, "software benefit (not activatable)",
        note="only GA and PA may activate anything: they get 422, everyone else 403"),
    Row("GET", P + "/activations/{activationId}", TECHNICAL_READ | MARKETING,
        note="R8/R9, operator reads"),
    Row("GET", B + "/support-requests", TECHNICAL_READ, note="R8, operator reads"),
    Row("POST", B + "/support-requests", TECHNICAL),
    Row("GET", B + "/support-requests/{supportRequestId}", TECHNICAL_READ,
        note="R8, operator reads"),
    # --- marketing contact (R9) ------------------------------------------------------------------
    Row("GET", P + "/marketing-contact", MARKETING),
    Row("PUT", P + "/marketing-contact", MARKETING),
    # --- operator --------------------------------------------------------------------------------
    Row("GET", "/v1/admin/partners", OPERATE),
    Row("POST", "/v1/admin/partners", OPERATE),
    Row("PATCH", "/v1/admin/partners/{partnerId}", OPERATE),
    Row("POST", "/v1/admin/products/{productId}/keys", OPERATE),
    Row("GET", "/v1/admin/activations", OPERATE),
    Row("POST", "/v1/admin/activations/{activationId}/complete", OPERATE),
    Row("POST", "/v1/admin/activations/{activationId}/reject", OPERATE),
    # --- token revocation (issue 11, DESIGN §4b) ---------------------------------------------------
    Row("POST", P + "/users/{userId}/revoke-tokens", MANAGE_USERS),
    Row("POST", "/v1/admin/partners/{partnerId}/revoke-tokens", OPERATE),
]

# --- events and webhooks (issue 12, DESIGN §4b) ----------------------------------------------------
EVENTS = frozenset({GA, PA, OP})                 # the event feed: GA, PA; the operator reads all
ROWS += [
    Row("GET", P + "/events", EVENTS, note="DESIGN §4b: global_admin, mpn_partner_admin, operator"),
]
WEBHOOKS = frozenset({GA, PA})                   # webhooks of the partner (DESIGN §4b)
WH = P + "/webhooks/{webhookId}"
ROWS += [
    Row("GET", P + "/webhooks", WEBHOOKS),
    Row("POST", P + "/webhooks", WEBHOOKS),
    Row("GET", WH, WEBHOOKS),
    Row("PATCH", WH, WEBHOOKS),
    Row("DELETE", WH, WEBHOOKS),
    Row("POST", WH + "/rotate-secret", WEBHOOKS),
    Row("POST", WH + "/ping", WEBHOOKS),
    Row("GET", WH + "/deliveries", WEBHOOKS),
    Row("POST", WH + "/deliveries/{deliveryId}/retry", WEBHOOKS),
]
ROWS += [
    Row("GET", "/v1/admin/mail-deliveries", OPERATE),
    # --- issue 14: catalog by API, downloads ---------------------------------------------------
    Row("POST", "/v1/admin/products", OPERATE),
    Row("GET", "/v1/admin/products/{productId}", OPERATE),
    Row("PATCH", "/v1/admin/products/{productId}", OPERATE),
    Row("PUT", "/v1/admin/products/{productId}/downloads", OPERATE),
    Row("GET", "/v1/admin/products/{productId}/key-pool", OPERATE),
    Row("POST", "/v1/admin/packages", OPERATE),
    Row("PATCH", "/v1/admin/packages/{packageId}", OPERATE),
    Row("POST", B + "/assignments/batch", ASSIGN_OTHERS, "visual_studio seats"),
    Row("GET", P + "/benefits/summary", READ, note="technical tiles only for GA, PA, OP (R8)"),
    Row("GET", B + "/downloads", READ, "software benefit",
        note="download links are no secret (keys are): every reader of the benefit sees them"),
]
# --- issue 13 (part a): partner reads ----------------------------------------------------------
ROWS += [
    Row("GET", P + "/activations", TECHNICAL_READ | MARKETING,
        note="as GET .../activations/{id}: GA, PA (R8, R9), the operator reads"),
    Row("GET", P + "/support-requests", TECHNICAL_READ,
        note="as the list of one benefit (R8), the operator reads"),
    Row("GET", P + "/global-admins", ANYONE,
        note="every token of the partner, an employee without a role included (the seed's "
             "'check with your Global admin'): names and emails of the Global admins only"),
]
