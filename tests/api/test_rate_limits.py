"""Rate limits (issue 15): a token bucket per token subject and one per partner in each
process; a request over either answers 429 `rate-limited` with Retry-After, and every answer
of an authenticated call carries RateLimit-Policy and RateLimit
(draft-ietf-httpapi-ratelimit-headers-09 syntax). The shared server runs with the defaults
(never reached by the suite); these tests start servers of their own with small limits."""
import os
import re
import time

import pytest
import yaml

from fresh_partner import fresh_partner
from helpers import CONTOSO, GA_ID, assert_problem, operator_token, spawn_server, token

ITEM = re.compile(r'"(\w+)";(\w+)=(\d+);(\w+)=(\d+)')


def fields(value: str) -> dict:
    """'"subject";r=2;t=5, "partner";r=4;t=3' -> {"subject": {"r": 2, "t": 5}, ...}"""
    out = {}
    for item in value.split(","):
        m = ITEM.fullmatch(item.strip())
        assert m, f"not a draft-09 list item: {item!r} in {value!r}"
        out[m[1]] = {m[2]: int(m[3]), m[4]: int(m[5])}
    return out


def limits(r):
    return fields(r.headers["RateLimit-Policy"]), fields(r.headers["RateLimit"])


@pytest.fixture(scope="module")
def two_partners():
    return fresh_partner(), fresh_partner()


def test_headers_on_every_authenticated_answer_of_the_shared_server(ga):
    r = ga.direct.get("/v1/me")
    assert r.status_code == 200
    policy, state = limits(r)
    # the defaults (README): high enough for the suite and the bench
    assert policy == {"subject": {"q": 10000, "w": 60}, "partner": {"q": 30000, "w": 60}}
    assert 0 < state["subject"]["r"] < 10000 and state["partner"]["r"] < 30000
    # an error answer of an authenticated call carries them too
    r = ga.direct.get(f"/v1/partners/{CONTOSO}/benefits/00000000-0000-4000-8000-000000000000")
    assert_problem(r, 404, "not-found")
    assert "RateLimit" in r.headers and "RateLimit-Policy" in r.headers
    # public probes and refused tokens are not counted by these buckets
    assert "RateLimit" not in ga.direct.get("/healthz").headers
    r = ga.direct.anon().get("/v1/me")
    assert_problem(r, 401, "unauthenticated")
    assert "RateLimit" not in r.headers
    # operators have no partner: only their subject's bucket
    r = ga.direct.with_token(operator_token()).get("/v1/admin/partners")
    assert r.status_code == 200
    assert set(limits(r)[0]) == {"subject"}


def test_burst_over_the_limits_gets_429_and_others_are_unaffected(two_partners):
    p, q = two_partners
    # long window: nothing refills during the test (subject 3 per 600 s: a token each 200 s)
    env = {"RATE_LIMIT_PER_SUBJECT": 3, "RATE_LIMIT_PER_PARTNER": 5,
           "RATE_LIMIT_WINDOW_SECONDS": 600}
    with spawn_server(env_overrides=env) as s:
        a = s.client(token(p.users["global_admin"], p.partner, ["global_admin"]))
        seen = []
        for _ in range(3):
            r = a.get("/v1/me")
            assert r.status_code == 200, r.text
            policy, state = limits(r)
            assert policy == {"subject": {"q": 3, "w": 600}, "partner": {"q": 5, "w": 600}}
            seen.append(state["subject"]["r"])
        assert seen == [2, 1, 0]
        r = a.get("/v1/me")
        body = assert_problem(r, 429, "rate-limited")
        assert "subject" in body["detail"]
        policy, state = limits(r)
        assert state["subject"]["r"] == 0
        # one token comes back after 200 s minus what has refilled since the first request
        assert 190 <= int(r.headers["Retry-After"]) <= 200
        assert state["partner"]["r"] == 2  # the refused request took nothing from the partner
        # another subject of the same partner: its own bucket, the partner's 2 left
        b = s.client(token(p.users["user_admin"], p.partner, ["user_admin"]))
        for left in (1, 0):
            r = b.get("/v1/me")
            assert r.status_code == 200, r.text
            policy, state = limits(r)
            assert state["partner"]["r"] == left and state["subject"]["r"] == 2 - (1 - left)
        r = b.get("/v1/me")
        body = assert_problem(r, 429, "rate-limited")
        assert "partner" in body["detail"]
        # the partner's bucket: a token each 120 s
        assert 110 <= int(r.headers["Retry-After"]) <= 120
        policy, state = limits(r)
        assert state["partner"]["r"] == 0 and state["subject"]["r"] == 1  # given back
        # a 429 for every operation, writes too, before the handler runs
        r = b.post(f"/v1/partners/{p.partner}/users", json={})
        assert_problem(r, 429, "rate-limited")
        # another partner is unaffected
        c = s.client(token(q.users["global_admin"], q.partner, ["global_admin"]))
        r = c.get("/v1/me")
        assert r.status_code == 200
        assert limits(r)[1] == {"subject": {"r": 2, "t": 200}, "partner": {"r": 4, "t": 120}}
        # so are operators (no partner bucket)
        r = s.client(operator_token()).get("/v1/admin/partners")
        assert r.status_code == 200


