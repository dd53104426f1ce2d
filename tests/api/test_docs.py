"""Issue 15: GET /docs, the API reference page, served by the service (through Prism, so the
answers are checked against the contract too). The page itself is checked in headless Chromium
by scripts/checks/docs.sh browser (every operation on the page, no console error)."""
from __future__ import annotations

import requests

from helpers import BASE


def test_docs_page_is_html_that_runs_the_local_bundle_on_the_local_contract():
    r = requests.get(BASE + "/docs", timeout=30)
    assert r.status_code == 200, r.text[:300]
    assert r.headers["Content-Type"].startswith("text/html")
    assert r.headers.get("X-Request-Id")
    html = r.text
    # relative URLs: the service's own bundle and contract, nothing from elsewhere
    assert 'src="docs/redoc.standalone.js"' in html
    assert 'Redoc.init("openapi.yaml"' in html
    assert "://" not in html, "the page names an absolute URL"


def test_docs_bundle_is_served_and_fetches_nothing_from_a_cdn():
    r = requests.get(BASE + "/docs/redoc.standalone.js", timeout=60)
    assert r.status_code == 200, r.text[:300]
    assert r.headers["Content-Type"].startswith("text/javascript")
    assert len(r.content) > 500_000, "not the Redoc standalone bundle"
    assert b"Redoc" in r.content
    assert b"cdn.redoc.ly" not in r.content, "the bundle still loads its logo from a CDN"


def test_docs_need_no_token_and_ignore_a_bad_one():
    r = requests.get(BASE + "/docs", headers={"Authorization": "Bearer not-a-token"}, timeout=30)
    assert r.status_code == 200
