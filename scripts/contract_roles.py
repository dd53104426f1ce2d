#!/usr/bin/env python3
"""Writes (or checks) the machine-readable roles of every operation of api/openapi.yaml from THE
role matrix (tests/api/role_matrix.py), so that the two can never disagree:

  x-roles: the roles whose tokens may call the operation (`employee` = a partner's token with no
           role; `operator` = the program operator); public operations have none (no token).
  x-roles-by-variant: where who may call depends on what the request acts on (R6-R9), the
           roles per variant (x-roles is then their union).

    scripts/contract_roles.py          rewrites the x-roles of api/openapi.yaml in place
    scripts/contract_roles.py --check  exits 1 naming every operation whose x-roles differ

The edit is textual (the line after `operationId:`), so the rest of the file keeps its form."""
import os
import re
import sys

import yaml

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, os.path.join(ROOT, "tests", "api"))
from role_matrix import CALLERS, ROLE_OF, ROWS  # noqa: E402

SPEC = os.path.join(ROOT, "api", "openapi.yaml")
ORDER = [ROLE_OF[c] for c in CALLERS]


def roles(allowed) -> list:
    return [r for r in ORDER if any(ROLE_OF[c] == r for c in allowed)]


def wanted() -> dict:
    """(METHOD, path) -> {"x-roles": [...], "x-roles-by-variant": {...}?}"""
    by_op: dict = {}
    for row in ROWS:
        by_op.setdefault(row.op, []).append(row)
    out = {}
    for op, rows in by_op.items():
        if rows[0].public:
            out[op] = {"x-roles": []}
            continue
        union = set().union(*(r.allowed for r in rows))
        want = {"x-roles": roles(union)}
        if len(rows) > 1 or rows[0].variant:
            want["x-roles-by-variant"] = {r.variant or "default": roles(r.allowed) for r in rows}
        out[op] = want
    return out


def current(doc) -> dict:
    out = {}
    for path, item in doc["paths"].items():
        for m, op in item.items():
            if m in ("get", "put", "post", "patch", "delete"):
                out[(m.upper(), path)] = {k: op[k] for k in ("x-roles", "x-roles-by-variant")
                                          if k in op}
    return out


def check() -> int:
    with open(SPEC, encoding="utf-8") as f:
        have = current(yaml.safe_load(f))
    want = wanted()
    bad = [f"{m} {p}: contract {have.get((m, p))} != matrix {w}" for (m, p), w in want.items()
           if have.get((m, p)) != w]
    bad += [f"{m} {p}: in the contract, not in the role matrix" for (m, p) in have
            if (m, p) not in want]
    for line in bad:
        print(line)
    return 1 if bad else 0


def write() -> None:
    text = open(SPEC, encoding="utf-8").read().split("\n")
    want = wanted()
    out, path, method, skip_indent = [], None, None, None
    for line in text:
        if skip_indent is not None:
            # drop the old x-roles block: deeper-indented lines after its key
            ind = len(line) - len(line.lstrip())
            if line.strip() and (ind > skip_indent or
                                 (ind == skip_indent and line.lstrip().startswith("- "))):
                continue
            skip_indent = None
        m = re.match(r"^  (/\S*):\s*$", line)
        if m:
            path = m.group(1)
        m = re.match(r"^    (get|put|post|patch|delete):\s*$", line)
        if m:
            method = m.group(1).upper()
        m = re.match(r"^(\s+)(x-roles|x-roles-by-variant):", line)
        if m and len(m.group(1)) == 6:
            skip_indent = 6
            continue
        out.append(line)
        m = re.match(r"^(\s+)operationId:", line)
        if m and len(m.group(1)) == 6 and (method, path) in want:
            block = yaml.safe_dump(want[(method, path)], sort_keys=False, width=100,
                                   default_flow_style=None).rstrip("\n").split("\n")
            out.extend("      " + b for b in block)
    with open(SPEC, "w", encoding="utf-8") as f:
        f.write("\n".join(out))


if __name__ == "__main__":
    if sys.argv[1:] == ["--check"]:
        sys.exit(check())
    write()
    sys.exit(check())
