"""Issue 14, step 1: the catalog by API. The operator creates products and packages, sets
downloads and loads keys; a partner buys and reveals keys for every language x OS pair; later
catalog edits leave that purchase exactly as it was (benefits, keys, links, instructions), while
new purchases get the edited catalog."""
from __future__ import annotations

import os
import uuid

import pytest

from fresh_partner import fresh_partner
from helpers import BASE, Client, assert_problem, db_all, db_val, idem, operator_token

LANGS = ["en-US", "de-DE"]
OSES = ["x64", "arm64"]


@pytest.fixture
def opc():
    c = Client(BASE, operator_token())
    yield c
    c.close()


def tag() -> str:
    return uuid.uuid4().hex[:10]


def links(code: str, version: str, langs=LANGS, oses=OSES) -> list[dict]:
    return [{"language": lang, "os": os_,
             "url": f"https://downloads.example.com/{code}/{version}/{lang}/{os_}.iso"}
            for lang in langs for os_ in oses]


def new_product(opc, **over) -> dict:
    """A product; one with languages and OS types comes with a download per pair (issue 13:
    the database refuses a product that offers a pair without one)."""
    code = f"cat-{tag()}"
    body = {"code": code, "name": f"Product {code}", "category": "software",
            "languages": LANGS, "os_types": OSES, "instructions": "Version 1 instructions."}
    body.update(over)
    if body.get("languages") and body.get("os_types") and "downloads" not in body:
        body["downloads"] = links(code, "v1", body["languages"], body["os_types"])
    r = opc.post("/v1/admin/products", json=body, headers=idem())
    assert r.status_code == 201, r.text
    doc = r.json()
    assert r.headers["Location"] == f"/v1/admin/products/{doc['id']}"
    return doc


def new_package(opc, allocations: list[tuple[str, int]], price=100) -> dict:
    code = f"pkg-{tag()}"
    r = opc.post("/v1/admin/packages", json={
        "code": code, "name": f"Package {code}", "price": price, "currency": "USD",
        "term_months": 12,
        "benefits": [{"product_id": p, "quantity": q} for p, q in allocations]},
        headers=idem())
    assert r.status_code == 201, r.text
    assert r.headers["Location"] == f"/v1/packages/{r.json()['id']}"
    return r.json()


def buy(f, package_id: str) -> dict:
    ga = f.client(BASE)
    r = ga.post(f.path("/purchases"), json={"package_id": package_id}, headers=idem())
    assert r.status_code == 201, r.text
    return r.json()


def benefit_of(f, purchase: dict, product_id: str) -> str:
    return db_val("SELECT id::text FROM benefits WHERE purchase_id = %s AND product_id = %s",
                  purchase["id"], product_id)


def load_keys(opc, product_id: str, n: int) -> list[str]:
    keys = [f"CAT-{uuid.uuid4().hex[:20].upper()}" for _ in range(n)]
    r = opc.post(f"/v1/admin/products/{product_id}/keys", json={"keys": keys}, headers=idem())
    assert r.status_code == 200, r.text
    return keys


