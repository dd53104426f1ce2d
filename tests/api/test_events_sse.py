"""Issue 12, point 3: Server-Sent Events on GET /v1/partners/{partnerId}/events with
`Accept: text/event-stream` (DESIGN §4b). Against the service directly (Prism does not stream).

What is checked: an event committed after connecting arrives (before any keep-alive comment, so
it was pushed, not found by a later look); a reconnect with Last-Event-ID (or `after`) gets
exactly the missed events; a types filter; 200 idle clients hold no pool connection (a server
with a pool of 2 still answers the list while they wait) and are counted in /metrics; SIGTERM
ends the streams and the server exits 0."""
from __future__ import annotations

import http.client
import re
import socket
import threading
import time
import urllib.parse

import pytest

from fresh_partner import fresh_partner
from helpers import DIRECT, Client, db_val, spawn_server, token


class Stream:
    """One SSE connection, read line by line (http.client undoes the chunking)."""

    def __init__(self, base: str, partner: str, tok: str, headers: dict | None = None,
                 params: str = "", timeout: float = 20):
        u = urllib.parse.urlparse(base)
        self.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
        h = {"Authorization": f"Bearer {tok}", "Accept": "text/event-stream"}
        h.update(headers or {})
        self.conn.request("GET", f"/v1/partners/{partner}/events{params}", headers=h)
        self.resp = self.conn.getresponse()
        self.comments: list[str] = []

    @property
    def status(self) -> int:
        return self.resp.status

    def next_event(self) -> dict | None:
        """The next event (id, event, data); None at the end of the stream. Comments seen on the
        way are kept in .comments."""
        ev: dict = {}
        while True:
            line = self.resp.readline()
            if not line:
                return None
            line = line.decode().rstrip("\n")
            if line == "":
                if "data" in ev:
                    return ev
                ev = {}
                continue
            if line.startswith(":"):
                self.comments.append(line)
                continue
            k, _, v = line.partition(": ")
            if k in ("id", "event", "data"):
                ev[k] = v

    def close(self) -> None:
        self.conn.close()


def _ga(f) -> str:
    return token(f.users["global_admin"], f.partner, ["global_admin"])


def _rename(f, name: str) -> None:
    c = Client(DIRECT, _ga(f))
    r = c.patch(f"/v1/partners/{f.partner}/users/{f.users['employee']}",
                json={"display_name": name})
    assert r.status_code == 200, r.text
    c.close()


def _last_id(f) -> str:
    return f"{db_val('SELECT COALESCE(max(seq), 0) FROM events WHERE partner_id = %s', f.partner):012d}"


def test_an_event_committed_after_connecting_is_pushed():
    f = fresh_partner()
    s = Stream(DIRECT, f.partner, _ga(f), params=f"?after={_last_id(f)}")
    assert s.status == 200
    assert s.resp.getheader("Content-Type").startswith("text/event-stream")
    threading.Timer(0.5, _rename, (f, "Pushed")).start()
    ev = s.next_event()
    assert ev is not None and ev["event"] == "user.updated"
    assert '"display_name": "Pushed"' in ev["data"] or '"display_name":"Pushed"' in ev["data"]
    # pushed at once: no keep-alive comment (every 15 s) came before it
    assert s.comments == [": events"], s.comments
    s.close()


def _notified(listen, partner: str, wait: float = 1.0) -> bool:
    """Whether a NOTIFY of one of partner's events reached listen within wait seconds."""
    import select
    end = time.time() + wait
    while time.time() < end:
        if select.select([listen], [], [], max(0.0, end - time.time())) == ([], [], []):
            continue
        listen.poll()
        while listen.notifies:
            if listen.notifies.pop(0).payload.startswith(partner + ":"):
                return True
    return False


def test_writes_notify_only_a_partner_with_a_stream_open():
    """sql/021: the NOTIFY at commit (a wakeup of every listening backend, per write) only while
    a stream of the partner is open. The stream marks its partner before its first look; the
    event written after it is pushed."""
    from helpers import db_connect
    f = fresh_partner()
    listen = db_connect()
    listen.autocommit = True
    listen.cursor().execute("LISTEN mb_events")
    try:
        _rename(f, "Unheard")
        assert not _notified(listen, f.partner)
        assert db_val("SELECT streamed_until FROM event_counters WHERE partner_id = %s",
                      f.partner) is None
        s = Stream(DIRECT, f.partner, _ga(f), params=f"?after={_last_id(f)}")
        assert s.status == 200
        assert db_val("SELECT streamed_until > now() FROM event_counters WHERE partner_id = %s",
                      f.partner) is True
        _rename(f, "Heard")
        assert _notified(listen, f.partner, 5.0)
        ev = s.next_event()
        assert ev is not None and ev["event"] == "user.updated" and "Heard" in ev["data"]
        s.close()
    finally:
        listen.close()


