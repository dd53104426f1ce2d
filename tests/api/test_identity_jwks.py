"""Tokens from a real identity provider (issue 11, DESIGN §4b): the service fetches the JWKS of
JWT_JWKS_URL from a local JWKS server (plain Python http.server serving a file that the tests
rewrite to rotate keys), with an RSA and an EC key; several algorithms (JWT_ALG=RS256,ES256),
a multi-tenant issuer (JWT_ISSUER with {tid}, OPERATOR_TENANT_ID), bounded lifetimes
(JWT_MAX_TTL_SECONDS), rotation without restart, single-flight refetch, a provider that goes
away, hostile JWKS documents, readiness. Every JWKS-mode service here is a process of its own
(helpers.spawn_server) and must exit 0 without a sanitizer report; the HS256 service of the
suite is untouched. The token attacks of test_token_attacks.py run once more in JWKS mode."""
from __future__ import annotations

import http.server
import json
import os
import re
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import jwt as pyjwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from helpers import CONTOSO, GA_ID, OPERATOR_SUB, assert_problem, env, free_port, spawn_server
from test_token_attacks import TIME_ATTACKS, Keys, Trap, _pointers, b64, hs256

ME = "/v1/me"
TENANT_ISS = "https://login.idp.example/{tid}/v2.0"
OP_TENANT = "99999999-9999-4999-8999-999999999999"  # the operator's tenant: no partner


# --- the identity provider's side -------------------------------------------------------------

class RsaKey:
    def __init__(self, kid: str, bits: int = 2048):
        self.kid = kid
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
        self.private = self.key.private_bytes(serialization.Encoding.PEM,
                                              serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption())
        self.public_pem = self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        self.jwk = dict(json.loads(pyjwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key())),
                        kid=kid, use="sig", alg="RS256")
        self.alg = "RS256"


class EcKey:
    def __init__(self, kid: str):
        self.kid = kid
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.private = self.key.private_bytes(serialization.Encoding.PEM,
                                              serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption())
        self.jwk = dict(json.loads(pyjwt.algorithms.ECAlgorithm.to_jwk(self.key.public_key())),
                        kid=kid, use="sig")
        self.alg = "ES256"


class JwksServer:
    """Serves the file `path` at /jwks.json (rewrite it to rotate keys) and counts the GETs.
    stop() closes the port (the provider is down); start() opens it again on the same port."""

    def __init__(self, max_age: int | None = None):
        fd, self.path = tempfile.mkstemp(suffix=".json")
        os.close(fd)
        self.max_age = max_age
        self.fetches = 0
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/jwks.json"
        self.httpd = None
        self.start()

    def write(self, doc) -> None:
        data = doc if isinstance(doc, (bytes, str)) else json.dumps(doc)
        with open(self.path, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)

    def set_keys(self, *keys) -> None:
        self.write({"keys": [k.jwk for k in keys]})

    def start(self) -> None:
        srv = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                srv.fetches += 1
                with open(srv.path, "rb") as f:
                    body = f.read()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                if srv.max_age is not None:
                    self.send_header("Cache-Control", f"public, max-age={srv.max_age}")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        http.server.ThreadingHTTPServer.allow_reuse_address = True
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), H)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None

    def close(self) -> None:
        self.stop()
        os.unlink(self.path)


def claims(tid: str | None = CONTOSO, roles=("global_admin",), sub: str = GA_ID, **over) -> dict:
    now = int(time.time())
    c = {"sub": sub, "roles": list(roles), "aud": env("JWT_AUDIENCE"), "iat": now, "nbf": now,
         "exp": now + 600}
    if tid is not None:
        c["tid"] = tid
        c["iss"] = TENANT_ISS.replace("{tid}", tid)
    for k, v in over.items():
        if v is None:
            c.pop(k, None)
        else:
            c[k] = v
    return c


