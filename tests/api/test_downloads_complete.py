"""Issue 13, downloads (DESIGN §4b): every language x OS pair a product offers has at least one
download. A database rule (sql/011_downloads_complete.sql: a deferred constraint trigger that
raises check_violation at COMMIT) whoever writes, answered 422 `validation-failed` with
`missing_downloads` by the admin catalog routes; the demo catalog is complete; revealing keys
still answers the links of its pair; listing downloads is no software activation (the refund
stays possible)."""
from __future__ import annotations

import uuid

import psycopg2
import psycopg2.errors
import pytest

from fresh_partner import M365, WINDOWS_SERVER, fresh_partner
from helpers import (BASE, Client, assert_problem, db_all, db_connect, db_val, idem,
                     operator_token)

LANGS = ["en-US", "de-DE"]
OSES = ["x64", "arm64"]


@pytest.fixture
def opc():
    c = Client(BASE, operator_token())
    yield c
    c.close()


def links(code: str, langs=LANGS, oses=OSES) -> list[dict]:
    return [{"language": lang, "os": os_, "url": f"https://dl.example.com/{code}/{lang}/{os_}.iso"}
            for lang in langs for os_ in oses]


def product_body(**over) -> dict:
    code = f"dlc-{uuid.uuid4().hex[:10]}"
    body = {"code": code, "name": f"Product {code}", "category": "software",
            "languages": LANGS, "os_types": OSES}
    body.update(over)
    return body


def commit_fails(*statements) -> psycopg2.Error:
    """Runs the statements in one transaction; the COMMIT must fail with the rule."""
    conn = db_connect()
    conn.autocommit = False
    try:
        with conn.cursor() as cur:
            for sql, args in statements:
                cur.execute(sql, args)  # deferred: each statement passes on its own
        with pytest.raises(psycopg2.errors.CheckViolation) as err:
            conn.commit()
        assert err.value.diag.constraint_name == "product_downloads_complete"
        return err.value
    finally:
        conn.close()


@pytest.mark.seed("S16")
def test_the_database_refuses_a_pair_without_a_download_whoever_writes():
    code = f"dlc-sql-{uuid.uuid4().hex[:8]}"
    insert = ("INSERT INTO products (code, name, category, languages, os_types) "
              "VALUES (%s, 'SQL product', 'software', '{en-US,de-DE}', '{x64}')", (code,))
    err = commit_fails(insert, (
        "INSERT INTO product_downloads (product_id, language, os, url) "
        "SELECT id, 'en-US', 'x64', 'https://dl.example.com/a.iso' FROM products WHERE code = %s",
        (code,)))
    assert '"de-DE"' in err.diag.message_detail
    assert db_val("SELECT count(*) FROM products WHERE code = %s", code) == 0
    # a demo product losing one download, or gaining a language without one
    before = db_all("SELECT language, os, url FROM product_downloads WHERE product_id = %s "
                    "ORDER BY 1, 2", WINDOWS_SERVER)
    commit_fails(("DELETE FROM product_downloads WHERE product_id = %s AND language = 'ja-JP'",
                  (WINDOWS_SERVER,)))
    commit_fails(("UPDATE products SET os_types = os_types || '{arm64}' WHERE id = %s",
                  (WINDOWS_SERVER,)))
    assert db_all("SELECT language, os, url FROM product_downloads WHERE product_id = %s "
                  "ORDER BY 1, 2", WINDOWS_SERVER) == before
    # the product and its downloads in one transaction: fine
    conn = db_connect()
    conn.autocommit = False
    with conn.cursor() as cur:
        cur.execute("INSERT INTO products (code, name, category, languages, os_types) VALUES "
                    "(%s, 'SQL product', 'software', '{en-US}', '{x64}') RETURNING id",
                    (code,))
        pid = cur.fetchone()[0]
        cur.execute("INSERT INTO product_downloads VALUES (%s, 'en-US', 'x64', "
                    "'https://dl.example.com/b.iso')", (pid,))
    conn.commit()
    conn.close()