def test_reconnect_with_last_event_id_gets_exactly_the_missed_events():
    f = fresh_partner()
    start = _last_id(f)
    s = Stream(DIRECT, f.partner, _ga(f), params=f"?after={start}")
    _rename(f, "One")
    _rename(f, "Two")
    first = [s.next_event(), s.next_event()]
    s.close()
    assert [e["event"] for e in first] == ["user.updated"] * 2
    missed = []
    for k in range(3):
        _rename(f, f"Missed {k}")
    # Last-Event-ID wins over after (a browser keeps the URL it first opened)
    s = Stream(DIRECT, f.partner, _ga(f), headers={"Last-Event-ID": first[-1]["id"]},
               params=f"?after={start}")
    for _ in range(3):
        missed.append(s.next_event())
    _rename(f, "Live")
    live = s.next_event()
    s.close()
    ids = [int(e["id"]) for e in first + missed + [live]]
    assert ids == list(range(int(start) + 1, int(start) + 7)), ids
    assert ['Missed 0' in missed[0]["data"], 'Missed 2' in missed[2]["data"]] == [True, True]
    assert "Live" in live["data"]


def test_stream_types_filter_skips_other_events():
    f = fresh_partner()
    s = Stream(DIRECT, f.partner, _ga(f),
               params=f"?after={_last_id(f)}&types=marketing_contact.updated")
    _rename(f, "Filtered out")
    c = Client(DIRECT, _ga(f))
    r = c.put(f"/v1/partners/{f.partner}/marketing-contact",
              json={"user_id": f.users["mpn_partner_admin"], "email": f"m-{f.partner[:8]}@x.example",
                    "phone": "+14255550123", "preferred_language": "en-US"})
    assert r.status_code == 200, r.text
    ev = s.next_event()
    assert ev["event"] == "marketing_contact.updated"
    s.close()
    c.close()


def test_stream_refuses_what_the_page_refuses():
    f = fresh_partner()
    aa = token(f.users["admin_agent"], f.partner, ["admin_agent"])
    s = Stream(DIRECT, f.partner, aa)
    assert s.status == 403
    s.close()
    s = Stream(DIRECT, f.partner, _ga(f), headers={"Last-Event-ID": "x1"})
    assert s.status == 422
    s.close()


def _open_raw(port: int, partner: str, tok: str) -> socket.socket:
    sk = socket.create_connection(("127.0.0.1", port), timeout=30)
    sk.sendall((f"GET /v1/partners/{partner}/events HTTP/1.1\r\nHost: x\r\n"
                f"Authorization: Bearer {tok}\r\nAccept: text/event-stream\r\n\r\n").encode())
    return sk


def _read_until(sk: socket.socket, marker: bytes) -> bytes:
    buf = b""
    while marker not in buf:
        chunk = sk.recv(65536)
        if not chunk:
            break
        buf += chunk
    return buf


def _metric(c: Client, name: str) -> float:
    text = c.get("/metrics").text
    m = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(m.group(1)) if m else -1


def test_200_idle_clients_hold_no_pool_connection_and_sigterm_ends_them():
    f = fresh_partner()
    tok = _ga(f)
    srv = spawn_server(env_overrides={"DB_POOL_SIZE": "2"})
    socks = []
    try:
        for _ in range(200):
            socks.append(_open_raw(srv.port, f.partner, tok))
        for sk in socks:
            head = _read_until(sk, b"retry: 2000")
            assert b" 200 " in head.split(b"\r\n", 1)[0], head[:200]
        c = srv.client(tok)
        assert _metric(c, "mpn_sse_clients") == 200
        # each client's first look for events (a pool connection each, in turn) is over once
        # the pool is idle; from then on they all wait holding none
        idle = False
        for _ in range(300):
            idle = _metric(c, "mpn_db_pool_in_use") == 0
            if idle:
                break
            time.sleep(0.1)
        assert idle, "the pool never became idle while 200 clients waited"
        # the pool of 2 still serves reads while 200 clients wait
        for _ in range(5):
            r = c.get(f"/v1/partners/{f.partner}/events", params={"limit": 1})
            assert r.status_code == 200, r.text
        # and a change reaches every one of them
        _rename(f, "Everyone")
        for sk in socks:
            data = _read_until(sk, b"Everyone")
            assert b"event: user.updated" in data
        c.close()
    finally:
        # SIGTERM: every stream ends (the chunked answer's last chunk) and the server exits 0
        srv.proc.send_signal(15)
        ended = 0
        for sk in socks:
            sk.settimeout(30)
            data = _read_until(sk, b"0\r\n\r\n")
            ended += data.endswith(b"0\r\n\r\n")
            sk.close()
        srv.stop()
    assert ended == 200
