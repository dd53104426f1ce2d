"""The soak of scripts/soak.sh: burst, idle connections, then paced mixed load with connection
churn, sampling the service's RSS, threads and descriptors. Prints tables; exits 1 when the
service stopped answering, a check failed, or memory grew."""
import os
import random
import socket
import subprocess
import sys
import threading
import time

URL, PID, SECS, RATE, OUT = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
HOST, PORT = "127.0.0.1", int(URL.rsplit(":", 1)[1])
TOKEN, OP = os.environ["TOKEN"], os.environ["OP_TOKEN"]
CONTOSO = "11111111-1111-4111-8111-111111111111"
failures = []


def status() -> dict:
    d = {}
    with open(f"/proc/{PID}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            d[k] = v.strip()
    return {"rss_mb": int(d["VmRSS"].split()[0]) / 1024, "peak_rss_mb": int(d["VmHWM"].split()[0]) / 1024,
            "threads": int(d["Threads"]),
            "fds": len(os.listdir(f"/proc/{PID}/fd"))}


def request(sock, path, token=TOKEN, extra=b""):
    head = f"GET {path} HTTP/1.1\r\nHost: x\r\n".encode()
    if token:
        head += f"Authorization: Bearer {token}\r\n".encode()
    sock.sendall(head + extra + b"\r\n")
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return 0, data
        data += chunk
        h, sep, body = data.partition(b"\r\n\r\n")
        if sep:
            cl = [int(x.split(b":", 1)[1]) for x in h.split(b"\r\n") if x.lower().startswith(b"content-length:")]
            if cl and len(body) >= cl[0]:
                return int(h.split(b" ", 2)[1]), data


def get(path, token=TOKEN, timeout=2.0):
    with socket.create_connection((HOST, PORT), timeout=timeout) as s:
        return request(s, path, token)[0]


def wait_back(deadline_s=30):
    t0 = time.monotonic()
    base = None
    while time.monotonic() - t0 < deadline_s:
        st = status()
        if st["threads"] <= 4:
            return st, time.monotonic() - t0
        time.sleep(0.2)
    return status(), None


# --- 1. the outage's reproduction -------------------------------------------------------------
print("== 1. burst: wrk -t2 -c2000 -d10s on /v1/admin/partners?limit=20 (cap 1024)")
before = status()
with open(f"{OUT}/wrk-burst.txt", "w") as f:
    subprocess.run(["wrk", "-t2", "-c2000", "-d10s", "-H", f"Authorization: Bearer {OP}",
                    f"{URL}/v1/admin/partners?limit=20"], stdout=f, stderr=subprocess.STDOUT)
print(open(f"{OUT}/wrk-burst.txt").read().strip())
t0 = time.monotonic()
ok = False
while time.monotonic() - t0 < 2.0:
    try:
        if get("/readyz", None) == 200 and get(f"/v1/partners/{CONTOSO}/benefits?limit=1") == 200:
            ok = True
            break
    except OSError:
        pass
    time.sleep(0.05)
after = time.monotonic() - t0
back, took = wait_back()
print(f"readyz and an authenticated request after the burst: {'answered' if ok else 'NOT answered'} "
      f"in {after:.3f}s; before {before}, after {back} ({'back in %.1fs' % took if took is not None else 'NOT back in 30 s'})")
if not ok or took is None:
    failures.append("burst")

# --- 2. 10 000 idle connections ----------------------------------------------------------------
print("\n== 2. 10 000 idle connections")
import resource
resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)
before = status()
idle = [socket.create_connection((HOST, PORT), timeout=10) for _ in range(10000)]
time.sleep(1)
held = status()
lat = []
with socket.create_connection((HOST, PORT), timeout=5) as s:
    for _ in range(500):
        t = time.monotonic()
        st, _ = request(s, f"/v1/partners/{CONTOSO}/benefits?limit=20")
        lat.append(time.monotonic() - t)
        if st != 200:
            failures.append(f"request during idle connections: {st}")
            break
for s in idle:
    s.close()
lat.sort()
print(f"before {before}; with 10 000 idle connections {held}; 500 requests meanwhile: "
      f"p50 {lat[len(lat) // 2] * 1e3:.2f} ms, p99 {lat[int(len(lat) * .99) - 1] * 1e3:.2f} ms")
