"""Issue 18: what consumers' CI generates from api/openapi.yaml must pass.

The contract itself (static): every nullable enum lists null, every uuid path parameter has
`format: uuid` and an example from the demo data, the README's headers are `required`, every
request body has an example. The service: the Location of a created seat assignment is readable
(GET .../assignments/{userId}, same visibility as the list), and GET /openapi.yaml serves the
media type its description promises for each Accept.

The strict answer check (tests/consumer/validate-traffic.js) and the generated consumer suite
(tests/consumer/portman.sh) run from scripts/test.sh after pytest."""
from __future__ import annotations

import os

import pytest
import yaml

from fresh_partner import VS_ENTERPRISE, WINDOWS_SERVER, assign_seat, fresh_partner
from helpers import BASE, Client, assert_problem, idem, token

SPEC = os.path.join(os.path.dirname(__file__), "..", "..", "api", "openapi.yaml")
SEED = os.path.join(os.path.dirname(__file__), "..", "..", "sql", "demo", "seed.sql")
METHODS = ("get", "put", "post", "patch", "delete")


@pytest.fixture(scope="module")
def spec() -> dict:
    with open(SPEC, encoding="utf-8") as f:
        return yaml.safe_load(f)


def _walk(node, where=""):
    if isinstance(node, dict):
        yield where, node
        for k, v in node.items():
            yield from _walk(v, f"{where}/{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, f"{where}/{i}")


def _ops(spec):
    for path, item in spec["paths"].items():
        for m in METHODS:
            if m in item:
                yield m, path, item, item[m]


def _param(spec, p):
    return spec["components"]["parameters"][p["$ref"].rsplit("/", 1)[-1]] if "$ref" in p else p


def test_every_nullable_enum_lists_null(spec):
    bad = [w for w, n in _walk(spec) if n.get("nullable") is True and "enum" in n
           and None not in n["enum"]]
    assert not bad, f"OpenAPI 3.0.3: nullable does not add null to an enum; list it: {bad}"


def test_every_path_id_is_a_uuid_with_an_example_of_the_demo_data(spec):
    with open(SEED, encoding="utf-8") as f:
        seed = f.read()
    bad = []
    for m, path, item, op in _ops(spec):
        for p in [*item.get("parameters", []), *op.get("parameters", [])]:
            p = _param(spec, p)
            if p["in"] != "path":
                continue
            s = p["schema"]
            if s.get("format") != "uuid" or "example" not in s:
                bad.append(f"{m.upper()} {path} {p['name']}: {s}")
    assert not bad, "\n".join(bad)
    # The ids of the demo data's own rows are in sql/demo/seed.sql (the others name rows a
    # consumer's run creates first: activations, support requests, webhooks, deliveries).
    for name in ("partnerId", "benefitId", "purchaseId", "userId", "productId", "packageId"):
        ex = spec["components"]["parameters"][name]["schema"]["example"]
        assert ex in seed, f"{name} example {ex} is not a row of the demo data"


def test_promised_headers_are_required(spec):
    headers = spec["components"]["headers"]
    for name in ("X-Request-Id", "Location", "Retry-After", "ETag"):
        assert headers[name].get("required") is True, name
    missing = []
    for m, path, item, op in _ops(spec):
        for status, resp in op["responses"].items():
            if "$ref" in resp:
                resp = spec["components"]["responses"][resp["$ref"].rsplit("/", 1)[-1]]
            h = resp.get("headers", {})
            if "X-Request-Id" not in h:
                missing.append(f"{m.upper()} {path} {status}: X-Request-Id")
            if status in ("201",) and "Location" not in h:
                missing.append(f"{m.upper()} {path} {status}: Location")
            if status in ("429", "503") and "Retry-After" not in h:
                missing.append(f"{m.upper()} {path} {status}: Retry-After")
    assert not missing, "\n".join(missing)


def test_every_request_body_has_an_example(spec):
    bad = [f"{m.upper()} {path} {ct}" for m, path, item, op in _ops(spec)
           for ct, media in op.get("requestBody", {}).get("content", {}).items()
           if "example" not in media and "examples" not in media]
    assert not bad, "\n".join(bad)


# --- the service -------------------------------------------------------------------------------

@pytest.mark.parametrize("accept,served", [
    (None, "application/yaml"),
    ("*/*", "application/yaml"),
    ("application/yaml", "application/yaml"),
    ("text/yaml", "text/yaml"),
    ("text/yaml, application/yaml;q=0.5", "application/yaml"),
    ("application/json", "application/yaml"),
])
def test_openapi_media_type_follows_accept(anon, accept, served):
    headers = {"Accept": accept}  # None: no Accept header at all
    r = anon.get("/openapi.yaml", headers=headers)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == served
    assert yaml.safe_load(r.text)["openapi"].startswith("3.0.")


def test_the_location_of_a_created_seat_assignment_is_readable():
    f = fresh_partner()
    ga = f.client(BASE)
    emp = f.users["employee"]
    r = ga.post(f.benefit_path(VS_ENTERPRISE, "/assignments"), json={"user_id": emp},
                headers=idem())
    assert r.status_code == 201, r.text
    loc = r.headers["Location"]
    assert loc == f.benefit_path(VS_ENTERPRISE, f"/assignments/{emp}")
    got = ga.get(loc)
    assert got.status_code == 200, got.text
    assert got.json() == r.json()
    # Everyone who reads the list reads the assignment; the employee reads neither.
    for role in ("mpn_partner_admin", "admin_agent", "user_admin"):
        assert f.client(BASE, role).get(loc).json() == r.json()
    assert Client(BASE, token("operator-1", None, ["operator"])).get(loc).status_code == 200
    assert_problem(f.client(BASE, "employee").get(loc), 403, "forbidden-role")
    # Gone once removed; never another partner's.
    assert ga.delete(loc).status_code == 204
    assert_problem(ga.get(loc), 404, "not-found")
    other = fresh_partner()
    assign_seat(other.benefits[VS_ENTERPRISE], other.users["employee"])
    assert_problem(ga.get(f"/v1/partners/{other.partner}/benefits/"
                          f"{other.benefits[VS_ENTERPRISE]}/assignments/{other.users['employee']}"),
                   404, "not-found")


def test_get_assignment_of_no_seat_or_a_benefit_without_seats():
    f = fresh_partner()
    ga = f.client(BASE)
    assert_problem(ga.get(f.benefit_path(VS_ENTERPRISE, f"/assignments/{f.users['employee']}")),
                   404, "not-found")
    assert_problem(ga.get(f.benefit_path(VS_ENTERPRISE, "/assignments/not-a-uuid")), 404,
                   "not-found")
    assert_problem(ga.get(f.benefit_path(WINDOWS_SERVER, f"/assignments/{f.users['employee']}")),
                   422, "validation-failed")

