"""License keys (issue 4, R4, R5, R6): the operator loads key pools, Get keys hands a benefit
its keys once and the same keys every time after, keys stay unreadable at rest and out of
logs.

Each test makes its own product (with its own pool) and partner, so demo pools stay usable."""
import os
import uuid

import pytest

from helpers import (BASE, CONTOSO, FABRIKAM, GA_ID, Client, assert_problem, db_all, db_one,
                     db_val, idem, spawn_server, token)
from test_seats import AZURE, TECH_INCIDENTS, VS_ENTERPRISE, Tenant

LANGS = ["en-US", "de-DE"]
OSES = ["x64", "arm64"]


def new_product(category: str = "software", cloud_kind: str | None = None) -> str:
    """A fresh product with two languages x two OS types and a download per pair."""
    code = f"test-{category}-{uuid.uuid4().hex[:12]}"
    # one statement, one transaction: the product and its downloads (sql/011 checks at COMMIT)
    return db_val(
        "WITH p AS (INSERT INTO products (code, name, category, cloud_kind, languages, os_types, "
        "instructions, portal_url) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id, code, "
        "languages, os_types), d AS (INSERT INTO product_downloads (product_id, language, os, "
        "url) SELECT p.id, l, o, format('https://downloads.example.com/%%s/%%s/%%s.iso', "
        "p.code, l, o) FROM p, unnest(p.languages) l, unnest(p.os_types) o) "
        "SELECT id::text FROM p",
        code, f"Product {code}", category, cloud_kind, LANGS, OSES,
        f"Install {code}, then enter the key.",
        "https://admin.example.com" if category == "cloud" else None)


def fresh_keys(n: int) -> list[str]:
    return [f"TK{uuid.uuid4().hex[:6].upper()}-{uuid.uuid4().hex[:5].upper()}-"
            f"{uuid.uuid4().hex[:5].upper()}" for _ in range(n)]


def load(op, product_id: str, keys: list[str]):
    return op.post(f"/v1/admin/products/{product_id}/keys", json={"keys": keys}, headers=idem())


def pool(op, n: int, **kw) -> tuple[str, list[str]]:
    """A fresh product with n keys loaded through the API."""
    pid = new_product(**kw)
    keys = fresh_keys(n)
    r = load(op, pid, keys)
    assert r.status_code == 200, r.text
    return pid, keys


def reveal(client, t: Tenant, b: str, language: str = "en-US", os_: str = "x64", **kw):
    return client.post(t.path(b, "/keys"), json={"language": language, "os": os_}, **kw)


def service_logs() -> str:
    text = ""
    log_dir = os.environ.get("MB_LOG_DIR") or os.path.dirname(os.environ["MB_SERVICE_LOG"])
    for name in os.listdir(log_dir):
        if name.startswith("service") and name.endswith(".log"):
            with open(os.path.join(log_dir, name), encoding="utf-8", errors="replace") as f:
                text += f.read()
    return text


# --- key pools -------------------------------------------------------------------------------

def test_operator_loads_pool_and_duplicates_are_counted_not_added(op):
    pid = new_product()
    keys = fresh_keys(4)
    r = load(op, pid, keys + [keys[0]])
    assert r.status_code == 200, r.text
    assert r.json() == {"product_id": pid, "added": 4, "duplicates": 1, "available": 4}
    more = fresh_keys(1)
    r = load(op, pid, [keys[1], keys[2], more[0]])
    assert r.json() == {"product_id": pid, "added": 1, "duplicates": 2, "available": 5}
    assert db_val("SELECT count(*) FROM license_keys WHERE product_id = %s", pid) == 5
    details = [d for (d,) in db_all("SELECT details FROM audit_events WHERE action = 'keys.loaded' "
                                    "AND target_id = %s ORDER BY id", pid)]
    assert details == [{"added": 4, "duplicates": 1, "available": 4},
                       {"added": 1, "duplicates": 2, "available": 5}]


def test_license_cloud_products_take_keys_too(op):
    pid, _ = pool(op, 2, category="cloud", cloud_kind="license_based")
    assert db_val("SELECT count(*) FROM license_keys WHERE product_id = %s", pid) == 2


