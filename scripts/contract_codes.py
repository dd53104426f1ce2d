#!/usr/bin/env python3
"""The problem codes of every operation, declared in the contract and checked against what the
service really answered (issue 15).

Every answer of the service is in its access log with its route and, for a problem, its `code`
(`code=…` in text logs, `"code"` in JSON ones). Over a whole test run (the shared service and
every server a test spawned) that gives the set of (operation, code) the service can give.

    contract_codes.py --check LOG...   exits 1 naming every (operation, status, code) answered
                                       that the operation's `x-problem-codes` does not declare
    contract_codes.py --write LOG...   (maintainers) declares what the logs show plus the codes
                                       every operation of its kind can give (below), and writes
                                       the error answers of each operation as one named example
                                       per declared code, and only those

`x-problem-codes` is a list of codes; each code has one HTTP status (include/mb_err.h)."""
import copy
import json
import os
import re
import sys

import yaml

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
SPEC = os.path.join(ROOT, "api", "openapi.yaml")
METHODS = ("get", "put", "post", "patch", "delete")
TEXT = re.compile(r" method=(\S+) route=(\S+) status=(\d+) .* code=([a-z0-9-]+)$")


def error_table() -> dict:
    """code -> (status, title), from include/mb_err.h's MB_ERR_MAP."""
    text = open(os.path.join(ROOT, "include", "mb_err.h"), encoding="utf-8").read()
    out = {}
    for status, code, title in re.findall(r'X\(\w+,\s*(\d+),\s*"([a-z0-9-]+)",\s*"([^"]*)"',
                                          text.replace("\\\n", " ")):
        out[code] = (int(status), title)
    return out


def route_to_path(route: str) -> str:
    """The route's shape: its parameters' names do not matter (`:requestId` of the service is
    `{supportRequestId}` of the contract)."""
    return re.sub(r":([A-Za-z]+)", "{}", route)


def shape(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "{}", path)


