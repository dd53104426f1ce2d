"""Issue 12, point 4: webhooks (DESIGN §4b) through a local receiver (plain Python).

The service under test runs its delivery worker (WORKER is on by default); scripts/lib.sh sets
the test-only WEBHOOK_RETRY_SCHEDULE=1,1,1,2,2,2,2 and WEBHOOK_CLAIM_SECONDS=12 (README,
Webhooks), WEBHOOK_ALLOW_HTTP=1 and WEBHOOK_ALLOW_PRIVATE=1. Every signature is checked here
with the test's own HMAC-SHA256."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import signal
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from fresh_partner import fresh_partner
from helpers import (BASE, Client, assert_problem, db_all, db_val, idem, spawn_server, token)


class Receiver:
    """A webhook receiver on 127.0.0.1. `plan` gives the status of the n-th request (1-based)
    of a webhook-id; `delay` seconds are slept before answering."""

    def __init__(self, plan=None, delay: float = 0.0):
        self.got: list[tuple[dict, bytes]] = []
        self.lock = threading.Lock()
        self.plan = plan or (lambda n: 200)
        self.delay = delay
        rec = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with rec.lock:
                    rec.got.append(({k.lower(): v for k, v in self.headers.items()}, body))
                    n = sum(1 for h, _ in rec.got if h.get("webhook-id") ==
                            self.headers.get("webhook-id"))
                if rec.delay:
                    time.sleep(rec.delay)
                self.send_response(rec.plan(n))
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.srv.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.srv.server_address[1]}/hook"
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def ids(self) -> list[str]:
        with self.lock:
            return [h["webhook-id"] for h, _ in self.got]

    def wait(self, cond, what: str, limit: float = 60.0):
        end = time.time() + limit
        while time.time() < end:
            if cond():
                return
            time.sleep(0.1)
        raise AssertionError(f"receiver: {what} did not happen; got {len(self.got)} requests")

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


def _sig(secret: str, msg_id: str, ts: str, body: bytes) -> str:
    key = base64.b64decode(secret[len("whsec_"):])
    mac = hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def _setup(url: str, **extra):
    f = fresh_partner()
    c = Client(BASE, token(f.users["global_admin"], f.partner, ["global_admin"]))
    r = c.post(f"/v1/partners/{f.partner}/webhooks", headers=idem(), json={"url": url, **extra})
    assert r.status_code == 201, r.text
    return f, c, r.json()


def _rename(f, c: Client, name: str) -> None:
    r = c.patch(f"/v1/partners/{f.partner}/users/{f.users['employee']}",
                json={"display_name": name})
    assert r.status_code == 200, r.text


def test_secret_is_shown_once_and_stored_encrypted():
    f = fresh_partner()
    c = Client(BASE, token(f.users["mpn_partner_admin"], f.partner, ["mpn_partner_admin"]))
    h = idem()
    r = c.post(f"/v1/partners/{f.partner}/webhooks", headers=h,
               json={"url": "https://hooks.example.com/mpn", "event_types": ["purchase.created"],
                     "description": "ERP"})
    assert r.status_code == 201, r.text
    w = r.json()
    assert w["secret"].startswith("whsec_") and len(base64.b64decode(w["secret"][6:])) == 32
    assert r.headers["Location"].endswith(w["id"])
    assert w["event_types"] == ["purchase.created"] and w["enabled"] is True
    # a retry of the same request answers the same webhook and secret, and makes no second one
    again = c.post(f"/v1/partners/{f.partner}/webhooks", headers=h,
                   json={"url": "https://hooks.example.com/mpn",
                         "event_types": ["purchase.created"], "description": "ERP"})
    assert again.status_code == 201 and again.json()["secret"] == w["secret"]
    assert again.json()["id"] == w["id"]
    assert db_val("SELECT count(*) FROM webhooks WHERE partner_id = %s", f.partner) == 1
    # never shown again, never stored in the clear (nor in the idempotency record)
    g = c.get(f"/v1/partners/{f.partner}/webhooks/{w['id']}").json()
    assert "secret" not in g
    assert all("secret" not in x for x in c.get(f"/v1/partners/{f.partner}/webhooks").json()["items"])
    dump = json.dumps([list(map(str, r)) for r in db_all(
        "SELECT w.*::text FROM webhooks w WHERE partner_id = %s", f.partner)])
    dump += json.dumps([list(map(str, r)) for r in db_all(
        "SELECT body FROM idempotency_keys WHERE body IS NOT NULL")])
    assert w["secret"] not in dump and w["secret"][6:] not in dump
    assert db_val("SELECT count(*) FROM audit_events WHERE partner_id = %s "
                  "AND action = 'webhook.created'", f.partner) == 1


@pytest.mark.parametrize("url", ["ftp://hooks.example.com/x", "hooks.example.com/x",
                                 "https://hooks.example.com/" + "a" * 2100,
                                 "https://user:pw@hooks.example.com/x"])
def test_bad_urls_are_422(url):
    f = fresh_partner()
    c = Client(BASE, token(f.users["global_admin"], f.partner, ["global_admin"]))
    body = assert_problem(c.post(f"/v1/partners/{f.partner}/webhooks", headers=idem(),
                                 json={"url": url}), 422, "validation-failed")
    assert "url" in json.dumps(body)
    assert db_val("SELECT count(*) FROM webhooks WHERE partner_id = %s", f.partner) == 0


def test_http_and_private_addresses_are_refused_unless_allowed():
    f = fresh_partner()
    tok = token(f.users["global_admin"], f.partner, ["global_admin"])
    with spawn_server(env_overrides={"WEBHOOK_ALLOW_HTTP": "0", "WEBHOOK_ALLOW_PRIVATE": "0",
                                     "WORKER": "0"}) as s:
        c = s.client(tok)
        for url in ("http://hooks.example.com/x", "https://127.0.0.1/x", "https://10.1.2.3/x",
                    "https://[::1]/x", "https://169.254.169.254/latest", "https://localhost/x",
                    "https://192.168.1.1/x", "https://172.20.0.1/x"):
            r = c.post(f"/v1/partners/{f.partner}/webhooks", json={"url": url})
            assert r.status_code == 422, (url, r.text)
        r = c.post(f"/v1/partners/{f.partner}/webhooks", json={"url": "https://hooks.example.com/x"})
        assert r.status_code == 201, r.text
        c.close()


def test_delivery_is_signed_and_the_test_verifies_it():
    rec = Receiver()
    try:
        f, c, w = _setup(rec.url)
        _rename(f, c, "Signed")
        rec.wait(lambda: len(rec.got) >= 1, "a delivery")
        h, body = rec.got[0]
        ev = json.loads(body)
        assert ev["type"] == "user.updated" and ev["data"]["display_name"] == "Signed"
        assert h["webhook-id"] == ev["id"]
        assert abs(int(h["webhook-timestamp"]) - time.time()) < 300
        assert h["webhook-signature"] == _sig(w["secret"], h["webhook-id"],
                                              h["webhook-timestamp"], body)
        assert h["content-type"] == "application/json"
        # the same event as the feed shows
        feed = c.get(f"/v1/partners/{f.partner}/events", params={"after": f"{int(ev['id']) - 1}"})
        assert feed.json()["items"][0] == ev
        d = c.get(f"/v1/partners/{f.partner}/webhooks/{w['id']}/deliveries").json()["items"]
        rec.wait(lambda: db_val("SELECT status FROM webhook_deliveries WHERE event_id = %s "
                                "AND webhook_id = %s", ev["id"], w["id"]) == "succeeded",
                 "recorded success")
        d = c.get(f"/v1/partners/{f.partner}/webhooks/{w['id']}/deliveries").json()["items"]
        assert [(x["event_id"], x["status"], x["attempts"], x["last_status_code"]) for x in d] \
            == [(ev["id"], "succeeded", 1, 200)]
    finally:
        rec.close()


def test_receiver_failing_twice_gets_the_event_on_the_third_attempt():
    rec = Receiver(plan=lambda n: 500 if n <= 2 else 204)
    try:
        f, c, w = _setup(rec.url, event_types=["user.updated"])
        _rename(f, c, "Third time")
        rec.wait(lambda: db_val("SELECT status FROM webhook_deliveries WHERE webhook_id = %s",
                                w["id"]) == "succeeded", "success after retries")
        assert len(rec.ids()) == 3 and len(set(rec.ids())) == 1
        row = db_all("SELECT attempts, last_status_code, status FROM webhook_deliveries "
                     "WHERE webhook_id = %s", w["id"])
        assert row == [(3, 204, "succeeded")]
        # each attempt is signed for its own timestamp
        for h, body in rec.got:
            assert h["webhook-signature"] == _sig(w["secret"], h["webhook-id"],
                                                  h["webhook-timestamp"], body)
    finally:
        rec.close()


def test_a_receiver_that_always_fails_ends_failed_after_the_schedule():
    rec = Receiver(plan=lambda n: 503)
    try:
        f, c, w = _setup(rec.url, event_types=["user.updated"])
        _rename(f, c, "Never")
        rec.wait(lambda: db_val("SELECT status FROM webhook_deliveries WHERE webhook_id = %s",
                                w["id"]) == "failed", "failed", limit=90)
        assert len(rec.ids()) == 8  # the first attempt and 7 retries
        d = c.get(f"/v1/partners/{f.partner}/webhooks/{w['id']}/deliveries").json()["items"][0]
        assert d["status"] == "failed" and d["attempts"] == 8 and d["last_status_code"] == 503
        assert d["next_attempt_at"] is None and "503" in d["last_error"]
        # manual retry: due at once, one more attempt
        rec.plan = lambda n: 200
        r = c.post(f"/v1/partners/{f.partner}/webhooks/{w['id']}/deliveries/{d['id']}/retry",
                   headers=idem(), json={})
        assert r.status_code == 202 and r.json()["status"] == "pending", r.text
        rec.wait(lambda: db_val("SELECT status FROM webhook_deliveries WHERE id = %s",
                                d["id"]) == "succeeded", "manual retry")
        assert len(rec.ids()) == 9
    finally:
        rec.close()


def test_three_days_of_failures_disable_the_webhook_with_an_event():
    rec = Receiver(plan=lambda n: 500)
    try:
        f, c, w = _setup(rec.url, event_types=["user.updated"])
        db_val("UPDATE webhooks SET failing_since = now() - interval '3 days 1 minute' "
               "WHERE id = %s RETURNING 1", w["id"])
        _rename(f, c, "Last straw")
        rec.wait(lambda: db_val("SELECT enabled FROM webhooks WHERE id = %s", w["id"]) is False,
                 "disabled")
        g = c.get(f"/v1/partners/{f.partner}/webhooks/{w['id']}").json()
        assert g["enabled"] is False and "3 days" in g["disabled_reason"]
        evs = c.get(f"/v1/partners/{f.partner}/events",
                    params={"types": "webhook.disabled"}).json()["items"]
        assert len(evs) == 1 and evs[0]["subject"] == {"type": "webhook", "id": w["id"]}
        assert evs[0]["data"]["enabled"] is False
        # enabling it again starts afresh
        r = c.patch(f"/v1/partners/{f.partner}/webhooks/{w['id']}", json={"enabled": True})
        assert r.status_code == 200 and r.json()["disabled_reason"] is None
    finally:
        rec.close()


def test_rotate_secret_gives_two_valid_signatures_for_a_while():
    rec = Receiver()
    try:
        f, c, w = _setup(rec.url, event_types=["user.updated"])
        h = idem()
        r = c.post(f"/v1/partners/{f.partner}/webhooks/{w['id']}/rotate-secret", headers=h,
                   json={})
        assert r.status_code == 200, r.text
        new = r.json()["secret"]
        assert new != w["secret"] and r.json()["secret_rotating_until"]
        # the same request again: the same secret, not a third one
        again = c.post(f"/v1/partners/{f.partner}/webhooks/{w['id']}/rotate-secret",
                       headers=h, json={})
        assert again.json()["secret"] == new
        _rename(f, c, "Rotated")
        rec.wait(lambda: len(rec.got) >= 1, "a delivery")
        hd, body = rec.got[0]
        sigs = hd["webhook-signature"].split(" ")
        want = {_sig(new, hd["webhook-id"], hd["webhook-timestamp"], body),
                _sig(w["secret"], hd["webhook-id"], hd["webhook-timestamp"], body)}
        assert set(sigs) == want and len(sigs) == 2
        # after the 24 h: only the new one
        db_val("UPDATE webhooks SET old_until = now() - interval '1 second' WHERE id = %s "
               "RETURNING 1", w["id"])
        _rename(f, c, "Later")
        rec.wait(lambda: len(rec.got) >= 2, "a second delivery")
        hd, body = rec.got[1]
        assert hd["webhook-signature"] == _sig(new, hd["webhook-id"], hd["webhook-timestamp"],
                                               body)
    finally:
        rec.close()


def test_ping_and_filters_and_redirects():
    rec = Receiver(plan=lambda n: 302)
    try:
        f, c, w = _setup(rec.url, event_types=["purchase.created"])
        _rename(f, c, "Not wanted")  # user.updated: not for this webhook
        r = c.post(f"/v1/partners/{f.partner}/webhooks/{w['id']}/ping", headers=idem(), json={})
        assert r.status_code == 202 and r.json()["event_type"] == "webhook.ping", r.text
        rec.wait(lambda: len(rec.got) >= 1, "the ping")
        h, body = rec.got[0]
        assert json.loads(body)["type"] == "webhook.ping"
        assert h["webhook-signature"] == _sig(w["secret"], h["webhook-id"],
                                              h["webhook-timestamp"], body)
        rec.wait(lambda: (db_val("SELECT last_error FROM webhook_deliveries WHERE id = %s",
                                 r.json()["id"]) or "").find("redirect") >= 0,
                 "the redirect recorded as a failure")
        assert db_val("SELECT count(*) FROM webhook_deliveries WHERE webhook_id = %s",
                      w["id"]) == 1
    finally:
        rec.close()


def test_a_slow_receiver_does_not_hold_up_the_others():
    slow, fast = Receiver(delay=8), Receiver()
    try:
        f, c, w1 = _setup(slow.url, event_types=["user.updated"])
        r = c.post(f"/v1/partners/{f.partner}/webhooks", headers=idem(),
                   json={"url": fast.url, "event_types": ["user.updated"]})
        assert r.status_code == 201
        for k in range(3):
            _rename(f, c, f"Busy {k}")
        fast.wait(lambda: len(fast.got) == 3, "the fast receiver's three deliveries", limit=30)
        # the slow receiver has not answered any yet: the fast one did not wait for it
        assert db_val("SELECT count(*) FROM webhook_deliveries WHERE webhook_id = %s "
                      "AND status = 'succeeded'", w1["id"]) == 0
    finally:
        slow.close()
        fast.close()


def _burst(f, n: int) -> None:
    """n events of the partner at once (the outbox function, as a route would call it)."""
    db_val("SELECT count(emit_event(%s::uuid, 'user.updated', 'user', %s, 'burst')) "
           "FROM generate_series(1, %s)", f.partner, f.users["employee"], n)


def test_three_processes_200_events_each_delivered_once():
    rec = Receiver()
    try:
        f, c, w = _setup(rec.url, event_types=["user.updated"])
        with spawn_server() as s2, spawn_server() as s3:
            _burst(f, 200)
            rec.wait(lambda: len(set(rec.ids())) >= 200, "200 deliveries", limit=120)
            rec.wait(lambda: db_val("SELECT count(*) FROM webhook_deliveries WHERE webhook_id = "
                                    "%s AND status = 'succeeded'", w["id"]) == 200, "recorded")
        dup = sum(n - 1 for n in Counter(rec.ids()).values())
        print(f"3 processes, 200 events: {len(rec.ids())} requests, {dup} duplicates")
        assert len(set(rec.ids())) == 200
        assert dup == 0
    finally:
        rec.close()


def test_sigkill_during_deliveries_loses_nothing():
    rec = Receiver(delay=0.3)
    try:
        f, c, w = _setup(rec.url, event_types=["user.updated"])
        s2 = spawn_server()
        _burst(f, 120)
        rec.wait(lambda: len(rec.got) >= 20, "deliveries under way")
        s2.proc.send_signal(signal.SIGKILL)
        s2.proc.wait()
        rec.wait(lambda: len(set(rec.ids())) >= 120, "every event delivered", limit=120)
        rec.wait(lambda: db_val("SELECT count(*) FROM webhook_deliveries WHERE webhook_id = %s "
                                "AND status = 'succeeded'", w["id"]) == 120, "recorded")
        dup = sum(n - 1 for n in Counter(rec.ids()).values())
        print(f"SIGKILL during 120 deliveries: {len(rec.ids())} requests, {dup} duplicates "
              "(at least once: a killed process's answered claims are sent again)")
        assert len(set(rec.ids())) == 120
    finally:
        rec.close()


def test_the_address_connected_to_is_checked_on_every_attempt():
    """A name (not a literal address) passes the URL check and resolves to loopback: a process
    without WEBHOOK_ALLOW_PRIVATE refuses to connect and records why. The test service (which
    allows private addresses for the other tests) shares the queue, so two such processes run
    to take most attempts; the refusal must show in the delivery at least once over its 8
    attempts (both kinds of process fail this receiver, which always answers 500)."""
    rec = Receiver(plan=lambda n: 500)
    try:
        f = fresh_partner()
        port = rec.url.split(":")[2].split("/")[0]
        wid = db_val("INSERT INTO webhooks (partner_id, url, event_types, secret_enc) VALUES "
                     "(%s, %s, '{user.updated}', pgp_sym_encrypt('whsec_' || "
                     "encode(gen_random_bytes(32), 'base64'), %s)) RETURNING id::text",
                     f.partner, f"http://localhost:{port}/x", os.environ["KEY_ENCRYPTION_KEY"])
        strict = {"WEBHOOK_ALLOW_PRIVATE": "0"}
        with spawn_server(env_overrides=strict), spawn_server(env_overrides=strict):
            _burst(f, 1)
            seen = set()
            end = time.time() + 90
            while time.time() < end:
                seen.add(db_val("SELECT last_error FROM webhook_deliveries WHERE webhook_id = %s",
                                wid))
                if db_val("SELECT status FROM webhook_deliveries WHERE webhook_id = %s",
                          wid) == "failed":
                    break
                time.sleep(0.05)
        assert "the address is loopback, private or link-local" in seen, seen
    finally:
        rec.close()


def test_a_huge_answer_is_not_read_to_its_end():
    """A receiver that answers 200 with 20 MB: the delivery succeeds, the service reads at
    most 64 KB of it."""
    rec = Receiver()
    big = b"x" * (20 * 1024 * 1024)

    class Big(rec.srv.RequestHandlerClass):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with rec.lock:
                rec.got.append(({k.lower(): v for k, v in self.headers.items()}, b""))
            self.send_response(200)
            self.send_header("Content-Length", str(len(big)))
            self.end_headers()
            try:
                self.wfile.write(big)
            except OSError:
                pass  # the service hung up early: what we want

    rec.srv.RequestHandlerClass = Big
    try:
        f, c, w = _setup(rec.url, event_types=["user.updated"])
        _rename(f, c, "Big answer")
        rec.wait(lambda: db_val("SELECT status FROM webhook_deliveries WHERE webhook_id = %s",
                                w["id"]) == "succeeded", "success")
        assert len(rec.ids()) == 1
    finally:
        rec.close()


def test_the_worker_command_runs_the_delivery_alone_and_stops_cleanly():
    """`mpn-benefits worker` (no HTTP): with WEBHOOK_ALLOW_PRIVATE=0 its attempts at a loopback
    receiver are refused, which shows it is the one at work; SIGTERM stops it with exit 0."""
    import subprocess
    rec = Receiver(plan=lambda n: 500)
    log_path = os.path.join(os.environ["MB_LOG_DIR"], f"service-worker-{os.getpid()}.log")
    env = dict(os.environ, WEBHOOK_ALLOW_PRIVATE="0")
    procs = []
    with open(log_path, "ab") as logf:
        # two of them, so that the test service's own worker takes few of the attempts
        for _ in range(2):
            procs.append(subprocess.Popen([os.environ["MB_BIN"], "worker"], env=env, stdout=logf,
                                          stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                          start_new_session=True))
    try:
        f = fresh_partner()
        port = rec.url.split(":")[2].split("/")[0]
        wid = db_val("INSERT INTO webhooks (partner_id, url, event_types, secret_enc) VALUES "
                     "(%s, %s, '{user.updated}', pgp_sym_encrypt('whsec_' || "
                     "encode(gen_random_bytes(32), 'base64'), %s)) RETURNING id::text",
                     f.partner, f"http://localhost:{port}/x", os.environ["KEY_ENCRYPTION_KEY"])
        _burst(f, 1)
        seen = set()
        end = time.time() + 90
        while time.time() < end and "the address is loopback, private or link-local" not in seen:
            seen.add(db_val("SELECT last_error FROM webhook_deliveries WHERE webhook_id = %s",
                            wid))
            if db_val("SELECT status FROM webhook_deliveries WHERE webhook_id = %s",
                      wid) == "failed":
                break
            time.sleep(0.05)
        assert "the address is loopback, private or link-local" in seen, seen
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        rcs = [p.wait(30) for p in procs]
        rec.close()
    assert rcs == [0, 0]
    with open(log_path, encoding="utf-8", errors="replace") as fh:
        text = fh.read()
    assert "AddressSanitizer" not in text and "runtime error" not in text, text[-2000:]