def test_keys_are_unreadable_at_rest(op):
    pid, keys = pool(op, 3)
    rows = db_all("SELECT key_enc::text, key_mac::text, encode(key_enc, 'escape') "
                  "FROM license_keys WHERE product_id = %s", pid)
    assert len(rows) == 3
    blob = "\n".join("\n".join(r) for r in rows)
    for k in keys:
        assert k not in blob and k.encode().hex() not in blob
    # ...and the whole table shows none of them either
    everything = "\n".join(r[0] for r in db_all("SELECT key_enc::text FROM license_keys"))
    assert not any(k in everything or k.encode().hex() in everything for k in keys)
    # but the service's key decrypts them (checks it is not one-way)
    clear = sorted(r[0] for r in db_all(
        "SELECT pgp_sym_decrypt(key_enc, %s) FROM license_keys WHERE product_id = %s",
        os.environ["KEY_ENCRYPTION_KEY"], pid))
    assert clear == sorted(keys)


def test_key_pool_load_is_operator_only(ga, pa):
    pid = new_product()
    for c in (ga, pa):
        assert_problem(load(c, pid, fresh_keys(1)), 403, "forbidden-role")
    assert db_val("SELECT count(*) FROM license_keys WHERE product_id = %s", pid) == 0


def test_key_pool_of_unknown_product_is_404(op):
    assert_problem(load(op, str(uuid.uuid4()), fresh_keys(1)), 404, "not-found")
    assert_problem(op.post("/v1/admin/products/not-a-uuid/keys", json={"keys": ["A"]}), 404,
                   "not-found")


@pytest.mark.parametrize("product", [VS_ENTERPRISE, AZURE, TECH_INCIDENTS])
def test_key_pool_of_product_without_keys_is_422(op, product):
    before = db_val("SELECT count(*) FROM license_keys WHERE product_id = %s", product)
    body = assert_problem(load(op, product, fresh_keys(1)), 422, "validation-failed")
    assert "software and license-based cloud" in body["detail"]
    assert db_val("SELECT count(*) FROM license_keys WHERE product_id = %s", product) == before


@pytest.mark.parametrize("body", [{}, {"keys": []}, {"keys": "ABC"}, {"keys": [1]},
                                  {"keys": [""]}, {"keys": ["A" * 201]},
                                  {"keys": ["A\u0001B"]}, {"keys": ["A"], "extra": 1},
                                  {"keys": ["K%d" % i for i in range(1001)]}])
def test_bad_key_pool_bodies_are_422(op, body):
    pid = new_product()
    assert_problem(op.post(f"/v1/admin/products/{pid}/keys", json=body), 422, "validation-failed")
    assert db_val("SELECT count(*) FROM license_keys WHERE product_id = %s", pid) == 0


def test_key_pool_of_1000_keys_loads(op):
    pid = new_product()
    r = load(op, pid, fresh_keys(1000))
    assert r.status_code == 200 and r.json()["added"] == 1000 and r.json()["available"] == 1000


# --- Get keys (R5, R6) ----------------------------------------------------------------------

@pytest.mark.seed("S12", "S13")
def test_second_reveal_returns_same_keys_with_other_download_links(op):
    pid, loaded = pool(op, 5)
    t = Tenant()
    b = t.benefit(pid, 3)
    ga = t.client(0)
    first = reveal(ga, t, b, "en-US", "x64", headers=idem())
    assert first.status_code == 200, first.text
    assert first.headers["Cache-Control"] == "no-store"
    doc = first.json()
    assert doc["benefit_id"] == b and doc["product_id"] == pid
    assert doc["language"] == "en-US" and doc["os"] == "x64"
    assert len(doc["keys"]) == 3 and set(doc["keys"]) <= set(loaded)
    assert doc["keys"] == loaded[:3]  # the pool hands keys out in load order
    assert [(d["language"], d["os"]) for d in doc["download_links"]] == [("en-US", "x64")]
    assert doc["instructions"].startswith("Install ")
    second = reveal(t.client(1), t, b, "de-DE", "arm64")
    assert second.status_code == 200, second.text
    assert second.json()["keys"] == doc["keys"]
    assert second.json()["download_links"][0]["url"].endswith("/de-DE/arm64.iso")
    assert second.json()["download_links"] != doc["download_links"]
    # the database: the keys belong to the benefit, the benefit is activated and used up
    assigned = db_val("SELECT count(*) FROM license_keys WHERE benefit_id = %s", b)
    assert assigned == 3
    row = db_one("SELECT status, used, activated_at IS NOT NULL FROM benefits WHERE id = %s", b)
    assert row == ("active", 3, True)
    shown = ga.get(t.path(b)).json()
    assert shown["status"] == "active" and shown["used"] == 3 and shown["quantity"] == 3
    assert db_all("SELECT language, os, revealed_by FROM key_reveals WHERE benefit_id = %s "
                  "ORDER BY id", b) == [("en-US", "x64", t.users[0]),
                                         ("de-DE", "arm64", t.users[1])]
    r = load(op, pid, fresh_keys(1))
    assert r.json()["available"] == 3  # 5 loaded - 3 taken + 1 new