def observed(logs) -> set:
    """(METHOD, path, status, code) of every problem answered to a routed request."""
    seen = set()
    for name in logs:
        with open(name, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("{"):
                    try:
                        j = json.loads(line)
                    except ValueError:
                        continue
                    if j.get("msg") == "request" and j.get("code"):
                        seen.add((j["method"], route_to_path(j["route"]), int(j["status"]),
                                  j["code"]))
                    continue
                m = TEXT.search(line.rstrip("\n"))
                if m:
                    seen.add((m.group(1), route_to_path(m.group(2)), int(m.group(3)),
                              m.group(4)))
    return {s for s in seen if s[1].startswith("/")}  # "unmatched": refused before routing


def operations(doc):
    for path, item in doc["paths"].items():
        for m, op in item.items():
            if m in METHODS:
                yield m.upper(), path, op


def generic(method: str, path: str, op: dict) -> set:
    """The codes any operation of this kind can give, seen in a test or not."""
    public = op.get("security") == []
    codes = {"rate-limited"} if "rate-limited" in TABLE else set()  # nginx's, before any route
    if not public:
        codes |= {"unauthenticated", "unavailable", "internal"}
    if "requestBody" in op:
        codes |= {"malformed-json", "unsupported-media-type", "payload-too-large",
                  "validation-failed"}
    if "{" in path:
        codes.add("not-found")  # an id of nothing (or of another partner)
    roles = op.get("x-roles")
    if roles is not None and not public and len(roles) < 6:
        codes.add("forbidden-role")
    if any(p.get("$ref", "").endswith("/IdempotencyKey") for p in op.get("parameters", [])):
        codes.add("idempotency-key-reused")
    if any(p.get("$ref", "").endswith("/limit") for p in op.get("parameters", [])):
        codes.add("validation-failed")  # a bad limit or cursor
    # what the operation's own description promises (e.g. "answers 409 `membership-in-pmc`")
    codes |= {c for c in re.findall(r"`([a-z][a-z0-9-]+)`", op.get("description", ""))
              if c in TABLE}
    return codes


def check(logs) -> int:
    doc = yaml.safe_load(open(SPEC, encoding="utf-8"))
    declared = {(m, shape(p)): set(op.get("x-problem-codes", [])) for m, p, op in operations(doc)}
    bad = []
    for method, path, status, code in sorted(observed(logs)):
        if (method, path) not in declared:
            bad.append(f"{method} {path}: answered {status} {code}, an operation not in the "
                       "contract")
        elif code not in declared[(method, path)]:
            bad.append(f"{method} {path}: answered {status} `{code}`, not in its x-problem-codes")
        elif TABLE.get(code, (status,))[0] != status:
            bad.append(f"{method} {path}: `{code}` answered with {status}")
    for line in bad:
        print(line)
    print(f"contract-codes: {len(observed(logs))} (operation, code) answered, "
          f"{len(bad)} undeclared", file=sys.stderr)
    return 1 if bad else 0


class Dumper(yaml.SafeDumper):
    pass


Dumper.add_representer(str, lambda d, s: d.represent_scalar(
    "tag:yaml.org,2002:str", s, style="|" if "\n" in s else None))


def write(logs) -> None:
    doc = yaml.safe_load(open(SPEC, encoding="utf-8"))
    comps = doc["components"]
    shared = comps["responses"]
    seen = observed(logs)
    examples = comps.setdefault("examples", {})
    originals = {k: v for k, v in shared.items() if "_" not in k}
    used, rewritten = set(), set()
    for method, path, op in operations(doc):
        codes = set(op.get("x-problem-codes", [])) | generic(method, path, op)
        codes |= {c for m, p, _, c in seen if (m, p) == (method, shape(path))}
        codes = {c for c in codes if c in TABLE}
        op["x-problem-codes"] = sorted(codes, key=lambda c: (TABLE[c][0], c))
        by_status: dict = {}
        for c in op["x-problem-codes"]:
            by_status.setdefault(str(TABLE[c][0]), []).append(c)
        responses = op["responses"]
        for status in [s for s in responses if s >= "400"]:
            if status not in by_status:
                del responses[status]  # no code of this operation has that status
        for status, cs in by_status.items():
            base = responses.get(status)
            if len(cs) == 1 and DEFAULT_CODE.get(status) == cs[0] and status in RESPONSE_NAME:
                name = RESPONSE_NAME[status]  # the shared answer of the status' usual code
            else:
                name = RESPONSE_NAME.get(status, "Status" + status) + "".join(
                    "_" + re.sub(r"-(.)", lambda m: m.group(1).upper(), c) for c in cs)
            if name not in shared or name not in rewritten:
                rewritten.add(name)
                tmpl = (base or {}).get("$ref", "").rsplit("/", 1)[-1] or RESPONSE_NAME.get(status)
                r = copy.deepcopy(shared.get(name) or originals.get(tmpl)) if (
                    name in shared or tmpl in originals) else {
                    "headers": {"X-Request-Id": {"$ref": "#/components/headers/X-Request-Id"}},
                    "content": {"application/problem+json": {
                        "schema": {"$ref": "#/components/schemas/Problem"}}}}
                media = r["content"]["application/problem+json"]
                media.pop("example", None)
                media["examples"] = {c: {"$ref": f"#/components/examples/{c}"} for c in cs}
                r["description"] = "; ".join(f"`{c}`: {TABLE[c][1]}" for c in cs) + "."
                shared[name] = r
            used.add(name)
            responses[status] = {"$ref": f"#/components/responses/{name}"}
        op["responses"] = dict(sorted(responses.items()))
        if op.get("security") != [] and "RateLimit" in comps.get("headers", {}):
            for status, resp in op["responses"].items():
                if status.startswith("2") and "$ref" not in resp:
                    h = resp.setdefault("headers", {})
                    for k in ("RateLimit", "RateLimit-Policy"):
                        h.setdefault(k, {"$ref": f"#/components/headers/{k}"})
        for c in cs_all(op):
            if c not in examples:
                status, title = TABLE[c]
                examples[c] = {"summary": title, "value": {
                    "type": f"https://mpn-benefits.example/problems/{c}", "title": title,
                    "status": status, "detail": DETAIL.get(c, title + "."), "code": c,
                    "request_id": "6f1c2d3e-4b5a-4c6d-8e7f-8091a2b3c4d5"}}
    comps["examples"] = dict(sorted(examples.items()))
    # the per-code answers in use, and the shared ones still referenced (304 ...)
    text = json.dumps(doc["paths"])
    comps["responses"] = {k: v for k, v in shared.items()
                          if k in used or f'"#/components/responses/{k}"' in text}
    comps["responses"] = {k: v for k, v in comps["responses"].items()}
    head = "".join(line for line in open(SPEC, encoding="utf-8") if line.startswith("#"))
    with open(SPEC, "w", encoding="utf-8") as f:
        f.write(head)
        yaml.dump(doc, f, Dumper=Dumper, sort_keys=False, allow_unicode=True, width=110)


def cs_all(op):
    return op.get("x-problem-codes", [])


RESPONSE_NAME = {"400": "BadRequest", "401": "Unauthorized", "403": "Forbidden",
                   "404": "NotFound", "409": "Conflict", "412": "PreconditionFailed",
                   "413": "PayloadTooLarge", "415": "UnsupportedMediaType",
                   "422": "UnprocessableEntity", "429": "TooManyRequests",
                 "500": "InternalError", "503": "ServiceUnavailable"}
DETAIL = {
    "unauthenticated": "Send a valid bearer token in the Authorization header.",
    "forbidden-role": "Your role does not allow this. Ask your Global admin.",
    "not-found": "No such resource.",
    "unavailable": "The database is not reachable; retry after the time in Retry-After.",
    "internal": "Something went wrong on our side; the request changed nothing.",
    "validation-failed": "Field 'email' must be an email address.",
    "malformed-json": "The body is not valid JSON.",
    "unsupported-media-type": "Send the body as application/json.",
    "payload-too-large": "The body is larger than 65536 bytes.",
    "idempotency-key-reused": "This Idempotency-Key was used with another body.",
    "membership-in-pmc": "This partner's membership is still managed in the Partner "
                         "Membership Center (PMC).",
}
DEFAULT_CODE = {"400": "malformed-json", "401": "unauthenticated", "403": "forbidden-role",
                "404": "not-found", "409": "conflict", "412": "precondition-failed",
                "413": "payload-too-large", "415": "unsupported-media-type",
                "422": "validation-failed", "429": "rate-limited", "500": "internal",
                "503": "unavailable"}
TABLE = error_table()

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in ("--check", "--write"):
        sys.exit(__doc__)
    if sys.argv[1] == "--check":
        sys.exit(check(sys.argv[2:]))
    write(sys.argv[2:])