def test_bucket_refills_and_zero_turns_a_limit_off(two_partners):
    p, _ = two_partners
    env = {"RATE_LIMIT_PER_SUBJECT": 2, "RATE_LIMIT_PER_PARTNER": 0,
           "RATE_LIMIT_WINDOW_SECONDS": 2}
    with spawn_server(env_overrides=env) as s:
        a = s.client(token(p.users["global_admin"], p.partner, ["global_admin"]))
        # a token a second: a quick burst finds the bucket empty within a few requests
        for _ in range(8):
            r = a.get("/v1/me")
            if r.status_code == 429:
                break
        assert_problem(r, 429, "rate-limited")
        policy, state = limits(r)
        assert policy == {"subject": {"q": 2, "w": 2}}  # the partner's limit is off
        wait = int(r.headers["Retry-After"])
        assert wait == 1  # one token a second
        time.sleep(wait + 0.05)
        r = a.get("/v1/me")
        assert r.status_code == 200, r.text
        # full again after the window
        time.sleep(2.1)
        r = a.get("/v1/me")
        assert limits(r)[1] == {"subject": {"r": 1, "t": 1}}
    # both off: no fields at all
    env = {"RATE_LIMIT_PER_SUBJECT": 0, "RATE_LIMIT_PER_PARTNER": 0}
    with spawn_server(env_overrides=env) as s:
        r = s.client(token(GA_ID, CONTOSO, ["global_admin"])).get("/v1/me")
        assert r.status_code == 200
        assert "RateLimit" not in r.headers and "RateLimit-Policy" not in r.headers


def test_the_contract_declares_429_and_the_fields_on_every_operation():
    """Every operation can answer 429 (the service's buckets, or nginx's limit per address),
    with the shared TooManyRequests response; every success of an authenticated operation
    declares RateLimit and RateLimit-Policy, so a new operation cannot forget them."""
    spec_path = os.path.join(os.path.dirname(__file__), "..", "..", "api", "openapi.yaml")
    with open(spec_path) as f:
        spec = yaml.safe_load(f)
    too_many = spec["components"]["responses"]["TooManyRequests"]
    assert set(too_many["headers"]) >= {"Retry-After", "RateLimit", "RateLimit-Policy"}
    assert "rate-limited" in spec["components"]["schemas"]["ProblemCode"]["enum"]
    assert "cors-origin-refused" in spec["components"]["schemas"]["ProblemCode"]["enum"]
    missing = []
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            if op["responses"].get("429") != {"$ref": "#/components/responses/TooManyRequests"}:
                missing.append(f"{method} {path}: no 429")
            if op.get("security") == []:
                continue
            for code, r in op["responses"].items():
                if code.startswith("2") and "$ref" not in r and \
                        not {"RateLimit", "RateLimit-Policy"} <= set(r.get("headers", {})):
                    missing.append(f"{method} {path} {code}: no RateLimit fields")
    assert not missing, missing