def sign(key, alg: str | None = None, kid: str | None = "", **over) -> str:
    """A token signed by key (RsaKey/EcKey) with kid = key.kid unless given (None: no kid)."""
    headers = {}
    if kid == "":
        kid = key.kid
    if kid is not None:
        headers["kid"] = kid
    return pyjwt.encode(claims(**over), key.private, algorithm=alg or key.alg, headers=headers)


def get(server, tok: str, path: str = ME) -> requests.Response:
    return requests.get(server.url + path, headers={"Authorization": f"Bearer {tok}"}, timeout=30)


def assert_401(r: requests.Response, why: str | None = None) -> None:
    body = assert_problem(r, 401, "unauthenticated")
    assert r.headers.get("WWW-Authenticate") == "Bearer"
    if why is not None:
        assert why in body["detail"], body


def metric(server, name: str) -> float:
    text = requests.get(server.url + "/metrics", timeout=10).text
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    assert m, f"{name} not in /metrics"
    return float(m.group(1))


def poll(fn, timeout: float = 20.0, step: float = 0.1):
    """fn() until it returns a true value (returned), or the last value after timeout."""
    end = time.monotonic() + timeout
    while True:
        v = fn()
        if v or time.monotonic() > end:
            return v
        time.sleep(step)


def jwks_service(jwks: JwksServer, issuer: str = TENANT_ISS, **extra):
    over = {"JWT_JWKS_URL": jwks.url, "JWT_ALG": "RS256,ES256", "JWT_SECRET": None,
            "JWT_ISSUER": issuer, "OPERATOR_TENANT_ID": OP_TENANT}
    over.update(extra)
    s = spawn_server(env_overrides=over)
    assert poll(lambda: requests.get(s.url + "/readyz", timeout=5).status_code == 200), \
        s.log()[-2000:]
    return s


@pytest.fixture(scope="module")
def rsa_key():
    return RsaKey("rsa-1")


@pytest.fixture(scope="module")
def ec_key():
    return EcKey("ec-1")


@pytest.fixture(scope="module")
def provider(rsa_key, ec_key):
    p = JwksServer()
    p.set_keys(rsa_key, ec_key)
    yield p
    p.close()


@pytest.fixture(scope="module")
def svc(provider):
    s = jwks_service(provider, JWKS_REFETCH_MIN_SECONDS=1)
    try:
        yield s
        s.stop()  # exit 0, no sanitizer report
    finally:
        s.kill()


# --- acceptance: algorithms, keys, claims ------------------------------------------------------

def test_rs256_and_es256_tokens_from_the_jwks_pass(svc, rsa_key, ec_key):
    for key in (rsa_key, ec_key):
        r = get(svc, sign(key))
        assert r.status_code == 200, r.text
        assert r.json()["user_id"] == GA_ID and r.json()["roles"] == ["global_admin"]
    assert metric(svc, "mpn_jwks_keys") == 2
    assert metric(svc, "mpn_jwks_provider_up") == 1