@pytest.mark.seed("S02", "S12", "S13")
def test_operator_catalog_partner_buys_reveals_every_pair_and_edits_leave_it_unchanged(opc):
    prod = new_product(opc)
    pid, code = prod["id"], prod["code"]
    r = opc.put(f"/v1/admin/products/{pid}/downloads", json={"items": links(code, "v1")})
    assert r.status_code == 200, r.text
    assert len(r.json()["items"]) == 4
    keys = load_keys(opc, pid, 3)
    pool = opc.get(f"/v1/admin/products/{pid}/key-pool").json()
    assert pool == {"product_id": pid, "available": 3, "assigned": 0, "low_watermark": 100,
                    "below_low_watermark": True}
    pkg = new_package(opc, [(pid, 2)])
    assert [(b["product_id"], b["quantity"]) for b in pkg["benefits"]] == [(pid, 2)]

    f = fresh_partner()
    purchase = buy(f, pkg["id"])
    bid = benefit_of(f, purchase, pid)
    pa = f.client(BASE, "mpn_partner_admin")
    bpath = f.path(f"/benefits/{bid}")

    def reveal_all() -> dict:
        out = {}
        for lang in LANGS:
            for os_ in OSES:
                r = pa.post(bpath + "/keys", json={"language": lang, "os": os_}, headers=idem())
                assert r.status_code == 200, r.text
                out[(lang, os_)] = r.json()
        return out

    first = reveal_all()
    revealed = first[("en-US", "x64")]["keys"]
    assert len(revealed) == 2 and set(revealed) <= set(keys)
    for (lang, os_), doc in first.items():
        assert doc["keys"] == revealed
        assert doc["instructions"] == "Version 1 instructions."
        assert [d["url"] for d in doc["download_links"]] == [
            f"https://downloads.example.com/{code}/v1/{lang}/{os_}.iso"]
    assert opc.get(f"/v1/admin/products/{pid}/key-pool").json()["assigned"] == 2
    benefit_before = pa.get(bpath).json()
    downloads_before = pa.get(bpath + "/downloads").json()
    assert len(downloads_before["items"]) == 4
    purchase_before = pa.get(f.path(f"/purchases/{purchase['id']}")).json()

    # the operator edits everything a partner sees of the product, and the package
    edit = {"name": "Renamed product", "languages": ["en-US", "fr-FR"], "os_types": ["x64"],
            "instructions": "Version 2 instructions."}
    # issue 13: a new language needs its downloads in the same change
    body = assert_problem(opc.patch(f"/v1/admin/products/{pid}", json=edit), 422,
                          "validation-failed")
    assert body["missing_downloads"] == [{"language": "fr-FR", "os": "x64"}]
    r = opc.patch(f"/v1/admin/products/{pid}", json=dict(edit, downloads=links(
        code, "v1", ["en-US", "fr-FR"], ["x64"])))
    assert r.status_code == 200, r.text
    assert r.json()["languages"] == ["en-US", "fr-FR"]
    assert len(r.json()["downloads"]) == 2
    # without downloads, those of pairs no longer offered go with them
    r = opc.patch(f"/v1/admin/products/{pid}", json={"languages": ["en-US"]})
    assert r.status_code == 200, r.text
    assert r.json()["downloads"] == [links(code, "v1")[0]]
    r = opc.patch(f"/v1/admin/products/{pid}", json={
        "languages": ["en-US", "fr-FR"], "downloads": links(code, "v1", ["en-US", "fr-FR"],
                                                            ["x64"])})
    assert r.status_code == 200, r.text
    r = opc.put(f"/v1/admin/products/{pid}/downloads",
                json={"items": links(code, "v2", ["en-US", "fr-FR"], ["x64"])})
    assert r.status_code == 200, r.text
    r = opc.patch(f"/v1/admin/packages/{pkg['id']}",
                  json={"name": "Renamed package", "benefits": [{"product_id": pid,
                                                                 "quantity": 3}]})
    assert r.status_code == 200, r.text
    assert r.json()["benefits"][0]["quantity"] == 3

    # the purchase keeps what it bought
    assert pa.get(bpath).json() == benefit_before
    assert benefit_before["name"] == f"Product {code}"
    assert benefit_before["languages"] == LANGS and benefit_before["os_types"] == OSES
    assert benefit_before["quantity"] == 2
    assert pa.get(bpath + "/downloads").json() == downloads_before
    assert pa.get(f.path(f"/purchases/{purchase['id']}")).json() == purchase_before
    assert reveal_all() == first
    r = pa.post(bpath + "/keys", json={"language": "fr-FR", "os": "x64"}, headers=idem())
    assert_problem(r, 422, "validation-failed")

    # a new purchase gets the catalog as it is now
    g = fresh_partner()
    p2 = buy(g, pkg["id"])
    b2 = benefit_of(g, p2, pid)
    ga2 = g.client(BASE)
    doc2 = ga2.get(g.path(f"/benefits/{b2}")).json()
    assert doc2["name"] == "Renamed product"
    assert doc2["languages"] == ["en-US", "fr-FR"] and doc2["os_types"] == ["x64"]
    assert doc2["quantity"] == 3
    d2 = ga2.get(g.path(f"/benefits/{b2}/downloads"), params={"language": "fr-FR"}).json()
    assert d2 == {"items": [{"language": "fr-FR", "os": "x64",
                             "url": f"https://downloads.example.com/{code}/v2/fr-FR/x64.iso"}],
                  "next_cursor": None}

    actions = [a for (a,) in db_all(
        "SELECT action FROM audit_events WHERE target_id IN (%s, %s) ORDER BY id", pid,
        pkg["id"])]
    for a in ("product.created", "product.downloads_replaced", "keys.loaded", "package.created",
              "product.updated", "package.updated"):
        assert a in actions, actions