@pytest.mark.seed("S16")
def test_admin_catalog_routes_answer_422_naming_the_missing_pairs(opc):
    body = product_body()
    problem = assert_problem(opc.post("/v1/admin/products", json=body, headers=idem()), 422,
                             "validation-failed")
    assert problem["missing_downloads"] == [{"language": l, "os": o} for l in LANGS for o in OSES]
    assert problem["errors"][0]["field"] == "downloads"
    assert db_val("SELECT count(*) FROM products WHERE code = %s", body["code"]) == 0
    # with its downloads it is created, and answers them
    r = opc.post("/v1/admin/products", json=dict(body, downloads=links(body["code"])),
                 headers=idem())
    assert r.status_code == 201, r.text
    pid = r.json()["id"]
    assert len(r.json()["downloads"]) == 4
    # a new OS type without its downloads: 422, nothing changed
    before = opc.get(f"/v1/admin/products/{pid}").json()
    problem = assert_problem(opc.patch(f"/v1/admin/products/{pid}",
                                       json={"os_types": OSES + ["x86"]}), 422)
    assert problem["missing_downloads"] == [{"language": "en-US", "os": "x86"},
                                            {"language": "de-DE", "os": "x86"}]
    r = opc.patch(f"/v1/admin/products/{pid}", json={
        "os_types": OSES + ["x86"], "downloads": links(body["code"], oses=OSES + ["x86"])})
    assert r.status_code == 200, r.text
    assert len(r.json()["downloads"]) == 6
    # products without keys offer no pairs
    r = opc.post("/v1/admin/products", json=product_body(category="visual_studio", languages=[],
                                                         os_types=[]), headers=idem())
    assert r.status_code == 201, r.text
    assert r.json()["downloads"] == []
    assert opc.get(f"/v1/admin/products/{pid}").json()["downloads"] != before["downloads"]


@pytest.mark.seed("S16")
def test_the_demo_catalog_offers_a_download_for_every_pair():
    products = db_all("SELECT id::text, code FROM products WHERE id::text LIKE 'aaaaaaaa-%%' "
                      "AND cardinality(languages) > 0")
    assert len(products) >= 4
    for pid, code in products:
        assert db_val("SELECT product_missing_downloads(%s)::text", pid) == "[]", code
    # and a partner sees them: every pair of each software benefit lists its link
    f = fresh_partner()
    emp = f.client(BASE, "admin_agent")
    for product in (WINDOWS_SERVER, M365):
        doc = emp.get(f.benefit_path(product)).json()
        items = emp.get(f.benefit_path(product, "/downloads")).json()["items"]
        pairs = {(i["language"], i["os"]) for i in items}
        assert pairs == {(l, o) for l in doc["languages"] for o in doc["os_types"]}, product


@pytest.mark.seed("S16")
def test_revealing_keys_answers_the_links_of_its_pair():
    f = fresh_partner()
    pa = f.client(BASE, "mpn_partner_admin")
    doc = pa.get(f.benefit_path(WINDOWS_SERVER)).json()
    for lang in doc["languages"]:
        for os_ in doc["os_types"]:
            listed = pa.get(f.benefit_path(WINDOWS_SERVER, "/downloads"),
                            params={"language": lang, "os": os_}).json()["items"]
            r = pa.post(f.benefit_path(WINDOWS_SERVER, "/keys"),
                        json={"language": lang, "os": os_}, headers=idem())
            assert r.status_code == 200, r.text
            assert r.json()["keys"], r.text
            assert r.json()["download_links"] == listed and len(listed) == 1, (lang, os_)


@pytest.mark.seed("S49")
def test_listing_downloads_is_no_software_activation_and_the_refund_stays():
    f = fresh_partner()
    ga = f.client(BASE)
    for product in (WINDOWS_SERVER, M365):
        doc = ga.get(f.benefit_path(product)).json()
        assert ga.get(f.benefit_path(product, "/downloads")).status_code == 200
        for lang in doc["languages"]:
            for os_ in doc["os_types"]:
                r = ga.get(f.benefit_path(product, "/downloads"),
                           params={"language": lang, "os": os_})
                assert r.status_code == 200 and len(r.json()["items"]) == 1, r.text
        after = ga.get(f.benefit_path(product)).json()
        assert after["status"] == doc["status"] == "available"
    assert db_val("SELECT count(*) FROM license_keys k JOIN benefits b ON b.id = k.benefit_id "
                  "WHERE b.purchase_id = %s", f.purchase) == 0
    purchase = f.path(f"/purchases/{f.purchase}")
    elig = ga.get(purchase + "/refund-eligibility").json()
    assert elig["eligible"] is True and elig["reasons"] == []
    r = ga.post(purchase + "/cancellation")
    assert r.status_code == 200, r.text
    assert r.json()["refund"] is not None and r.json()["refund"]["amount"] > 0
