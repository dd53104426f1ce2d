#!/usr/bin/env python3
"""Writes the request lists of scripts/bench.sh (stdlib only).

    bench/requests.py OUTDIR [KEYS_PARTNERS]

Each file has one request per line, tab-separated: METHOD, PATH, bearer TOKEN, BODY (may be
empty); bench/requests.lua replays them round robin. Tokens are HS256 JWTs like the service
expects (JWT_SECRET, JWT_ISSUER, JWT_AUDIENCE from the environment), valid two hours, one per
partner of bench/data.sql (its global_admin, user number 1 of the partner)."""
import base64
import hashlib
import hmac
import json
import os
import random
import sys
import time

PARTNERS = 2500
USERS_PER_PARTNER = 8
BENEFITS_PER_PARTNER = 20
VS_BENEFIT = 6   # the Gold Visual Studio Enterprise benefit (25 seats), k within the partner
SQL_BENEFIT = 3  # the Gold SQL Server benefit (10 keys)


def bench_id(prefix: str, n: int) -> str:
    return f"{prefix}-0000-4000-8000-{n:012x}"


def partner(n):
    return bench_id("b0000000", n)


def user(n, u):
    return bench_id("b1000000", (n - 1) * USERS_PER_PARTNER + u)


def benefit(n, k):
    return bench_id("b2000000", (n - 1) * BENEFITS_PER_PARTNER + k)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token(sub, tid, roles):
    now = int(time.time())
    claims = {"iss": os.environ["JWT_ISSUER"], "aud": os.environ["JWT_AUDIENCE"], "sub": sub,
              "tid": tid, "roles": roles, "iat": now, "nbf": now, "exp": now + 7200}
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    body = b64(json.dumps(claims, separators=(",", ":")).encode())
    sig = hmac.new(os.environ["JWT_SECRET"].encode(), f"{head}.{body}".encode(),
                   hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"


def main():
    out = sys.argv[1]
    keys_partners = int(sys.argv[2]) if len(sys.argv) > 2 else 400
    rnd = random.Random(7)
    ga = {n: token(user(n, 1), partner(n), ["global_admin"]) for n in range(1, PARTNERS + 1)}
    order = list(range(1, PARTNERS + 1))
    rnd.shuffle(order)

    def write(name, lines):
        with open(os.path.join(out, name), "w") as f:
            for line in lines:
                f.write("\t".join(line) + "\n")

    # Reads: every partner once, in random order, a token of that partner.
    write("list.tsv", [("GET", f"/v1/partners/{partner(n)}/benefits", ga[n], "") for n in order])
    write("get.tsv", [("GET", f"/v1/partners/{partner(n)}/benefits/"
                       f"{benefit(n, rnd.randint(1, BENEFITS_PER_PARTNER))}", ga[n], "")
                      for n in order])
    # Seat cycle: blocks of 1024 distinct (partner, user) pairs, first all assignments of the
    # block, then all removals; the Lua script deals the lines to threads round robin, so
    # each pair's removal comes ~1024 requests after its assignment (long done at 32
    # connections) and no two connections touch the same pair at the same time.
    # Users outer, partners inner: consecutive requests lock different benefits.
    pairs = [(n, u) for u in range(2, USERS_PER_PARTNER + 1) for n in order]
    seats = []
    block = 1024
    for i in range(0, len(pairs) - block + 1, block):
        chunk = pairs[i:i + block]
        for n, u in chunk:
            seats.append(("POST", f"/v1/partners/{partner(n)}/benefits/{benefit(n, VS_BENEFIT)}"
                          "/assignments", ga[n], json.dumps({"user_id": user(n, u)})))
        for n, u in chunk:
            seats.append(("DELETE", f"/v1/partners/{partner(n)}/benefits/"
                          f"{benefit(n, VS_BENEFIT)}/assignments/{user(n, u)}", ga[n], ""))
    write("seats.tsv", seats)
    # Key reveals: the first KEYS_PARTNERS partners' SQL Server benefit; bench.sh makes the
    # first reveal of each before measuring, so these are all repeat reveals.
    body = json.dumps({"language": "en-US", "os": "x64"})
    keys = [("POST", f"/v1/partners/{partner(n)}/benefits/{benefit(n, SQL_BENEFIT)}/keys",
             ga[n], body) for n in range(1, keys_partners + 1)]
    rnd.shuffle(keys)
    write("keys.tsv", keys)


if __name__ == "__main__":
    main()