def _refusals(rsa_key: RsaKey, ec_key: EcKey, attacker: RsaKey) -> dict:
    now = int(time.time())
    good = sign(rsa_key)
    h, p, s = good.split(".")
    return {
        "missing_kid": (sign(rsa_key, kid=None), "names no signing key"),
        "unknown_kid": (sign(rsa_key, kid="nobody-knows-me"), "key (kid) is unknown"),
        "hs256_signed_with_the_rsa_public_key": (
            hs256({"alg": "HS256", "kid": rsa_key.kid}, claims(), rsa_key.public_pem),
            "algorithm (alg) is not accepted"),
        "alg_none": (f"{b64(json.dumps({'alg': 'none', 'kid': rsa_key.kid}).encode())}.{p}.",
                     "malformed"),  # no signature part
        "alg_none_with_signature": (
            f"{b64(json.dumps({'alg': 'none', 'kid': rsa_key.kid}).encode())}.{p}.{s}",
            "algorithm (alg) is not accepted"),
        "es256_token_naming_the_rsa_key": (sign(ec_key, kid=rsa_key.kid), "does not match"),
        "rs256_token_naming_the_ec_key": (sign(rsa_key, kid=ec_key.kid), "does not match"),
        "rs512_not_in_jwt_alg": (sign(rsa_key, alg="RS512"), "algorithm (alg) is not accepted"),
        "signed_by_another_key_with_our_kid": (sign(attacker, kid=rsa_key.kid),
                                               "signature is invalid"),
        "iss_of_another_tenant": (
            sign(rsa_key, iss=TENANT_ISS.replace("{tid}", "33333333-3333-4333-8333-333333333333")),
            "issuer"),
        "iss_of_the_operator_tenant_for_a_partner": (
            sign(rsa_key, iss=TENANT_ISS.replace("{tid}", OP_TENANT)), "issuer"),
        "exp_minus_iat_over_the_maximum": (sign(rsa_key, iat=now, nbf=now, exp=now + 86401),
                                           "lifetime"),
        "no_iat": (sign(rsa_key, iat=None), "no iat"),
        "expired": (sign(rsa_key, iat=now - 7200, nbf=now - 7200, exp=now - 3600), "expired"),
    }


REFUSALS = ["missing_kid", "unknown_kid", "hs256_signed_with_the_rsa_public_key", "alg_none",
            "alg_none_with_signature",
            "es256_token_naming_the_rsa_key", "rs256_token_naming_the_ec_key",
            "rs512_not_in_jwt_alg", "signed_by_another_key_with_our_kid", "iss_of_another_tenant",
            "iss_of_the_operator_tenant_for_a_partner", "exp_minus_iat_over_the_maximum", "no_iat",
            "expired"]


@pytest.fixture(scope="module")
def refusals(rsa_key, ec_key):
    return _refusals(rsa_key, ec_key, RsaKey("attacker"))


@pytest.mark.parametrize("name", REFUSALS)
def test_bad_tokens_are_refused_with_the_reason(svc, refusals, name):
    tok, why = refusals[name]
    assert_401(get(svc, tok), why)


def test_a_key_the_provider_adds_passes_on_the_first_request_naming_it(svc, provider, rsa_key,
                                                                       ec_key):
    """No periodic refresh here (no max-age: every 5 min): the unknown kid makes the fetch."""
    new = EcKey("ec-added")
    assert_401(get(svc, sign(new)), "unknown")
    provider.set_keys(rsa_key, ec_key, new)
    before = provider.fetches
    time.sleep(1.1)  # JWKS_REFETCH_MIN_SECONDS=1 since the refused request's fetch
    r = get(svc, sign(new, jti="first-use"))
    assert r.status_code == 200, r.text
    assert provider.fetches == before + 1
    provider.set_keys(rsa_key, ec_key)


def test_a_lifetime_of_exactly_the_maximum_passes(svc, rsa_key):
    now = int(time.time())
    assert get(svc, sign(rsa_key, iat=now, nbf=now, exp=now + 86400)).status_code == 200


def test_operator_tokens_carry_the_operator_tenant_or_no_tid(svc, rsa_key, ec_key):
    op_iss = TENANT_ISS.replace("{tid}", OP_TENANT)
    for tok in (sign(ec_key, tid=OP_TENANT, iss=op_iss, roles=["operator"], sub=OPERATOR_SUB),
                sign(rsa_key, tid=None, iss=op_iss, roles=["operator"], sub=OPERATOR_SUB)):
        r = get(svc, tok, "/v1/admin/partners")
        assert r.status_code == 200, r.text
        me = get(svc, tok).json()
        assert me["roles"] == ["operator"] and me.get("partner_id") is None, me
    # the operator role counts nowhere else: a partner token claiming it is no operator
    partner_op = sign(rsa_key, roles=["operator", "global_admin"])
    assert_problem(get(svc, partner_op, "/v1/admin/partners"), 403, "forbidden-role")
    # the operator tenant with a partner issuer, and no tid with a partner's issuer: refused
    assert_401(get(svc, sign(rsa_key, tid=OP_TENANT, roles=["operator"],
                             iss=TENANT_ISS.replace("{tid}", CONTOSO))), "issuer")
    assert_401(get(svc, sign(rsa_key, tid=None, roles=["operator"],
                             iss=TENANT_ISS.replace("{tid}", CONTOSO))), "issuer")


