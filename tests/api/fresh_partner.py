"""A fresh partner of its own for a test (issue 5 tests): made with SQL so that the demo
partners stay as every other test expects them. `fresh_partner()` inserts a partner, five users
(one per role plus an employee) and a purchase of a package with one benefit per allocation."""
from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field

import psycopg2

from helpers import Client, db_all, db_exec, db_one, db_val, token

ACTION_PACK = "bbbbbbbb-0000-4000-8000-000000000001"
SILVER = "bbbbbbbb-0000-4000-8000-000000000002"
GOLD = "bbbbbbbb-0000-4000-8000-000000000003"


def product(nn: int) -> str:
    return f"aaaaaaaa-0000-4000-8000-{nn:012d}"


WINDOWS_SERVER = product(1)
M365 = product(5)
VS_ENTERPRISE = product(6)
INCIDENTS = product(8)  # technical, counted in incidents
ADVISORY_HOURS = product(9)  # technical, counted in hours
PRESALES_HOURS = product(10)
SILVER_CORE = product(11)  # go_to_market: silver competency
GOLD_CORE = product(12)  # go_to_market: gold competency
CO_SELL = product(13)  # go_to_market: co-sell ready


@dataclass
class Fresh:
    partner: str
    account_email: str
    users: dict[str, str]  # role name (or "employee") -> user id
    purchase: str
    benefits: dict[str, str] = field(default_factory=dict)  # product id -> benefit id

    def client(self, base: str, role: str = "global_admin") -> Client:
        roles = [] if role == "employee" else [role]
        return Client(base, token(self.users[role], self.partner, roles))

    def path(self, rest: str = "") -> str:
        return f"/v1/partners/{self.partner}{rest}"

    def benefit_path(self, product_id: str, rest: str = "") -> str:
        return self.path(f"/benefits/{self.benefits[product_id]}{rest}")


def _insert_partner(location, level, co_sell_ready, email) -> str:
    for _ in range(20):
        mpn = random.randint(10**9, 9 * 10**12)
        try:
            return db_val(
                "INSERT INTO partners (mpn_id, name, account_email, membership_location, level, "
                "co_sell_ready) VALUES (%s, %s, %s, %s, %s, %s) RETURNING id::text",
                mpn, f"Fresh {mpn}", email, location, level, co_sell_ready)
        except psycopg2.errors.UniqueViolation:
            continue
    raise AssertionError("could not pick a free mpn_id")


def fresh_partner(*, location: str = "partner_center", level: str = "gold",
                  competencies=(("Cloud Platform", "gold", "1 year"),),
                  co_sell_ready: bool = True, package: str = GOLD) -> Fresh:
    """competencies: (area, level, interval until expiry, e.g. '1 year' or '-1 day')."""
    tag = uuid.uuid4().hex[:10]
    email = f"account-{tag}@fresh.example"
    partner = _insert_partner(location, level, co_sell_ready, email)
    for area, lvl, until in competencies:
        db_exec("INSERT INTO partner_competencies (partner_id, area, level, expires_at) "
                "VALUES (%s, %s, %s, now() + %s::interval)", partner, area, lvl, until)
    users = {}
    for role in ("global_admin", "mpn_partner_admin", "admin_agent", "user_admin", "employee"):
        roles = [] if role == "employee" else [role]
        users[role] = db_val(
            "INSERT INTO users (partner_id, email, display_name, roles) "
            "VALUES (%s, %s, %s, %s) RETURNING id::text",
            partner, f"{role}-{tag}@fresh.example", f"Fresh {role}", roles)
    purchase = db_val(
        "INSERT INTO purchases (partner_id, package_id, purchased_at, term_end, created_by) "
        "SELECT %s, id, now() - interval '1 day', "
        "now() - interval '1 day' + make_interval(months => term_months), 'test' "
        "FROM packages WHERE id = %s RETURNING id::text", partner, package)
    rows = db_all(
        "INSERT INTO benefits (partner_id, purchase_id, product_id, category, quantity) "
        "SELECT %s, %s, pb.product_id, p.category, pb.quantity FROM package_benefits pb "
        "JOIN products p ON p.id = pb.product_id WHERE pb.package_id = %s "
        "RETURNING product_id::text, id::text", partner, purchase, package)
    return Fresh(partner, email, users, purchase, dict(rows))


def set_contact(f: Fresh) -> None:
    """A valid marketing contact, straight in the database."""
    db_exec("INSERT INTO marketing_contacts (partner_id, user_id, email, phone, preferred_language) "
            "VALUES (%s, %s, %s, '+14255550100', 'en-US')", f.partner,
            f.users["mpn_partner_admin"], f"marketing-{f.partner[:8]}@fresh.example")


def reveal_key(benefit_id: str) -> None:
    """Simulates a key reveal: a license key of the benefit's product handed to it (a row of its
    own, so the demo key pools stay as they are)."""
    db_exec("INSERT INTO license_keys (product_id, key_enc, key_mac, benefit_id, assigned_at) "
            "SELECT product_id, gen_random_bytes(32), gen_random_bytes(32), id, now() "
            "FROM benefits WHERE id = %s", benefit_id)
    db_exec("UPDATE benefits SET status = 'active', activated_at = now() WHERE id = %s",
            benefit_id)


def assign_seat(benefit_id: str, user_id: str) -> None:
    db_exec("INSERT INTO seat_assignments (benefit_id, user_id, assigned_by) VALUES (%s, %s, 'test')",
            benefit_id, user_id)


def benefit_row(benefit_id: str) -> tuple:
    """(status, used, access_id, contract_id, expires_at) as stored."""
    return db_one("SELECT status, used, access_id, contract_id, expires_at FROM benefits "
                  "WHERE id = %s", benefit_id)


def activate(c: Client, f: Fresh, product_id: str) -> dict:
    r = c.post(f.benefit_path(product_id, "/activation"))
    assert r.status_code == 202, r.text
    return r.json()


def complete(op: Client, activation_id: str) -> dict:
    r = op.post(f"/v1/admin/activations/{activation_id}/complete")
    assert r.status_code == 200, r.text
    return r.json()