print(f"RSS with 10 000 idle connections: {held['rss_mb']:.1f} MB (target <= 64 MB): "
      f"{'ok' if held['rss_mb'] <= 64 else 'OVER'}")
if held["rss_mb"] > 64:
    failures.append("idle RSS")

# --- 3. mixed load with churn -----------------------------------------------------------------
print(f"\n== 3. {SECS}s of mixed load with connection churn, ~{RATE} requests/s, sampled every 10 s")
stop = threading.Event()
counts, lock = {}, threading.Lock()


def note(k):
    with lock:
        counts[k] = counts.get(k, 0) + 1


PATHS = [f"/v1/partners/{CONTOSO}/benefits?limit=20", f"/v1/partners/{CONTOSO}", "/v1/packages",
         "/v1/me", f"/v1/partners/{CONTOSO}/purchases", "/v1/no-such-thing", "/healthz"]


def worker(kind, per_s):
    rnd = random.Random()
    gap = 1.0 / per_s
    sock = None
    while not stop.is_set():
        t = time.monotonic()
        try:
            if kind == "keepalive":
                if sock is None:
                    sock = socket.create_connection((HOST, PORT), timeout=5)
                st, _ = request(sock, rnd.choice(PATHS))
                if st == 0:
                    sock.close()
                    sock = None
            elif kind == "churn":
                tok = TOKEN if rnd.random() > 0.1 else "not.a.token"
                st = get(rnd.choice(PATHS), tok, 5)
            elif kind == "idle":
                s = socket.create_connection((HOST, PORT), timeout=5)
                time.sleep(rnd.uniform(0.5, 3))
                s.close()
                st = "idle"
            else:  # slow header: half a head, then gone
                s = socket.create_connection((HOST, PORT), timeout=5)
                s.sendall(b"GET /v1/me HTTP/1.1\r\nHost: x\r\n")
                time.sleep(rnd.uniform(0.5, 2))
                s.close()
                st = "slow"
            note(st)
        except OSError as e:
            note(type(e).__name__)
            if sock is not None:
                sock.close()
                sock = None
        time.sleep(max(0.0, gap - (time.monotonic() - t)))


threads = []
plan = [("keepalive", 8, RATE * 0.5 / 8), ("churn", 8, RATE * 0.5 / 8), ("idle", 20, 1), ("slow", 10, 1)]
for kind, n, per in plan:
    for _ in range(n):
        th = threading.Thread(target=worker, args=(kind, per), daemon=True)
        th.start()
        threads.append(th)
samples = []
t_start = time.monotonic()
print(f"{'t (s)':>6} {'RSS (MB)':>9} {'threads':>8} {'fds':>6} {'requests':>9}")
while time.monotonic() - t_start < SECS:
    time.sleep(10)
    st = status()
    n = sum(v for k, v in counts.items() if isinstance(k, int))
    samples.append(st)
    print(f"{time.monotonic() - t_start:6.0f} {st['rss_mb']:9.1f} {st['threads']:8d} {st['fds']:6d} {n:9d}", flush=True)
stop.set()
for th in threads:
    th.join(10)
print("answers:", dict(sorted(counts.items(), key=str)))
third = max(1, len(samples) // 3)
first = sum(s["rss_mb"] for s in samples[1:third + 1]) / max(1, len(samples[1:third + 1]))
last = sum(s["rss_mb"] for s in samples[-third:]) / third
grew = last - first
verdict = "no growth" if grew <= max(4.0, first * 0.10) else "GROWTH"
print(f"RSS: first third {first:.1f} MB, last third {last:.1f} MB ({grew:+.1f} MB): {verdict}; "
      f"threads max {max(s['threads'] for s in samples)}, last {samples[-1]['threads']}")
if verdict != "no growth":
    failures.append("growth")
bad = [k for k in counts if k not in (200, 401, 404, "idle", "slow")]
if bad:
    print("unexpected answers:", {k: counts[k] for k in bad})
    failures.append("answers")
print("\nsoak:", "ok" if not failures else "FAILED " + ", ".join(failures))
sys.exit(1 if failures else 0)