# --- the token attacks of test_token_attacks.py, in JWKS mode ----------------------------------

@pytest.fixture(scope="module")
def plain_svc(provider):
    """JWKS mode with the suite's plain issuer, so that the attack helpers' claims fit."""
    s = jwks_service(provider, issuer=env("JWT_ISSUER"), OPERATOR_TENANT_ID=None)
    try:
        yield s
        s.stop()
    finally:
        s.kill()


def _attack_claims(**over) -> dict:
    from test_token_attacks import claims as attack_claims
    return attack_claims(**over)


def test_token_attacks_in_jwks_mode(plain_svc, rsa_key):
    attacker = Keys()
    kid = rsa_key.kid

    def rs(private, alg="RS256", headers=None, **over):
        return pyjwt.encode(_attack_claims(**over), private, algorithm=alg,
                            headers=dict({"kid": kid}, **(headers or {})))

    valid = rs(rsa_key.private)
    assert get(plain_svc, valid).status_code == 200
    h, p, s = valid.split(".")
    hs_header = {"alg": "HS256", "typ": "JWT", "kid": kid}
    attacks = {
        "hs256_keyed_with_public_pem": hs256(hs_header, _attack_claims(), rsa_key.public_pem),
        "hs256_with_the_hs_secret": hs256(hs_header, _attack_claims()),
        "alg_none": f"{b64(json.dumps({'alg': 'none', 'kid': kid}).encode())}.{p}.",
        "alg_none_with_signature": f"{b64(json.dumps({'alg': 'none', 'kid': kid}).encode())}.{p}.{s}",
        "alg_None_capitalised": f"{b64(json.dumps({'alg': 'None', 'kid': kid}).encode())}.{p}.",
        "alg_missing": f"{b64(json.dumps({'kid': kid}).encode())}.{p}.{s}",
        "alg_header_swapped_to_hs256": f"{b64(json.dumps(hs_header).encode())}.{p}.{s}",
        "rs512_with_the_right_key": rs(rsa_key.private, "RS512"),
        "ps256_with_the_right_key": rs(rsa_key.private, "PS256"),
        "rs256_signed_by_another_key": rs(attacker.private),
        "rs256_tampered_payload":
            f"{h}.{b64(json.dumps(_attack_claims(roles=['operator'], tid=None)).encode())}.{s}",
        "rs256_expired": rs(rsa_key.private, exp=int(time.time()) - 3600),
        "crit": rs(rsa_key.private, headers={"crit": ["exp2"], "exp2": 1}),
        "kid_not_a_string": f"{b64(json.dumps({'alg': 'RS256', 'kid': 7}).encode())}.{p}.{s}",
        "kid_path_traversal": hs256({"alg": "HS256", "kid": "../../../../dev/null"},
                                    _attack_claims(), b""),
    }
    for name, over in TIME_ATTACKS.items():
        attacks[f"time_{name}"] = rs(rsa_key.private, **over)
    trap = Trap({"keys": [dict(attacker.jwk, kid="attacker", use="sig", alg="RS256")]})
    try:
        ptr = _pointers(trap, attacker)
        attacks["attacker_key_pointers"] = rs(attacker.private, headers=ptr)
        attacks["attacker_key_pointers_with_our_kid"] = rs(attacker.private,
                                                           headers=dict(ptr, kid=kid))
        failures = [n for n, tok in attacks.items() if get(plain_svc, tok).status_code != 401]
        # the pointers of a valid token are ignored: it passes, and nothing is fetched
        assert get(plain_svc, rs(rsa_key.private, headers=dict(ptr, kid=kid))).status_code == 200
        assert trap.hits == [], f"the service fetched {trap.hits}"
    finally:
        trap.close()
    assert not failures, f"accepted in JWKS mode: {failures}"
    assert requests.get(plain_svc.url + "/healthz", timeout=5).status_code == 200


