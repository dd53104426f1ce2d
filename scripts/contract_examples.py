#!/usr/bin/env python3
"""Success examples for the contract, taken from what the service really answered (issue 15).

    contract_examples.py TRAFFIC.jsonl   (maintainers) gives every JSON success answer of
                                         api/openapi.yaml that has no example one: a real
                                         answer recorded by the API tests through Prism
                                         (build-asan/test-logs/traffic.jsonl), preferring
                                         the demo partner's (so its ids work against
                                         ./scripts/run.sh), arrays cut to two items

Examples already written by hand are kept. spectral's oas3-valid-media-example rule (run by
tests/contract/lint.sh in every test run) then checks each one against its schema."""
import json
import os
import re
import sys

import yaml

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
SPEC = os.path.join(ROOT, "api", "openapi.yaml")
DEMO = "11111111-1111-4111-8111-111111111111"  # Contoso, sql/demo/seed.sql
METHODS = ("get", "put", "post", "patch", "delete")


def trim(v, depth=0):
    if isinstance(v, list):
        return [trim(x, depth + 1) for x in v[:2]]
    if isinstance(v, dict):
        return {k: trim(x, depth + 1) for k, x in v.items()}
    return v


def matcher(doc):
    ops = []
    for path, item in doc["paths"].items():
        rx = re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(path)) + "$")
        for m in item:
            if m in METHODS:
                ops.append((path.count("{"), path, m.upper(), rx))
    ops.sort()  # literal segments first: /benefits/summary before /benefits/{benefitId}

    def find(method, path):
        for _, p, m, rx in ops:
            if m == method and rx.match(path):
                return p
        return None
    return find


class Dumper(yaml.SafeDumper):
    pass


Dumper.add_representer(str, lambda d, s: d.represent_scalar(
    "tag:yaml.org,2002:str", s, style="|" if "\n" in s else None))


def main(traffic):
    doc = yaml.safe_load(open(SPEC, encoding="utf-8"))
    find = matcher(doc)
    best = {}
    for line in open(traffic, encoding="utf-8"):
        t = json.loads(line)
        if not (200 <= t["status"] < 300) or not t.get("body") or t.get("truncated"):
            continue
        if not t["headers"].get("content-type", "").startswith("application/json"):
            continue
        op = find(t["method"], t["path"])
        if op is None:
            continue
        try:
            body = json.loads(t["body"])
        except ValueError:
            continue
        key = (t["method"], op, str(t["status"]))
        score = (DEMO in t["path"], -len(t["body"]))
        if key not in best or score > best[key][0]:
            best[key] = (score, body)
    added = missing = 0
    for path, item in doc["paths"].items():
        for m, op in item.items():
            if m not in METHODS:
                continue
            for status, resp in op["responses"].items():
                media = resp.get("content", {}).get("application/json") if status < "300" else None
                if media is None or "example" in media or "examples" in media:
                    continue
                got = best.get((m.upper(), path, status))
                if got is None:
                    missing += 1
                    print(f"no recorded answer for {m.upper()} {path} {status}", file=sys.stderr)
                    continue
                media["example"] = trim(got[1])
                added += 1
    head = "".join(line for line in open(SPEC, encoding="utf-8") if line.startswith("#"))
    with open(SPEC, "w", encoding="utf-8") as f:
        f.write(head)
        yaml.dump(doc, f, Dumper=Dumper, sort_keys=False, allow_unicode=True, width=110)
    print(f"contract-examples: {added} added, {missing} without a recorded answer",
          file=sys.stderr)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