def test_a_package_with_purchases_cannot_lose_allocations_or_change_price(opc):
    a = new_product(opc, category="visual_studio", languages=[], os_types=[])
    b = new_product(opc, category="visual_studio", languages=[], os_types=[])
    pkg = new_package(opc, [(a["id"], 5), (b["id"], 2)])
    path = f"/v1/admin/packages/{pkg['id']}"
    # no purchase yet: anything goes
    r = opc.patch(path, json={"price": 120.5, "benefits": [{"product_id": a["id"],
                                                            "quantity": 4}]})
    assert r.status_code == 200, r.text
    assert r.json()["price"] == 120.5 and len(r.json()["benefits"]) == 1
    r = opc.patch(path, json={"benefits": [{"product_id": a["id"], "quantity": 5},
                                           {"product_id": b["id"], "quantity": 2}]})
    assert r.status_code == 200, r.text

    f = fresh_partner()
    buy(f, pkg["id"])
    before = opc.get(f"/v1/packages/{pkg['id']}").json()
    for body, field in [
        ({"benefits": [{"product_id": a["id"], "quantity": 5}]}, "benefits"),
        ({"benefits": [{"product_id": a["id"], "quantity": 4},
                       {"product_id": b["id"], "quantity": 2}]}, "benefits"),
        ({"price": 99}, "price"),
        ({"currency": "EUR"}, "currency"),
    ]:
        body = assert_problem(opc.patch(path, json=body), 409, "conflict")
        assert body["errors"][0]["field"] == field, body
    assert opc.get(f"/v1/packages/{pkg['id']}").json() == before
    # more is fine, and so is a new name or term
    c = new_product(opc, category="visual_studio", languages=[], os_types=[])
    r = opc.patch(path, json={"name": "Bigger", "term_months": 24, "benefits": [
        {"product_id": a["id"], "quantity": 6}, {"product_id": b["id"], "quantity": 2},
        {"product_id": c["id"], "quantity": 1}]})
    assert r.status_code == 200, r.text
    assert r.json()["term_months"] == 24 and len(r.json()["benefits"]) == 3


@pytest.mark.seed("S44")
def test_product_rules_once_bought_and_category_never(opc):
    tech = new_product(opc, category="technical", unit="incidents", languages=[], os_types=[])
    path = f"/v1/admin/products/{tech['id']}"
    r = opc.patch(path, json={"unit": "hours"})  # nothing bought yet
    assert r.status_code == 200 and r.json()["unit"] == "hours", r.text
    pkg = new_package(opc, [(tech["id"], 5)])
    buy(fresh_partner(), pkg["id"])
    body = assert_problem(opc.patch(path, json={"unit": "incidents"}), 409, "conflict")
    assert body["errors"][0]["field"] == "unit"
    body = assert_problem(opc.patch(path, json={"category": "software"}), 422,
                          "validation-failed")
    assert body["errors"][0]["field"] == "category"
    r = opc.patch(path, json={"name": "Still fine", "instructions": "New text"})
    assert r.status_code == 200, r.text
    gtm = new_product(opc, category="go_to_market", offer_type="gold_core",
                      offer_duration_days=365, languages=[], os_types=[])
    assert gtm["offer_type"] == "gold_core"
    assert db_val("SELECT offer_requirement FROM products WHERE id = %s",
                  gtm["id"]) == "gold_competency"


@pytest.mark.parametrize("over,field", [
    ({"category": "cloud"}, "cloud_kind"),
    ({"category": "technical", "languages": [], "os_types": []}, "unit"),
    ({"unit": "hours"}, "unit"),
    ({"languages": []}, "languages"),
    ({"languages": ["en-US", "en-US"]}, "languages[1]"),
    ({"os_types": ["x 64"]}, "os_types[0]"),
    ({"code": "Upper Case"}, "code"),
    ({"portal_url": "javascript:alert(1)"}, "portal_url"),
    ({"offer_type": "gold_core"}, "offer_type"),
    ({"category": "visual_studio"}, "languages"),
    ({"surprise": 1}, "surprise"),
])
def test_bad_products_are_refused_naming_the_field(opc, over, field):
    body = {"code": f"bad-{tag()}", "name": "Bad", "category": "software",
            "languages": LANGS, "os_types": OSES}
    body.update(over)
    r = opc.post("/v1/admin/products", json=body, headers=idem())
    problem = assert_problem(r, 422, "validation-failed")
    assert problem["errors"][0]["field"] == field, problem
    assert db_val("SELECT count(*) FROM products WHERE code = %s", body["code"]) == 0


