"""Issue 16: LOG_FORMAT=json (one JSON object a line) and the W3C trace context, accepted from
the caller and answered, and in the access log."""
import json
import re

import requests

from helpers import spawn_server

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = f"00-{TRACE}-00f067aa0ba902b7-01"
TP = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def test_json_logs_are_one_object_a_line_with_request_and_trace_ids():
    with spawn_server(env_overrides={"LOG_FORMAT": "json"}) as srv:
        r = requests.get(srv.url + "/healthz", headers={"traceparent": PARENT,
                                                        "X-Request-Id": "log-probe-1"}, timeout=5)
        assert r.status_code == 200
        m = TP.match(r.headers["traceparent"])
        assert m and m.group(1) == TRACE and m.group(2) != "00f067aa0ba902b7" and m.group(3) == "01"
        requests.get(srv.url + "/v1/no-such-thing", timeout=5)
        requests.get(srv.url + "/v1/me", headers={"X-Request-Id": "log-probe-2"}, timeout=5)
    lines = [ln for ln in srv.log().splitlines() if ln.strip()]
    docs = [json.loads(ln) for ln in lines]  # every line is one JSON object
    assert any(d.get("msg") == "starting" or "listening" in d.get("msg", "") for d in docs)
    access = [d for d in docs if d.get("request_id") == "log-probe-1"]
    assert len(access) == 1, docs
    a = access[0]
    assert a["trace_id"] == TRACE and a["status"] == 200 and a["route"] == "/healthz"
    assert a["method"] == "GET" and a["level"] == "info" and isinstance(a["ms"], float)
    assert "code" not in a  # only problems carry one
    # a problem's code is in its line (scripts/contract_codes.py checks them against the contract)
    p = [d for d in docs if d.get("request_id") == "log-probe-2"]
    assert len(p) == 1 and p[0]["status"] == 401 and p[0]["code"] == "unauthenticated", p
    assert p[0]["route"] == "/v1/me"


def test_a_request_without_a_valid_traceparent_starts_a_trace():
    with spawn_server() as srv:
        seen = set()
        for bad in (None, "garbage", f"00-{'0' * 32}-00f067aa0ba902b7-01",
                    f"ff-{TRACE}-00f067aa0ba902b7-01", f"00-{TRACE.upper()}-00f067aa0ba902b7-01",
                    f"00-{TRACE}-00f067aa0ba902b7-01-extra"):
            h = {"traceparent": bad} if bad else {}
            r = requests.get(srv.url + "/healthz", headers=h, timeout=5)
            m = TP.match(r.headers["traceparent"])
            assert m and m.group(1) != TRACE and m.group(1) != "0" * 32, (bad, r.headers)
            seen.add(m.group(1))
        assert len(seen) == 6  # a new trace each time
        # a later version with more fields is understood as version 00 (W3C forward compat.)
        r = requests.get(srv.url + "/healthz", timeout=5,
                         headers={"traceparent": f"01-{TRACE}-00f067aa0ba902b7-01-more"})
        assert TP.match(r.headers["traceparent"]).group(1) == TRACE


def test_an_unknown_log_format_is_refused():
    srv = spawn_server(env_overrides={"LOG_FORMAT": "xml"}, wait=False)
    assert srv.proc.wait(30) == 2
    assert "LOG_FORMAT must be text or json" in srv.log()