@pytest.mark.seed("S20")
def test_license_based_cloud_benefit_gets_keys(op):
    pid, loaded = pool(op, 2, category="cloud", cloud_kind="license_based")
    t = Tenant()
    b = t.benefit(pid, 2)
    r = reveal(t.client(1), t, b, "de-DE", "x64")
    assert r.status_code == 200, r.text
    assert sorted(r.json()["keys"]) == sorted(loaded)


@pytest.mark.parametrize("who", [2, 3, 4])  # admin agent, user admin, no role
@pytest.mark.seed("S08")
def test_only_global_or_partner_admin_gets_keys(op, who):
    pid, _ = pool(op, 2)
    t = Tenant()
    b = t.benefit(pid, 1)
    body = assert_problem(reveal(t.client(who), t, b), 403, "forbidden-role")
    assert "Global admin" in body["detail"]
    assert db_val("SELECT count(*) FROM license_keys WHERE benefit_id = %s", b) == 0
    assert db_val("SELECT count(*) FROM key_reveals WHERE benefit_id = %s", b) == 0


@pytest.mark.seed("S09")
def test_admin_agent_gets_403_on_demo_benefit(aa):
    r = aa.post(f"/v1/partners/{CONTOSO}/benefits/dddddddd-0000-4000-8000-000000000001/keys",
                json={"language": "en-US", "os": "x64"})
    assert_problem(r, 403, "forbidden-role")


@pytest.mark.parametrize("field,value,allowed", [("os", "beos", OSES),
                                                 ("language", "xx-XX", LANGS)])
@pytest.mark.seed("S14", "S15")
def test_unknown_language_or_os_is_422_listing_the_allowed_ones(op, field, value, allowed):
    pid, _ = pool(op, 2)
    t = Tenant()
    b = t.benefit(pid, 1)
    req = {"language": "en-US", "os": "x64", field: value}
    body = assert_problem(t.client(0).post(t.path(b, "/keys"), json=req), 422,
                          "validation-failed")
    assert body["allowed"] == allowed
    assert body["errors"][0]["field"] == field
    assert field in body["detail"] and all(a in body["detail"] for a in allowed)
    # nothing taken, nothing revealed
    assert db_val("SELECT count(*) FROM license_keys WHERE benefit_id = %s", b) == 0
    assert db_val("SELECT count(*) FROM key_reveals WHERE benefit_id = %s", b) == 0
    assert db_one("SELECT status, used FROM benefits WHERE id = %s", b) == ("available", 0)


def test_reveal_is_audited_without_the_key(op):
    pid, loaded = pool(op, 2)
    t = Tenant()
    b = t.benefit(pid, 2)
    rid = f"reveal-{uuid.uuid4().hex[:8]}"
    assert reveal(t.client(0), t, b, "en-US", "arm64",
                  headers={"X-Request-Id": rid}).status_code == 200
    assert reveal(t.client(1), t, b, "de-DE", "x64").status_code == 200
    rows = db_all("SELECT actor, target_type, target_id, request_id, details, at IS NOT NULL "
                  "FROM audit_events WHERE partner_id = %s AND action = 'keys.revealed' "
                  "ORDER BY id", t.id)
    assert rows == [
        (t.users[0], "benefit", b, rid, {"language": "en-US", "os": "arm64", "first": True}, True),
        (t.users[1], "benefit", b, rows[1][3], {"language": "de-DE", "os": "x64", "first": False},
         True)]
    trail = "\n".join(r[0] for r in db_all("SELECT row_to_json(a)::text FROM audit_events a "
                                           "WHERE partner_id = %s OR target_id = %s", t.id, pid))
    assert not any(k in trail for k in loaded)


def test_keys_never_reach_logs_or_idempotency_records(op):
    pid, loaded = pool(op, 2)
    t = Tenant()
    b = t.benefit(pid, 2)
    h = idem()
    first = reveal(t.client(0), t, b, headers=h)
    again = reveal(t.client(0), t, b, headers=h)
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json() and sorted(first.json()["keys"]) == sorted(loaded)
    stored = db_all("SELECT body FROM idempotency_keys WHERE key = %s", h["Idempotency-Key"])
    assert len(stored) == 1 and not any(k in stored[0][0] for k in loaded)
    # the same key for another body is still refused
    assert_problem(reveal(t.client(0), t, b, "de-DE", headers=h), 422, "idempotency-key-reused")
    logs = service_logs()
    assert logs and not any(k in logs for k in loaded)
    assert os.environ["KEY_ENCRYPTION_KEY"] not in logs


