"""Issue 15: a contract a consumer can learn from. Every operation has a request example (each
JSON body media type) and a success example (each JSON 2xx answer), so docs and Prism's mock show
real data, not "string"; every operation declares its problem codes (`x-problem-codes`, checked
against what the service answers by scripts/contract_codes.py at the end of every test run)
and each error answer carries one named example per code of its status, and only those.
spectral (oas3-valid-media-example, run by tests/contract/lint.sh) checks every example
against its schema."""
import os

import yaml

SPEC = os.path.join(os.path.dirname(__file__), "..", "..", "api", "openapi.yaml")
METHODS = ("get", "put", "post", "patch", "delete")


def load():
    with open(SPEC, encoding="utf-8") as f:
        return yaml.safe_load(f)


def deref(doc, node):
    while isinstance(node, dict) and "$ref" in node:
        target = doc
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part]
        node = target
    return node


def operations(doc):
    for path, item in doc["paths"].items():
        for m in METHODS:
            if m in item:
                yield f"{m.upper()} {path}", item[m]


def test_every_json_body_and_json_success_has_an_example():
    doc = load()
    missing = []
    for name, op in operations(doc):
        body = deref(doc, op.get("requestBody", {}))
        for mt, media in body.get("content", {}).items():
            if "json" in mt and "example" not in media and "examples" not in media:
                missing.append(f"{name}: request {mt}")
        for status, resp in op["responses"].items():
            resp = deref(doc, resp)
            media = resp.get("content", {}).get("application/json")
            if status.startswith("2") and media is not None and \
                    "example" not in media and "examples" not in media:
                missing.append(f"{name}: {status} answer")
    assert not missing, missing


def test_every_error_answer_has_one_named_example_per_declared_code_of_its_status():
    doc = load()
    table = {}
    for code, ex in doc["components"]["examples"].items():
        table[code] = ex["value"]["status"]
    bad = []
    for name, op in operations(doc):
        codes = op.get("x-problem-codes")
        if codes is None:
            bad.append(f"{name}: no x-problem-codes")
            continue
        for status, resp in op["responses"].items():
            if not status.startswith(("4", "5")):
                continue
            media = deref(doc, resp)["content"]["application/problem+json"]
            named = set(media.get("examples", {}))
            want = {c for c in codes if table.get(c) == int(status)}
            if named != want:
                bad.append(f"{name} {status}: examples {sorted(named)} != codes {sorted(want)}")
        for c in codes:
            if c not in table:
                bad.append(f"{name}: code {c} has no example in components/examples")
            elif str(table[c]) not in op["responses"]:
                bad.append(f"{name}: code {c} ({table[c]}) has no {table[c]} answer")
    assert not bad, bad
