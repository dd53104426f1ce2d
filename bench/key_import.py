#!/usr/bin/env python3
"""Key pool CSV import benchmark (issue 14; not a test): creates a software product through the
API, uploads N keys as one text/csv request (POST /v1/admin/products/{id}/keys), uploads the same
file again (every line a duplicate), and prints the time of each request and the service's peak
resident memory (VmHWM) before and after.

    ./scripts/run.sh                      # in one shell (Release build, demo data)
    . var/tokens.env                      # in another: $OP is an operator token
    python3 bench/key_import.py --token "$OP" --pid "$(pgrep -f 'build/mpn-benefits serve')" \
        [--base http://127.0.0.1:8080] [--keys 100000]

The body is generated in memory once (about 4 MB for 100 000 keys); the service's default
CSV_MAX_BODY_KB (16 MB) takes it."""
from __future__ import annotations

import argparse
import json
import time
import urllib.request
import uuid


def vm(pid: int | None, field: str) -> str:
    if not pid:
        return "n/a"
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                kb = int(line.split()[1])
                return f"{kb / 1024:.1f} MB"
    return "n/a"


def call(base: str, token: str, method: str, path: str, body: bytes, ctype: str):
    req = urllib.request.Request(base + path, data=body, method=method, headers={
        "Authorization": f"Bearer {token}", "Content-Type": ctype,
        "Idempotency-Key": uuid.uuid4().hex})
    t0 = time.monotonic()
    with urllib.request.urlopen(req, timeout=3600) as r:
        doc = json.loads(r.read())
    return doc, time.monotonic() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", default="http://127.0.0.1:8080")
    ap.add_argument("--token", required=True, help="an operator token")
    ap.add_argument("--pid", type=int, default=0, help="the service's pid, for VmHWM")
    ap.add_argument("--keys", type=int, default=100000)
    a = ap.parse_args()

    code = f"bench-import-{uuid.uuid4().hex[:8]}"
    prod, _ = call(a.base, a.token, "POST", "/v1/admin/products", json.dumps({
        "code": code, "name": f"Import bench {code}", "category": "software",
        "languages": ["en-US"], "os_types": ["x64"]}).encode(), "application/json")
    tag = uuid.uuid4().hex[:6].upper()
    body = ("key\n" + "".join(f"BENCH-{tag}-{i:07d}-{uuid.uuid4().hex[:12].upper()}\n"
                              for i in range(a.keys))).encode()
    print(f"product {prod['id']}; {a.keys} keys, {len(body) / 1048576:.1f} MB of CSV")
    print(f"service before: VmRSS {vm(a.pid, 'VmRSS')}, VmHWM {vm(a.pid, 'VmHWM')}")
    path = f"/v1/admin/products/{prod['id']}/keys"
    for label in ("first upload", "same file again"):
        doc, secs = call(a.base, a.token, "POST", path, body, "text/csv")
        print(f"{label}: {secs:.1f} s ({a.keys / secs:.0f} lines/s); imported {doc['imported']}, "
              f"duplicates {doc['duplicates']}, invalid {doc['invalid']}, "
              f"available {doc['available']}; service VmHWM {vm(a.pid, 'VmHWM')}")


if __name__ == "__main__":
    main()