def test_short_pool_is_409_key_pool_exhausted_and_nothing_taken(op):
    pid, _ = pool(op, 2)
    t = Tenant()
    b = t.benefit(pid, 3)
    body = assert_problem(reveal(t.client(0), t, b), 409, "key-pool-exhausted")
    assert "nothing was taken" in body["detail"]
    assert db_val("SELECT count(*) FROM license_keys WHERE product_id = %s "
                  "AND benefit_id IS NULL", pid) == 2
    assert db_one("SELECT status, used, activated_at FROM benefits WHERE id = %s", b) == \
        ("available", 0, None)
    assert db_val("SELECT count(*) FROM key_reveals WHERE benefit_id = %s", b) == 0
    # an empty pool too
    empty = new_product()
    e = t.benefit(empty, 1)
    assert_problem(reveal(t.client(0), t, e), 409, "key-pool-exhausted")
    # once the operator tops the pool up, the reveal works
    assert load(op, pid, fresh_keys(1)).json()["available"] == 3
    r = reveal(t.client(0), t, b)
    assert r.status_code == 200 and len(r.json()["keys"]) == 3


@pytest.mark.parametrize("product", [VS_ENTERPRISE, AZURE, TECH_INCIDENTS])
def test_keys_of_benefit_without_keys_is_422(product):
    t = Tenant()
    b = t.benefit(product, 1)
    body = assert_problem(reveal(t.client(0), t, b), 422, "validation-failed")
    assert "software and license-based cloud" in body["detail"]


def test_expired_benefit_gets_no_keys(op):
    pid, _ = pool(op, 1)
    t = Tenant()
    b = t.benefit(pid, 1)
    db_val("UPDATE benefits SET expires_at = now() - interval '1 hour' WHERE id = %s RETURNING 1",
           b)
    assert_problem(reveal(t.client(0), t, b), 409, "benefit-expired")
    assert db_val("SELECT count(*) FROM license_keys WHERE product_id = %s "
                  "AND benefit_id IS NULL", pid) == 1


@pytest.mark.seed("S01")
def test_keys_of_other_partner_are_404_and_pmc_is_409(op, fab_ga):
    pid, _ = pool(op, 1)
    t = Tenant()
    b = t.benefit(pid, 1)
    contoso = Client(BASE, token(GA_ID, CONTOSO, ["global_admin"]))
    assert_problem(contoso.post(t.path(b, "/keys"), json={"language": "en-US", "os": "x64"}),
                   404, "not-found")
    assert_problem(contoso.post(f"/v1/partners/{CONTOSO}/benefits/{b}/keys",
                                json={"language": "en-US", "os": "x64"}), 404, "not-found")
    assert_problem(fab_ga.post(f"/v1/partners/{FABRIKAM}/benefits/{b}/keys",
                               json={"language": "en-US", "os": "x64"}), 409, "membership-in-pmc")
    assert db_val("SELECT count(*) FROM license_keys WHERE benefit_id = %s", b) == 0


def test_bad_key_requests_are_4xx(op):
    pid, _ = pool(op, 1)
    t = Tenant()
    b = t.benefit(pid, 1)
    ga = t.client(0)
    for body in ({}, {"language": "en-US"}, {"os": "x64"}, {"language": 1, "os": "x64"},
                 {"language": "en-US", "os": "x64", "key": "x"}):
        assert_problem(ga.post(t.path(b, "/keys"), json=body), 422, "validation-failed")
    assert_problem(ga.direct.post(t.path(b, "/keys"), data="{", headers={
        "Content-Type": "application/json"}), 400, "malformed-json")
    assert_problem(ga.post(t.path(str(uuid.uuid4()), "/keys"),
                           json={"language": "en-US", "os": "x64"}), 404, "not-found")
    assert db_val("SELECT count(*) FROM license_keys WHERE benefit_id = %s", b) == 0


def test_service_refuses_to_start_without_key_encryption_key():
    s = spawn_server(env_overrides={"KEY_ENCRYPTION_KEY": None, "MPN_DEMO": None}, wait=False)
    try:
        rc = s.proc.wait(30)
    finally:
        s.kill()
    assert rc != 0
    assert "KEY_ENCRYPTION_KEY" in s.log()
    s.stop(expect_rc=None)  # asserts a log free of sanitizer reports