def test_duplicate_codes_and_unknown_ids(opc):
    prod = new_product(opc)
    r = opc.post("/v1/admin/products", json={"code": prod["code"], "name": "Again",
                                             "category": "visual_studio"}, headers=idem())
    assert_problem(r, 409, "conflict")
    pkg = new_package(opc, [(prod["id"], 1)])
    r = opc.post("/v1/admin/packages", json={
        "code": pkg["code"], "name": "x", "price": 1, "currency": "USD", "term_months": 1,
        "benefits": [{"product_id": prod["id"], "quantity": 1}]}, headers=idem())
    assert_problem(r, 409, "conflict")
    r = opc.post("/v1/admin/packages", json={
        "code": f"pkg-{tag()}", "name": "x", "price": 1.999, "currency": "USD",
        "term_months": 1, "benefits": [{"product_id": prod["id"], "quantity": 1}]},
        headers=idem())
    assert assert_problem(r, 422, "validation-failed")["errors"][0]["field"] == "price"
    missing = str(uuid.uuid4())
    r = opc.post("/v1/admin/packages", json={
        "code": f"pkg-{tag()}", "name": "x", "price": 1, "currency": "USD", "term_months": 1,
        "benefits": [{"product_id": prod["id"], "quantity": 1},
                     {"product_id": missing, "quantity": 1}]}, headers=idem())
    assert assert_problem(r, 422)["errors"][0]["field"] == "benefits[1].product_id"
    for method, path, body in [
        ("GET", f"/v1/admin/products/{missing}", None),
        ("PATCH", f"/v1/admin/products/{missing}", {"name": "x"}),
        ("PUT", f"/v1/admin/products/{missing}/downloads", {"items": []}),
        ("GET", f"/v1/admin/products/{missing}/key-pool", None),
        ("PATCH", f"/v1/admin/packages/{missing}", {"name": "x"}),
    ]:
        assert_problem(opc.request(method, path, json=body), 404, "not-found")


def test_downloads_must_cover_every_pair_with_offered_values(opc):
    prod = new_product(opc)
    path = f"/v1/admin/products/{prod['id']}/downloads"
    items = links(prod["code"], "v1")
    before = opc.get(f"/v1/admin/products/{prod['id']}").json()["downloads"]
    assert len(before) == 4
    body = assert_problem(opc.put(path, json={"items": items[:3]}), 422, "validation-failed")
    assert body["missing_downloads"] == [{"language": "de-DE", "os": "arm64"}]
    assert body["errors"][0]["field"] == "items"
    bad = [dict(items[0], language="fr-FR")] + items[1:]
    body = assert_problem(opc.put(path, json={"items": bad}), 422)
    assert body["errors"][0]["field"] == "items[0].language"
    body = assert_problem(opc.put(path, json={"items": items + [items[0]]}), 422)
    assert body["errors"][0]["field"] == "items[4].os"
    body = assert_problem(opc.put(path, json={"items": [dict(items[0], url="ftp://x")] +
                                              items[1:]}), 422)
    assert body["errors"][0]["field"] == "items[0].url"
    assert opc.get(f"/v1/admin/products/{prod['id']}").json()["downloads"] == before
    assert opc.put(path, json={"items": items}).status_code == 200


@pytest.mark.seed("S14", "S15", "S16")
def test_benefit_downloads_filter_and_refuse_unoffered_values(opc):
    prod = new_product(opc)
    assert opc.put(f"/v1/admin/products/{prod['id']}/downloads",
                   json={"items": links(prod["code"], "v1")}).status_code == 200
    pkg = new_package(opc, [(prod["id"], 1)])
    f = fresh_partner()
    bid = benefit_of(f, buy(f, pkg["id"]), prod["id"])
    emp = f.client(BASE, "admin_agent")
    path = f.path(f"/benefits/{bid}/downloads")
    r = emp.get(path, params={"language": "de-DE", "os": "arm64"})
    assert r.status_code == 200, r.text
    assert [i["url"] for i in r.json()["items"]] == [
        f"https://downloads.example.com/{prod['code']}/v1/de-DE/arm64.iso"]
    assert "keys" not in r.text
    assert len(emp.get(path, params={"os": "x64"}).json()["items"]) == 2
    body = assert_problem(emp.get(path, params={"language": "xx-XX"}), 422, "validation-failed")
    assert body["allowed"] == LANGS


