#!/usr/bin/env python3
"""Figures of scripts/bench.sh (stdlib only).

    stats.py wrk NAME WRK_OUTPUT >> results.jsonl
    stats.py pgbench NAME REQS_PER_TX PGBENCH_OUTPUT LOGFILE... >> results.jsonl
    stats.py table results.jsonl RSS_KB METRICS  (prints the Markdown table)

wrk gives req/s and its latency distribution (--latency). pgbench gives tps, and the
per-transaction log (-l) gives the percentiles; a transaction of a script that stands for
REQS_PER_TX requests counts as that many requests, and its latency is divided by it."""
import json
import re
import sys


def wrk(name, path):
    text = open(path).read()
    unit = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}

    def lat(pct):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)
        return float(m.group(1)) * unit[m.group(2)] if m else None

    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    total = re.search(r"(\d+) requests in", text)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    return {"name": name, "tool": "service", "rps": float(rps.group(1)) if rps else 0.0,
            "p50": lat(50), "p99": lat(99), "requests": int(total.group(1)) if total else 0,
            "non2xx": int(non2xx.group(1)) if non2xx else 0,
            "socket_errors": sum(map(int, errs.groups())) if errs else 0}


def pgbench(name, per_tx, out, logs):
    per_tx = int(per_tx)
    text = open(out).read()
    tps = re.search(r"tps = ([\d.]+) \(without initial connection time\)", text)
    failed = re.search(r"number of failed transactions: (\d+)", text)
    aborted = "aborted" in text and re.search(r"Run was aborted", text)
    lats = []
    for path in logs:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and parts[2].isdigit():
                    lats.append(int(parts[2]) / 1000.0 / per_tx)
    lats.sort()

    def pct(p):
        return lats[min(len(lats) - 1, int(len(lats) * p / 100))] if lats else None

    return {"name": name, "tool": "pgbench", "rps": float(tps.group(1)) * per_tx if tps else 0.0,
            "p50": pct(50), "p99": pct(99), "requests": len(lats) * per_tx,
            "failed": int(failed.group(1)) if failed else 0, "aborted": bool(aborted)}


def fmt_ms(v):
    return "–" if v is None else (f"{v:.2f}" if v < 10 else f"{v:.1f}")


# The service's own latency histogram (GET /metrics at the end of the run, warm-up included):
# the bucket bound under which 99 % of an endpoint's requests were answered, measured from the
# request's arrival in the service to its answer.
ROUTES = {
    "GET …/benefits (list)": ('GET', '/v1/partners/:partnerId/benefits'),
    "GET …/benefits/{b}": ('GET', '/v1/partners/:partnerId/benefits/:benefitId'),
    "seat assign + remove": ('POST', '/v1/partners/:partnerId/benefits/:benefitId/assignments'),
    "POST …/keys (repeat reveal)": ('POST', '/v1/partners/:partnerId/benefits/:benefitId/keys'),
}


def inside_p99(metrics_path, name):
    if name not in ROUTES or not metrics_path:
        return None
    method, route = ROUTES[name]
    buckets = []
    for line in open(metrics_path):
        m = re.match(r'mpn_http_request_duration_seconds_bucket\{method="([^"]*)",route="([^"]*)",'
                     r'le="([^"]+)"\} (\d+)', line)
        if m and m.group(1) == method and m.group(2) == route:
            buckets.append((float("inf") if m.group(3) == "+Inf" else float(m.group(3)),
                            int(m.group(4))))
    if not buckets or buckets[-1][1] == 0:
        return None
    total = buckets[-1][1]
    for le, n in buckets:
        if n >= 0.99 * total:
            return le * 1000
    return None


def table(path, rss_kb, metrics_path=None):
    rows = [json.loads(l) for l in open(path) if l.strip()]
    names = []
    for r in rows:
        if r["name"] not in names:
            names.append(r["name"])
    out = ["| endpoint | service req/s | p50 ms | p99 ms | p99 in service | errors "
           "| pgbench req/s | p50 ms | p99 ms | service ÷ pgbench |",
           "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for n in names:
        svc = next((r for r in rows if r["name"] == n and r["tool"] == "service"), None)
        pgs = [r for r in rows if r["name"] == n and r["tool"] == "pgbench"]
        if svc is None:
            continue
        if not pgs:
            pgs = [None]
        for i, pg in enumerate(pgs):
            label = n if i == 0 else ""
            base = pg.get("label", "") if pg else ""
            inside = inside_p99(metrics_path, n)
            cells = [label] + ([f"{svc['rps']:.0f}", fmt_ms(svc["p50"]), fmt_ms(svc["p99"]),
                                "–" if inside is None else f"≤ {inside:g}",
                                str(svc["non2xx"] + svc["socket_errors"])] if i == 0 else
                               ["", "", "", "", ""])
            if pg:
                ratio = svc["rps"] / pg["rps"] if pg["rps"] else 0
                cells += [f"{pg['rps']:.0f}" + (f" ({pg['label']})" if pg.get("label") else ""),
                          fmt_ms(pg["p50"]), fmt_ms(pg["p99"]), f"{ratio * 100:.0f} %"]
            else:
                cells += ["–", "–", "–", "–"]
            out.append("| " + " | ".join(cells) + " |")
    out.append("")
    out.append(f"Service peak RSS (VmHWM): {int(rss_kb) / 1024:.1f} MB")
    print("\n".join(out))


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "wrk":
        print(json.dumps(wrk(sys.argv[2], sys.argv[3])))
    elif cmd == "pgbench":
        r = pgbench(sys.argv[2], sys.argv[3], sys.argv[5], sys.argv[6:])
        if sys.argv[4]:
            r["label"] = sys.argv[4]
        print(json.dumps(r))
    elif cmd == "table":
        table(sys.argv[2], sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else None)