# --- rotation, provider down, hostile documents ------------------------------------------------

@pytest.fixture
def rotating():
    """A provider of its own (max-age=1: the service refreshes every second) and a service."""
    a, b = RsaKey("rot-a"), EcKey("rot-b")
    p = JwksServer(max_age=1)
    p.set_keys(a, b)
    s = jwks_service(p, JWKS_REFETCH_MIN_SECONDS=1)
    try:
        yield p, s, a, b
        s.stop()
    finally:
        s.kill()
        p.close()


def test_rotation_without_restart(rotating):
    p, s, a, b = rotating
    tok_a = sign(a)
    assert get(s, tok_a).status_code == 200  # now in the verified-token cache too
    # a key the provider adds passes on the first request that names it
    c = RsaKey("rot-c")
    p.set_keys(a, b, c)
    r = get(s, sign(c))
    assert r.status_code == 200, r.text
    # a key the provider removes is refused after the next fetch; the others keep passing
    p.set_keys(b, c)
    assert poll(lambda: get(s, tok_a).status_code == 401), "removed key still accepted"
    assert_401(get(s, tok_a), "key (kid) is unknown")
    assert_401(get(s, sign(a, jti="new")), "key (kid) is unknown")
    assert get(s, sign(b)).status_code == 200 and get(s, sign(c)).status_code == 200


def test_provider_down_keeps_the_keys_and_says_so(rotating):
    p, s, a, b = rotating
    tok_a, tok_b = sign(a), sign(b)
    assert get(s, tok_a).status_code == 200
    p.stop()
    try:
        assert poll(lambda: metric(s, "mpn_jwks_provider_up") == 0), "provider still up?"
        assert metric(s, "mpn_jwks_fetches_total{result=\"error\"}") >= 1
        # fresh tokens (not in the verified-token cache) of the known keys still pass
        for key in (a, b):
            r = get(s, sign(key, jti="after-outage"))
            assert r.status_code == 200, r.text
        assert metric(s, "mpn_jwks_keys") == 2
        assert "provider unreachable" in s.log()
        assert requests.get(s.url + "/readyz", timeout=5).status_code == 200
    finally:
        p.start()
    assert poll(lambda: metric(s, "mpn_jwks_provider_up") == 1)


