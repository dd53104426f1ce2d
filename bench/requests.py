#!/usr/bin/env python3
"""Writes the request lists of scripts/bench.sh (stdlib only).

    bench/requests.py OUTDIR [KEYS_PARTNERS]
    bench/requests.py etags FILE URL   (adds each line's current ETag as a 5th column)

Each file has one request per line, tab-separated: METHOD, PATH, bearer TOKEN, BODY (may be
empty), and optionally an If-None-Match value; bench/requests.lua replays them round robin. Tokens are HS256 JWTs like the service
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
    issue17_lists(write, order, ga)


# --- issue 17: warm, cold, 304 and mixed list runs (all at limit=20) ---------------------------
WARM_PARTNERS = 1000  # their limit=20 answers (~3.5 KB each) fit in the default CACHE_MB=16
COLD_BLOCK = 512      # a multiple of any thread count in use (1, 2, 4, 8 ...)


def list20(n, tok):
    return ("GET", f"/v1/partners/{partner(n)}/benefits?limit=20", tok, "")


def seat_pairs(order):
    # Users outer, partners inner: COLD_BLOCK consecutive pairs are COLD_BLOCK distinct partners.
    return [(n, u) for u in range(2, USERS_PER_PARTNER + 1) for n in order]


def assign(n, u, tok):
    return ("POST", f"/v1/partners/{partner(n)}/benefits/{benefit(n, VS_BENEFIT)}/assignments",
            tok, json.dumps({"user_id": user(n, u)}))


def unassign(n, u, tok):
    return ("DELETE", f"/v1/partners/{partner(n)}/benefits/{benefit(n, VS_BENEFIT)}"
            f"/assignments/{user(n, u)}", tok, "")


def issue17_lists(write, order, ga):
    warm = order[:WARM_PARTNERS]
    # warm (and c256): the same 1 000 partners again and again.
    write("warm.tsv", [list20(n, ga[n]) for n in warm])
    # 304: the same lines; bench.sh adds each one's current ETag as a 5th column
    # (requests.py etags) once the service is up.
    write("inm.tsv", [list20(n, ga[n]) for n in warm])
    # cold: per block of COLD_BLOCK partners: every assignment, every list, every removal,
    # every list. A line and the block's next phase for the same partner are COLD_BLOCK lines
    # apart, so the same wrk thread (lines i, i+n, ...) sends them, COLD_BLOCK / n requests
    # later (done long before at 16 connections a thread): each list reads after a write.
    cold = []
    pairs = seat_pairs(order)
    for i in range(0, len(pairs) - COLD_BLOCK + 1, COLD_BLOCK):
        chunk = pairs[i:i + COLD_BLOCK]
        cold += [assign(n, u, ga[n]) for n, u in chunk]
        cold += [list20(n, ga[n]) for n, u in chunk]
        cold += [unassign(n, u, ga[n]) for n, u in chunk]
        cold += [list20(n, ga[n]) for n, u in chunk]
    write("cold.tsv", cold)
    # mixed: 95 % reads (the warm partners' lists), 5 % writes (the seat cycle of seats.tsv,
    # any partner): write s of the cycle goes to line 20 s + s % 2, so an assignment and its
    # removal (1 024 writes later) stay on the same thread for 1, 2 or 4 threads.
    seats = []
    block = 1024
    for i in range(0, 2 * block, block):  # 2 blocks: 81 920 lines, a minute at 1 400 req/s
        chunk = pairs[i:i + block]
        seats += [assign(n, u, ga[n]) for n, u in chunk]
        seats += [unassign(n, u, ga[n]) for n, u in chunk]
    mixed = []
    r = 0
    for s, w in enumerate(seats):
        group = []
        for _ in range(19):
            n = warm[r % len(warm)]
            group.append(list20(n, ga[n]))
            r += 1
        group.insert(s % 2, w)
        mixed += group
    write("mixed.tsv", mixed)


def etags(path, base):
    """Adds the current ETag of each GET line of PATH as its 5th column (If-None-Match)."""
    import urllib.request
    lines = [l.rstrip("\n").split("\t") for l in open(path)]
    with open(path, "w") as f:
        for m, p, t, b, *_ in lines:
            req = urllib.request.Request(base + p, method=m, headers={"Authorization": "Bearer " + t})
            with urllib.request.urlopen(req, timeout=10) as r:
                r.read()
                tag = r.headers.get("ETag")
            if not tag:
                sys.exit(f"no ETag on {p}")
            f.write("\t".join((m, p, t, b, tag)) + "\n")


if __name__ == "__main__":
    if sys.argv[1] == "etags":
        etags(sys.argv[2], sys.argv[3])
    else:
        main()