# --- step 3: key pool import as text/csv -------------------------------------------------------

def csv_load(opc, product_id: str, data: bytes):
    return opc.post(f"/v1/admin/products/{product_id}/keys", data=data,
                    headers=dict(idem(), **{"Content-Type": "text/csv; charset=utf-8"}))


def test_csv_key_import_answers_every_line_that_was_not_imported(opc):
    prod = new_product(opc)
    pid = prod["id"]
    t = tag().upper()
    k = [f"CSV-{t}-{i}" for i in range(6)]
    load = opc.post(f"/v1/admin/products/{pid}/keys", json={"keys": [k[5]]}, headers=idem())
    assert load.status_code == 200, load.text
    body = ("\ufeffKey\r\n"          # 1 header
            f"{k[1]}\n"              # 2 imported
            "\n"                     # 3 empty
            f"  {k[2]}\t\r"          # 4 imported (trimmed), CR line end
            f"\"{k[3]},x\"\r\n"      # 5 imported: a quoted comma
            f"{k[1]}\n"              # 6 duplicate: earlier in the file
            "a,b\n"                  # 7 invalid: two columns
            f"\"{k[0]}\n"            # 8 invalid: quote never closed
            f"{'X' * 201}\n"         # 9 invalid: too long
            f"{k[5]}\n"              # 10 duplicate: already in the pool
            f"{k[4]}").encode()      # 11 imported, no line end
    r = csv_load(opc, pid, body)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert (doc["imported"], doc["added"], doc["duplicates"], doc["invalid"]) == (4, 4, 2, 3)
    assert doc["available"] == 5 and doc["below_low_watermark"] is True
    assert sorted((x["line"], x["status"]) for x in doc["results"]) == [
        (6, "duplicate"), (7, "invalid"), (8, "invalid"), (9, "invalid"), (10, "duplicate")]
    stored = [v for (v,) in db_all(
        "SELECT pgp_sym_decrypt(key_enc, %s) FROM license_keys WHERE product_id = %s "
        "ORDER BY id", os.environ["KEY_ENCRYPTION_KEY"], pid)]
    assert stored == [k[5], k[1], k[2], f"{k[3]},x", k[4]]
    assert not any(key in r.text for key in k)
    assert db_val("SELECT details->>'csv' FROM audit_events WHERE target_id = %s "
                  "AND action = 'keys.loaded' ORDER BY id DESC LIMIT 1", pid) == "true"


def test_csv_key_import_takes_files_larger_than_max_body_kb(opc):
    pid = new_product(opc)["id"]
    t = tag().upper()
    lines = [f"BIG-{t}-{i:06d}-ABCDEFGHIJKLMNOPQRSTUVWXYZ" for i in range(3000)]
    data = ("key\n" + "\n".join(lines) + "\n").encode()
    assert len(data) > 64 * 1024
    r = csv_load(opc, pid, data)
    assert r.status_code == 200, r.text[:300]
    assert (r.json()["imported"], r.json()["results"]) == (3000, [])
    assert db_val("SELECT count(*) FROM license_keys WHERE product_id = %s", pid) == 3000
    # JSON keeps to MAX_BODY_KB on the same route
    big = {"keys": [s + "-" + "Z" * 60 for s in lines[:1000]]}
    r = opc.post(f"/v1/admin/products/{pid}/keys", json=big, headers=idem())
    assert_problem(r, 413, "payload-too-large")


def test_csv_key_import_refuses_files_without_keys_and_products_without_pools(opc):
    pid = new_product(opc)["id"]
    for data in (b"", b"key\r\n\r\n", b"\xef\xbb\xbf\n \n"):
        assert_problem(csv_load(opc, pid, data), 422, "validation-failed")
    vs = new_product(opc, category="visual_studio", languages=[], os_types=[])
    assert_problem(csv_load(opc, vs["id"], b"K-1\n"), 422, "validation-failed")
    assert_problem(csv_load(opc, str(uuid.uuid4()), b"K-1\n"), 404, "not-found")
    assert db_val("SELECT count(*) FROM license_keys WHERE product_id = %s", pid) == 0