HOSTILE = {
    "not_json": b"<html>login</html>",
    "no_keys_array": {"keys": "nope"},
    "empty_keys": {"keys": []},
    "too_large": {"keys": [], "pad": "x" * (300 * 1024)},
    "only_bad_keys": {"keys": [{"kty": "oct", "kid": "sym", "k": "c2VjcmV0"},
                               {"kty": "RSA", "kid": "short", "n": "AQAB", "e": "AQAB"},
                               {"kty": "EC", "kid": "bad-crv", "crv": "P-192", "x": "AA", "y": "AA"},
                               "not an object", {"kid": 7}]},
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_jwks_documents_never_evict_good_keys(rotating, name):
    p, s, a, b = rotating
    ok_before = metric(s, "mpn_jwks_fetches_total{result=\"ok\"}")
    p.write(HOSTILE[name])
    # wait for two failed fetches of the hostile document
    err0 = metric(s, "mpn_jwks_fetches_total{result=\"error\"}")
    assert poll(lambda: metric(s, "mpn_jwks_fetches_total{result=\"error\"}") >= err0 + 2)
    assert metric(s, "mpn_jwks_fetches_total{result=\"ok\"}") == ok_before
    assert metric(s, "mpn_jwks_keys") == 2
    for key in (a, b):
        r = get(s, sign(key, jti=f"hostile-{name}"))
        assert r.status_code == 200, r.text
    assert requests.get(s.url + "/healthz", timeout=5).status_code == 200


def test_duplicate_kids_and_unsupported_keys_are_ignored_the_rest_kept(rotating):
    p, s, a, b = rotating
    twin1, twin2 = RsaKey("twin"), RsaKey("twin")
    c = RsaKey("rot-c")
    doc = {"keys": [a.jwk, twin1.jwk, twin2.jwk, {"kty": "oct", "kid": "sym", "k": "c2VjcmV0"},
                    dict(c.jwk, d="private-part"), dict(b.jwk, use="enc"), c.jwk]}
    p.write(doc)
    # kept: a and the clean c; left out: both twins (a kid naming two keys names neither), the
    # symmetric key, c's private copy and b as an encryption key
    assert poll(lambda: metric(s, "mpn_jwks_keys_ignored") == 5), s.log()[-2000:]
    assert metric(s, "mpn_jwks_keys") == 2
    assert get(s, sign(a)).status_code == 200 and get(s, sign(c)).status_code == 200
    for key in (twin1, twin2, b):
        assert_401(get(s, sign(key, jti="dup")))
    assert "duplicate" in s.log() and "unsupported kty" in s.log()


# --- single flight, readiness ------------------------------------------------------------------

def test_500_concurrent_unknown_kids_make_one_jwks_fetch(rsa_key, ec_key):
    p = JwksServer()
    p.set_keys(rsa_key, ec_key)
    s = jwks_service(p)  # default JWKS_REFETCH_MIN_SECONDS: 30
    try:
        before = p.fetches
        stranger = RsaKey("stranger")
        toks = [sign(stranger, jti=str(i)) for i in range(500)]
        with ThreadPoolExecutor(64) as pool:
            codes = list(pool.map(lambda t: get(s, t).status_code, toks))
        assert codes == [401] * 500
        print(f"\n500 concurrent requests with an unknown kid: {p.fetches - before} JWKS fetch(es)")
        assert p.fetches - before == 1
        # the key appears at the provider: within the 30 s no new fetch, so still refused
        p.set_keys(rsa_key, ec_key, stranger)
        assert_401(get(s, sign(stranger, jti="again")), "unknown")
        assert p.fetches - before == 1
        assert metric(s, "mpn_jwks_unknown_kid_total{fetched=\"yes\"}") == 1
        assert get(s, sign(rsa_key)).status_code == 200
        s.stop()
    finally:
        s.kill()
        p.close()


def test_readyz_is_503_until_a_key_was_fetched(rsa_key):
    p = JwksServer()
    p.set_keys(rsa_key)
    p.stop()  # the provider is not there yet
    s = spawn_server(env_overrides={"JWT_JWKS_URL": p.url, "JWT_ALG": "RS256", "JWT_SECRET": None,
                                    "JWT_ISSUER": TENANT_ISS})
    try:
        r = requests.get(s.url + "/readyz", timeout=10)
        assert_problem(r, 503, "unavailable")
        assert "signing key" in r.json()["detail"]
        assert requests.get(s.url + "/healthz", timeout=10).status_code == 200
        assert_401(get(s, sign(rsa_key)), "unknown")
        p.start()
        assert poll(lambda: requests.get(s.url + "/readyz", timeout=5).status_code == 200)
        assert get(s, sign(rsa_key)).status_code == 200
        s.stop()
    finally:
        s.kill()
        p.close()


def test_jwks_url_must_be_https_outside_loopback():
    s = spawn_server(env_overrides={"JWT_JWKS_URL": "http://idp.example/jwks", "JWT_SECRET": None},
                     wait=False)
    assert s.proc.wait(30) != 0
    assert "JWT_JWKS_URL must be https://" in s.log()
