#!/usr/bin/env python3
"""Figures of scripts/bench.sh (stdlib only).

    stats.py wrk NAME WRK_OUTPUT >> results.jsonl
    stats.py pgbench NAME REQS_PER_TX PGBENCH_OUTPUT LOGFILE... >> results.jsonl
    stats.py table results.jsonl RSS_KB METRICS  (prints the Markdown table)
    stats.py wrk17 NAME TAG WRK_OUTPUT SECS CONNS METRICS_BEFORE METRICS_AFTER LOAD >> results17.jsonl
    stats.py table17 results17.jsonl RSS_KB      (issue 17's table and its targets)

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


# --- issue 17 -------------------------------------------------------------------------------
LIST = ("GET", "/v1/partners/:partnerId/benefits")


def counters(path):
    """The /metrics counters a run17 needs: cache outcomes, answers and histogram per route."""
    c = {"hit": 0, "miss": 0, "not_modified": 0, "vreads": 0, "vqueries": 0, "routes": {},
         "buckets": {}}
    for line in open(path):
        m = re.match(r'mpn_cache_version_(reads|queries)_total (\d+)', line)
        if m:
            c["v" + m.group(1)] = int(m.group(2))
        m = re.match(r'mpn_cache_answers_total\{outcome="(\w+)"\} (\d+)', line)
        if m:
            c[m.group(1)] = int(m.group(2))
        m = re.match(r'mpn_http_request_duration_seconds_count\{method="([^"]*)",route="([^"]*)"\} (\d+)', line)
        if m:
            c["routes"][m.group(1) + " " + m.group(2)] = int(m.group(3))
        m = re.match(r'mpn_http_request_duration_seconds_bucket\{method="([^"]*)",route="([^"]*)",'
                     r'le="([^"]+)"\} (\d+)', line)
        if m and (m.group(1), m.group(2)) == LIST:
            c["buckets"][m.group(3)] = int(m.group(4))
    return c


def wrk17(name, tag, path, secs, conn, before, after, load):
    r = wrk(name, path)
    b, a = counters(before), counters(after)
    lst = " ".join(LIST)
    r.update({"tag": tag, "conn": int(conn), "load": load,
              "hit": a["hit"] - b["hit"], "miss": a["miss"] - b["miss"],
              "not_modified": a["not_modified"] - b["not_modified"],
              "vreads": a["vreads"] - b["vreads"], "vqueries": a["vqueries"] - b["vqueries"],
              "list_rps": (a["routes"].get(lst, 0) - b["routes"].get(lst, 0)) / float(secs),
              "writes": sum(a["routes"][k] - b["routes"].get(k, 0) for k in a["routes"]
                            if k.split(" ")[0] in ("POST", "DELETE"))})
    # The list's p99 inside the service during the measured seconds (histogram deltas).
    d = sorted(((float("inf") if k == "+Inf" else float(k)), v - b["buckets"].get(k, 0))
               for k, v in a["buckets"].items())
    r["list_p99_in"] = None
    if d and d[-1][1] > 0:
        r["list_p99_in"] = next(le * 1000 for le, n in d if n >= 0.99 * d[-1][1])
    return r


def table17(path, rss_kb):
    rows = {}
    for l in open(path):
        if l.strip():
            r = json.loads(l)
            rows[r.get("tag", r["name"])] = r
    out = ["", "Issue 17: the list at `limit=20` (wrk) and the plain two-statement SQL (pgbench)", "",
           "| run | connections | req/s | list answers/s | p50 ms | p99 ms | list p99 in service "
           "| errors | cache hit / miss / 304 | versions per query | load average |",
           "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for tag in ("plain", "warm", "inm", "cold", "afterwrite", "mixed", "c256"):
        r = rows.get(tag)
        if not r:
            continue
        if r["tool"] == "pgbench":
            out.append(f"| plain SQL (pgbench: partner check + page of benefits) | 32 | {r['rps']:.0f} "
                       f"| {r['rps']:.0f} | {fmt_ms(r['p50'])} | {fmt_ms(r['p99'])} | – "
                       f"| {r.get('failed', 0)} | – | – | {r.get('load', '')} |")
            continue
        inside = "–" if r["list_p99_in"] is None else f"≤ {r['list_p99_in']:g}"
        out.append(f"| {r['name']} | {r['conn']} | {r['rps']:.0f} | {r['list_rps']:.0f} "
                   f"| {fmt_ms(r['p50'])} | {fmt_ms(r['p99'])} | {inside} "
                   f"| {r['non2xx'] + r['socket_errors']} "
                   f"| {r['hit']} / {r['miss']} / {r['not_modified']} "
                   f"| {r['vreads'] / r['vqueries'] if r.get('vqueries') else 0:.1f} | {r['load']} |")
    out += ["", "| target | this run |", "|---|---|"]

    def ratio(a, b):
        return f"{a / b:.2f} ×" if a is not None and b else "–"

    g = lambda t, k: rows[t][k] if t in rows else None
    out.append(f"| warm list ≥ 1.0 × plain pgbench | {ratio(g('warm', 'rps'), g('plain', 'rps'))} |")
    out.append(f"| cold list ≥ 0.5 × plain pgbench | {ratio(g('cold', 'list_rps'), g('plain', 'rps'))} "
               f"(every read a miss); each read right after a write to its partner: "
               f"{ratio(g('afterwrite', 'list_rps'), g('plain', 'rps'))} for the list answers, "
               f"{ratio(g('afterwrite', 'rps'), g('plain', 'rps'))} for all requests, half of them "
               f"writes |")
    out.append(f"| 304 ≥ 1.5 × warm | {ratio(g('inm', 'rps'), g('warm', 'rps'))} |")
    out.append(f"| p99 ≤ 15 ms at 32 connections (warm list) | "
               f"{fmt_ms(g('warm', 'p99')) if 'warm' in rows else '–'} ms |")
    out.append(f"| p99 ≤ 60 ms at 256 connections (warm list) | "
               f"{fmt_ms(g('c256', 'p99')) if 'c256' in rows else '–'} ms |")
    out.append(f"| peak RSS ≤ 64 MB | {int(rss_kb) / 1024:.1f} MB |")
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
    elif cmd == "wrk17":
        print(json.dumps(wrk17(*sys.argv[2:10])))
    elif cmd == "tag17":  # adds the load average to a pgbench line on stdin
        r = json.loads(sys.stdin.read())
        r.update({"tag": r["name"], "load": sys.argv[2]})
        print(json.dumps(r))
    elif cmd == "table17":
        table17(sys.argv[2], sys.argv[3])
    elif cmd == "table":
        table(sys.argv[2], sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else None)
