#!/usr/bin/env python3
"""Contract-driven fuzzer of mpn-benefits (issue 6, point 4).

Reads api/openapi.yaml and, for EVERY operation in it (a new endpoint is covered as soon as it
is in the contract and in the service), sends valid-looking and broken requests generated with
Hypothesis: wrong types, missing and unknown fields, huge and negative numbers, 10 000-character
strings, invalid UTF-8, NUL bytes, deeply nested JSON, invalid UUIDs in the path and the body,
SQL/JSON injection strings, duplicate keys, empty bodies, wrong Content-Type, oversized and
chunked bodies, garbage query values and headers, wrong methods and garbage paths, Idempotency-Key
replays, with tokens of every role (and of other partners, expired, forged or none).

Every answer must
  * have a status the contract documents for that operation (404/405 for garbage paths and
    methods), never a 5xx;
  * match the documented schema for that status (jsonschema against the contract), problems as
    application/problem+json with a documented `code` and `status` equal to the HTTP status;
  * echo our X-Request-Id;
  * for valid JSON sent as application/json, never be 400/415;
  * for an Idempotency-Key replay of a 2xx, be the first answer again (Idempotent-Replayed), and
    for the same key with another body, 422 idempotency-key-reused.
After the run the database invariants hold (see check_invariants), and the audit trail matches
the answers: every 2xx mutation wrote an audit event with its request id, no refused or replayed
request did.

Data: the fuzzer creates its own world with SQL (two fresh partners, one in PMC, users of every
role, a private package of private products with their own key pools, a purchase with all its
benefits) and points every state-changing request at it; the demo partners are only read. So it
can run in the shared test database (tests/api/test_zz_fuzz_sample.py) without touching what
other tests rely on.

Operations the service does not route (a 404 to an unauthenticated probe where a routed
operation answers 401) are listed as skipped, and a run that skipped any FAILS: an operation of
the contract the service does not serve is a defect, not something to fuzz later.

Beyond a documented status, the answer must be the exact one for what the token says: 401 for
a forged, expired, `alg: none` or absent token on any secured operation, and 404 for another
partner's partner id or ids (403 only for a role that may not do it at all): strict_status.

Usage (scripts/fuzz.sh runs it; environment as scripts/test.sh exports it):
    /usr/bin/python3 tests/fuzz/contract_fuzz.py --requests 12000 [--seed N] [--scope global]
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import random
import re
import sys
import time
import urllib.parse
import uuid

import jsonschema
import psycopg2
import requests
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hyp_seed
from hypothesis import strategies as st

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "api"))
import helpers  # noqa: E402  (token minting, demo ids)

MUTATING = {"POST", "PUT", "PATCH", "DELETE"}
ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]

# Demo ids (sql/demo/seed.sql): only ever READ by the fuzzer.
DEMO_BENEFITS = [f"dddddddd-0000-4000-8000-0000000000{n:02d}" for n in (1, 4, 6, 8, 12)]
DEMO_PURCHASE = "cccccccc-0000-4000-8000-000000000001"
DEMO_PACKAGES = [f"bbbbbbbb-0000-4000-8000-00000000000{n}" for n in (1, 2, 3)]

INJECTIONS = [
    "' OR '1'='1", "'; DROP TABLE benefits; --", "\" OR \"\"=\"", "1; SELECT pg_sleep(5)",
    "$1", "%s%s%n", "{{7*7}}", "${jndi:ldap://x}", "<script>alert(1)</script>",
    "\"}, \"roles\": [\"operator\"], \"x\": {\"", "\\u0000", "../../etc/passwd", "*", "%",
    "NULL", "null", "true", "[]", "{}", "\u202e\u0644\u0644", "\U0001f4a9" * 3, "a\u0301" * 5,
]
BAD_IDS = [
    "not-a-uuid", "00000000-0000-0000-0000-000000000000", "0", "-1", "1e9", "' OR 1=1 --",
    "11111111-1111-4111-8111-11111111111", "11111111-1111-4111-8111-1111111111111",
    "{11111111-1111-4111-8111-111111111111}", "11111111111141118111111111111111",
    "zzzzzzzz-zzzz-4zzz-8zzz-zzzzzzzzzzzz", "null", "undefined", "%20", "é" * 12,
]
# Ids whose URL decoding changes the path's shape: the answer may be 404 or 405 then.
SHAPE_BREAKING = ["%2F", "..%2F..", "%00", "a%00b", "%2e%2e", "%3F", "%23"]


# --- the contract --------------------------------------------------------------------------


def _to_jsonschema(node, in_properties=False):
    """OpenAPI 3.0 schema -> JSON Schema draft 4 (nullable, and the OpenAPI-only keywords)."""
    if isinstance(node, list):
        return [_to_jsonschema(x) for x in node]
    if not isinstance(node, dict):
        return node
    if in_properties:  # keys are property names here, not keywords
        return {k: _to_jsonschema(v) for k, v in node.items()}
    out = {}
    for k, v in node.items():
        if k in ("nullable", "example", "examples", "discriminator", "xml", "externalDocs",
                 "deprecated", "readOnly", "writeOnly"):
            continue
        out[k] = _to_jsonschema(v, in_properties=(k == "properties"))
    if node.get("nullable"):
        if "type" in out:
            out["type"] = [out["type"], "null"]
            if "enum" in out and None not in out["enum"]:  # the contract lists it (issue 18)
                out["enum"] = list(out["enum"]) + [None]
        else:
            out = {"anyOf": [out, {"type": "null"}]}
    return out


class Op:
    def __init__(self, contract: "Contract", method: str, path: str, path_item: dict, op: dict):
        self.method, self.path, self.op_id = method.upper(), path, op.get("operationId", "")
        params = [contract.deref(p) for p in path_item.get("parameters", [])]
        params += [contract.deref(p) for p in op.get("parameters", [])]
        self.path_params = [p for p in params if p["in"] == "path"]
        self.query_params = [p for p in params if p["in"] == "query"]
        self.header_params = {p["name"].lower(): p for p in params if p["in"] == "header"}
        self.public = op.get("security", contract.doc.get("security")) == []
        rb = contract.deref(op["requestBody"]) if "requestBody" in op else None
        self.body_required = bool(rb and rb.get("required"))
        self.body_schema = None
        if rb:
            self.body_schema = (rb.get("content", {}).get("application/json") or {}).get("schema")
        self.responses: dict[int, dict[str, dict | None]] = {}
        for code, resp in op["responses"].items():
            resp = contract.deref(resp)
            content = {ct: (c or {}).get("schema") for ct, c in (resp.get("content") or {}).items()}
            self.responses[int(code)] = content
        self.statuses = set(self.responses)
        self.routed = True  # set by Fuzzer.routed()

    @property
    def name(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def mutating(self) -> bool:
        return self.method in MUTATING

    @property
    def idempotency(self) -> bool:
        return "idempotency-key" in self.header_params


class Contract:
    def __init__(self, path: str):
        with open(path, encoding="utf-8") as f:
            self.doc = yaml.safe_load(f)
        js_schemas = {k: _to_jsonschema(v) for k, v in self.doc["components"]["schemas"].items()}
        self.js_root = {"components": {"schemas": js_schemas}}
        self.resolver = jsonschema.RefResolver.from_schema(self.js_root)
        self._validators: dict[int, jsonschema.Draft4Validator] = {}
        self.ops: list[Op] = []
        for path, item in self.doc["paths"].items():
            for method, op in item.items():
                if method.upper() in ALL_METHODS or method in ("head", "trace"):
                    self.ops.append(Op(self, method, path, item, op))
        pc = self.schema("ProblemCode")
        self.problem_codes = set(pc.get("enum", []))

    def deref(self, node):
        seen = 0
        while isinstance(node, dict) and "$ref" in node:
            target = self.doc
            for part in node["$ref"].lstrip("#/").split("/"):
                target = target[part]
            node = target
            seen += 1
            assert seen < 32, "reference loop"
        return node

    def schema(self, name: str) -> dict:
        return self.doc["components"]["schemas"][name]

    def validate(self, schema: dict, instance) -> str | None:
        key = id(schema)
        v = self._validators.get(key)
        if v is None:
            v = jsonschema.Draft4Validator(_to_jsonschema(schema), resolver=self.resolver)
            self._validators[key] = v
        err = jsonschema.exceptions.best_match(v.iter_errors(instance))
        if err is None:
            return None
        where = "/".join(map(str, err.absolute_path)) or "(root)"
        return f"{where}: {err.message[:300]}"


# --- the fuzzer's own data -----------------------------------------------------------------


class World:
    """Two fresh partners (A in Partner Center, gold; B in PMC), users of every role, a private
    package of private products (with key pools of their own) bought by both: every mutation
    of the fuzzer lands here."""

    def __init__(self, dsn: str, kek: str):
        self.dsn, self.kek = dsn, kek
        self.conn = psycopg2.connect(dsn, connect_timeout=10)
        self.conn.autocommit = True
        self.tag = uuid.uuid4().hex[:10]
        self._create()

    def q(self, sql, *args):
        with self.conn.cursor() as cur:
            cur.execute(sql, args or None)
            return cur.fetchall() if cur.description else []

    def _create(self):
        t = self.tag
        rnd = random.Random()
        self.a = self.q(
            "INSERT INTO partners (mpn_id, name, account_email, membership_location, level, "
            "co_sell_ready) VALUES (%s, %s, %s, 'partner_center', 'gold', true) RETURNING id::text",
            rnd.randrange(10**9, 2**52), f"Fuzz A {t}", f"owner-{t}@fuzz-a.example")[0][0]
        self.b = self.q(
            "INSERT INTO partners (mpn_id, name, account_email, membership_location, level) "
            "VALUES (%s, %s, %s, 'pmc', 'silver') RETURNING id::text",
            rnd.randrange(10**9, 2**52), f"Fuzz B {t}", f"owner-{t}@fuzz-b.example")[0][0]
        self.heal()
        roles = {"ga": ["global_admin"], "ua": ["user_admin"], "aa": ["admin_agent"],
                 "pa": ["mpn_partner_admin"], "emp": [], "dev1": [], "dev2": [], "dev3": []}
        self.users_a = {}
        self.user_rows = []  # (id, email, name, roles): heal() puts back deleted ones
        for k, r in roles.items():
            self.users_a[k] = self.q(
                "INSERT INTO users (partner_id, email, display_name, roles) VALUES "
                "(%s, %s, %s, %s) RETURNING id::text", self.a, f"{k}-{t}@fuzz-a.example",
                f"Fuzz {k}", r)[0][0]
            self.user_rows.append((self.users_a[k], f"{k}-{t}@fuzz-a.example", f"Fuzz {k}", r))
        self.users_b = {"ga": self.q(
            "INSERT INTO users (partner_id, email, display_name, roles) VALUES "
            "(%s, %s, 'Fuzz B admin', '{global_admin}') RETURNING id::text", self.b,
            f"ga-{t}@fuzz-b.example")[0][0]}
        prods = [  # code, category, cloud_kind, languages, os, unit, requirement, days, qty
            ("software", "software", None, ["en-US", "de-DE"], ["x64", "x86"], None, None, None, 2),
            ("license", "cloud", "license_based", ["en-US"], ["x64"], None, None, None, 2),
            ("usage", "cloud", "usage_based", [], [], None, None, None, 1),
            ("vs", "visual_studio", None, [], [], None, None, None, 3),
            ("incidents", "technical", None, [], [], "incidents", None, None, 5),
            ("hours", "technical", None, [], [], "hours", None, None, 20),
            ("gtm-silver", "go_to_market", None, [], [], None, "silver_competency", 365, 1),
            ("gtm-cosell", "go_to_market", None, [], [], None, "co_sell_ready", 180, 1),
        ]
        self.products = {}
        for code, cat, kind, langs, oses, unit, req, days, _ in prods:
            # one statement: a product and a download per language x OS pair commit together
            # (sql/011: the rule is checked at COMMIT)
            self.products[code] = self.q(
                "WITH p AS (INSERT INTO products (code, name, category, cloud_kind, languages, "
                "os_types, instructions, portal_url, unit, offer_requirement, "
                "offer_duration_days) VALUES "
                "(%s, %s, %s, %s, %s, %s, 'Fuzz product.', %s, %s, %s, %s) RETURNING id, "
                "languages, os_types), d AS (INSERT INTO product_downloads (product_id, "
                "language, os, url) SELECT p.id, l, o, format("
                "'https://downloads.example/fuzz/%%s/%%s/%%s.iso', %s::text, l, o) FROM p, "
                "unnest(p.languages) l, unnest(p.os_types) o) SELECT id::text FROM p",
                f"fuzz-{t}-{code}", f"Fuzz {code} {t}", cat, kind, langs, oses,
                "https://portal.example" if kind == "usage_based" or cat == "visual_studio"
                else None, unit, req, days, code)[0][0]
        self.package = self.q(
            "INSERT INTO packages (code, name, price, currency, term_months) VALUES "
            "(%s, %s, 1, 'USD', 12) RETURNING id::text", f"fuzz-{t}", f"Fuzz package {t}")[0][0]
        for code, *_rest, qty in prods:
            self.q("INSERT INTO package_benefits (package_id, product_id, quantity) VALUES "
                   "(%s, %s, %s)", self.package, self.products[code], qty)
        for code in ("software", "license"):  # private key pools: reveals never drain the demo's
            for n in range(40):
                key = f"FZ{t[:3].upper()}-{code[:3].upper()}-{n:05d}-{uuid.uuid4().hex[:5].upper()}"
                self.q("INSERT INTO license_keys (product_id, key_enc, key_mac) VALUES "
                       "(%s, pgp_sym_encrypt(%s, %s), hmac(%s, %s, 'sha256'))",
                       self.products[code], key, self.kek, key, self.kek)
        self.purchase_b = self._buy(self.b)
        self.benefits_b = [r[0] for r in self.q(
            "SELECT id::text FROM benefits WHERE purchase_id = %s", self.purchase_b)]
        self.old_purchases, self.old_benefits = [], []
        self._buy_a()

    def _buy_a(self):
        self.purchase_a = self._buy(self.a)
        rows = self.q("SELECT b.id::text, p.code FROM benefits b JOIN products p ON p.id = "
                      "b.product_id WHERE b.purchase_id = %s", self.purchase_a)
        self.benefits_a = {code.rsplit(f"{self.tag}-", 1)[1]: bid for bid, code in rows}

    def _buy(self, partner):
        pid = self.q(
            "INSERT INTO purchases (partner_id, package_id, purchased_at, term_end, created_by) "
            "VALUES (%s, %s, now() - interval '1 day', now() + interval '1 year', "
            "'contract-fuzz') RETURNING id::text", partner, self.package)[0][0]
        self.q("INSERT INTO benefits (partner_id, purchase_id, product_id, category, quantity) "
               "SELECT %s, %s, pb.product_id, p.category, pb.quantity FROM package_benefits pb "
               "JOIN products p ON p.id = pb.product_id WHERE pb.package_id = %s",
               partner, pid, self.package)
        return pid

    def heal(self):
        """Undo what would stall the rest of the run, the way a partner would: A moved back to
        Partner Center (a PATCH may have sent it to PMC), its deleted users added again, and a
        new purchase of the private package once the current one is cancelled or its benefits
        are all used up or activated (the old ids stay in the pools: they answer 409s)."""
        if getattr(self, "purchase_a", None):
            st_ = self.q("SELECT status FROM purchases WHERE id = %s", self.purchase_a)[0][0]
            fresh = self.q("SELECT count(*) FROM benefits WHERE purchase_id = %s AND status = "
                           "'available' AND used < quantity", self.purchase_a)[0][0]
            if st_ != "active" or fresh < 3:
                # an active one used up ends its term now (one active purchase per package)
                self.q("UPDATE purchases SET status = 'expired', term_end = now() WHERE id = %s "
                       "AND status = 'active'", self.purchase_a)
                self.old_purchases = (self.old_purchases + [self.purchase_a])[-3:]
                self.old_benefits = (self.old_benefits + list(self.benefits_a.values()))[-8:]
                self._buy_a()
        for uid, email, name, roles in getattr(self, "user_rows", []):
            self.q("INSERT INTO users (id, partner_id, email, display_name, roles) VALUES "
                   "(%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING", uid, self.a, email, name, roles)
        self.q("UPDATE partners SET membership_location = 'partner_center', level = 'gold', "
               "co_sell_ready = true WHERE id = %s", self.a)
        self.q("UPDATE partners SET membership_location = 'pmc' WHERE id = %s", self.b)
        self.q("INSERT INTO partner_competencies (partner_id, area, level, expires_at) VALUES "
               "(%s, 'Cloud Platform', 'gold', now() + interval '1 year'), "
               "(%s, 'Data Analytics', 'silver', now() + interval '1 year') "
               "ON CONFLICT DO NOTHING", self.a, self.a)

    @property
    def partners(self):
        return [self.a, self.b]


# --- tokens --------------------------------------------------------------------------------


def make_tokens(w: World) -> dict[str, str | None]:
    a, b, u = w.a, w.b, w.users_a
    tok = helpers.token
    return {
        "a_ga": tok(u["ga"], a, ["global_admin"]),
        "a_all": tok(u["ga"], a, ["global_admin", "user_admin", "admin_agent", "mpn_partner_admin"]),
        "a_pa": tok(u["pa"], a, ["mpn_partner_admin"]),
        "a_ua": tok(u["ua"], a, ["user_admin"]),
        "a_aa": tok(u["aa"], a, ["admin_agent"]),
        "a_emp": tok(u["emp"], a, []),
        "op": helpers.token(helpers.OPERATOR_SUB, None, ["operator"]),
        "b_ga": tok(w.users_b["ga"], b, ["global_admin"]),
        "contoso_ga": tok(helpers.GA_ID, helpers.CONTOSO, ["global_admin"]),
        "expired": tok(u["ga"], a, ["global_admin"], exp=int(time.time()) - 3600),
        "forged": tok(u["ga"], a, ["global_admin"], key=b"not-the-secret-0123456789abcdef0123"),
        "alg_none": tok(helpers.OPERATOR_SUB, None, ["operator"], alg="none"),
        "none": None,
    }


# Tokens that must get 401 on every secured operation, and the partner of the others (None: the
# operator, who may name any partner). ALL_ROLES: tokens whose roles allow every partner action,
# so that another partner's id can only be 404 (never 403).
BAD_TOKENS = {"expired", "forged", "alg_none", "none"}
PARTNER_OF = {"a_ga": lambda w: w.a, "a_all": lambda w: w.a, "a_pa": lambda w: w.a,
              "a_ua": lambda w: w.a, "a_aa": lambda w: w.a, "a_emp": lambda w: w.a,
              "op": lambda w: None, "b_ga": lambda w: w.b,
              "contoso_ga": lambda w: helpers.CONTOSO}
ALL_ROLES = {"a_ga", "a_all", "b_ga", "contoso_ga"}
# Mutations whose body the service refuses before any handler (400 malformed, 413, 415).
BODY_BROKEN = {"invalid_utf8", "nul_byte", "deep_nesting", "duplicate_key", "empty_body",
               "wrong_content_type", "not_object", "malformed", "oversize", "chunked"}

TOKEN_WEIGHTS = {"a_ga": 30, "a_all": 10, "a_pa": 8, "a_ua": 6, "a_aa": 6, "a_emp": 5, "op": 12,
                 "b_ga": 5, "contoso_ga": 4, "expired": 2, "forged": 2, "alg_none": 1, "none": 3}
ADMIN_TOKEN_WEIGHTS = dict(TOKEN_WEIGHTS, op=150)


# --- the run -------------------------------------------------------------------------------


class Fuzzer:
    def __init__(self, base: str, contract: Contract, world: World, *, seed: int,
                 max_failures: int = 50):
        self.base = base.rstrip("/")
        self.c, self.w, self.seed = contract, world, seed
        self.session = requests.Session()
        self.tokens = make_tokens(world)
        self.tokens_at = time.monotonic()
        self.run_tag = uuid.uuid4().hex[:8]
        self.sent = 0
        self.by_op = collections.Counter()
        self.by_mutation = collections.Counter()
        self.statuses = collections.Counter()
        self.failures: list[dict] = []
        self.max_failures = max_failures
        self.mutations_log: list[tuple] = []  # (request id, method, status, replayed, op)
        self.max_latency = 0.0
        self.previous = None
        self._strategies: dict = {}
        self.skipped: list[str] = []
        self.cursors: dict[str, list[str]] = collections.defaultdict(list)
        self.etags: list[str] = []
        self.harvest = collections.defaultdict(list)  # created ids, per kind
        self.origin = (os.environ.get("CORS_ORIGINS") or "http://localhost:3000").split(",")[0]

    # -- pools of ids -------------------------------------------------------------------
    def pool(self, param: str, mutating: bool) -> list[str]:
        w = self.w
        if param == "partnerId":
            return w.partners + ([] if mutating else [helpers.CONTOSO, helpers.FABRIKAM])
        if param == "benefitId":
            ids = list(w.benefits_a.values()) + w.old_benefits[-3:] + w.benefits_b[:2]
            return ids + ([] if mutating else DEMO_BENEFITS)
        if param == "purchaseId":
            ids = [w.purchase_a, w.purchase_b] + w.old_purchases[-1:] + self.harvest["purchase"][-5:]
            return ids + ([] if mutating else [DEMO_PURCHASE])
        if param == "userId":
            ids = list(w.users_a.values()) + self.harvest["user"][-5:] + [w.users_b["ga"]]
            return ids + ([] if mutating else [helpers.GA_ID])
        if param == "activationId":
            return self.harvest["activation"][-8:] or [str(uuid.uuid4())]
        if param == "productId":
            return list(w.products.values())  # never a demo product: no keys into demo pools
        if param == "packageId":
            return DEMO_PACKAGES + [w.package]
        return [str(uuid.uuid4())]

    @staticmethod
    def pick(data, seq, label="pick"):
        """One element of a list that changes during the run (harvested ids, cursors): the draw
        itself must not depend on it, or Hypothesis calls the generation flaky."""
        i = data.draw(st.integers(0, 2**16), label=label)
        return seq[i % len(seq)] if seq else None

    def token_for(self, data, op: Op) -> tuple[str, str | None]:
        if time.monotonic() - self.tokens_at > 300:  # tokens live 10 minutes
            self.tokens, self.tokens_at = make_tokens(self.w), time.monotonic()
        weights = ADMIN_TOKEN_WEIGHTS if op.path.startswith("/v1/admin") else TOKEN_WEIGHTS
        names = sorted(weights, key=lambda n: -weights[n])  # Hypothesis favours early choices
        # weighted choice through an index, so Hypothesis can still vary it
        cum, total = [], 0
        for n in names:
            total += weights[n]
            cum.append(total)
        x = data.draw(st.integers(0, total - 1), label="token")
        name = next(n for n, c in zip(names, cum) if x < c)
        return name, self.tokens[name]

    # -- bodies -------------------------------------------------------------------------
    def hint(self, name: str, schema: dict):
        """Valid-looking values for fields whose meaning the schema cannot say."""
        w = self.w
        users = list(w.users_a.values())
        hints = {
            "user_id": st.sampled_from(users + [w.users_b["ga"], helpers.EMP_ID]),
            "package_id": st.sampled_from(DEMO_PACKAGES + [w.package]),
            "benefit_id": st.sampled_from(list(w.benefits_a.values())),
            "customer_tenant_id": st.uuids().map(str),
            "language": st.sampled_from(["en-US", "de-DE", "fr-FR", "xx-XX", "EN-us"]),
            "os": st.sampled_from(["x64", "x86", "arm64", "sparc"]),
            "preferred_language": st.sampled_from(["en-US", "de", "fr-CA", "zh-Hant-TW", "EN"]),
            "phone": st.sampled_from(["+14255550100", "+4930123456", "+0123", "555-0100"]),
            "mpn_id": st.one_of(st.builds(lambda _: random.randrange(10**9, 2**52), st.none()),
                                st.integers(1, 2**53)),
            "email": st.one_of(
                st.builds(lambda _: f"fz-{uuid.uuid4().hex[:12]}@fuzz.example", st.none()),
                st.sampled_from([f"ga-{w.tag}@fuzz-a.example", "x@y", "not-an-email"])),
            "account_email": st.one_of(st.just(f"owner-{w.tag}@fuzz-a.example"), st.builds(
                lambda u: f"acct-{u.hex[:8]}@fuzz.example", st.uuids())),
            "keys": st.lists(st.builds(lambda _: f"FZ-LOAD-{uuid.uuid4().hex[:20].upper()}",
                                       st.none()), min_size=1, max_size=4),
            "reason": st.sampled_from(["Not eligible.", "Duplicate request", "x"]),
        }
        if name in hints:
            return hints[name]
        return None

    def valid_value(self, schema: dict, name: str = "", depth: int = 0):
        """A strategy for valid-looking values of a schema (cached: building strategies,
        from_regex above all, costs more than drawing from them)."""
        key = (id(schema), name)
        if key not in self._strategies:
            self._strategies[key] = self._valid_value(schema, name, depth)
        return self._strategies[key]

    def _valid_value(self, schema: dict, name: str = "", depth: int = 0):
        schema = self.c.deref(schema or {})
        h = self.hint(name, schema)
        if h is not None:
            return h
        if "enum" in schema:
            return st.sampled_from(schema["enum"])
        for comb in ("allOf", "oneOf", "anyOf"):
            if comb in schema:
                return self.valid_value(schema[comb][0], name, depth)
        t = schema.get("type")
        if t == "object" or "properties" in schema:
            props = schema.get("properties", {})
            req = [k for k in schema.get("required", []) if k in props]
            opt = {k: self.valid_value(v, k, depth + 1) for k, v in props.items() if k not in req}
            return st.fixed_dictionaries({k: self.valid_value(props[k], k, depth + 1) for k in req},
                                         optional=opt)
        if t == "array":
            lo = schema.get("minItems", 0)
            hi = max(lo, min(schema.get("maxItems", 4), 4))
            return st.lists(self.valid_value(schema.get("items", {}), name, depth + 1),
                            min_size=lo, max_size=hi, unique=bool(schema.get("uniqueItems")))
        if t == "integer":
            lo, hi = schema.get("minimum", -1000), schema.get("maximum", 10**6)
            return st.integers(lo, hi)
        if t == "number":
            return st.floats(schema.get("minimum", -1e6), schema.get("maximum", 1e6),
                             allow_nan=False, allow_infinity=False)
        if t == "boolean":
            return st.booleans()
        if t == "string":
            fmt = schema.get("format")
            if fmt == "uuid":
                return st.uuids().map(str)
            if fmt == "email":
                return self.hint("email", schema)
            if fmt == "date-time":
                return st.just("2030-01-01T00:00:00Z")
            if "pattern" in schema:
                return st.from_regex(schema["pattern"], fullmatch=True).filter(
                    lambda s: len(s) <= schema.get("maxLength", 200))
            lo = schema.get("minLength", 0)
            hi = max(lo, min(schema.get("maxLength", 40), 40))
            return st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=lo,
                           max_size=hi)
        return st.none()

    def field_paths(self, body, prefix=()):
        """Every (path, value) inside a generated body, objects and arrays alike."""
        out = []
        if isinstance(body, dict):
            for k, v in body.items():
                out.append((prefix + (k,), v))
                out += self.field_paths(v, prefix + (k,))
        elif isinstance(body, list):
            for i, v in enumerate(body):
                out.append((prefix + (i,), v))
                out += self.field_paths(v, prefix + (i,))
        return out

    @staticmethod
    def set_path(body, path, value):
        cur = body
        for p in path[:-1]:
            cur = cur[p]
        if value is _DROP:
            if isinstance(cur, dict):
                cur.pop(path[-1], None)
            else:
                cur.pop(path[-1])
        else:
            cur[path[-1]] = value

    # -- one request --------------------------------------------------------------------
    def build(self, data, op: Op) -> dict:
        mutating = op.mutating
        kinds = ["valid", "bad_path_id", "wrong_method", "garbage_path", "garbage_headers",
                 "injection_path"]
        if op.query_params:
            kinds += ["query_garbage", "query_garbage", "valid_query"]
        if op.body_schema is not None:
            # valid requests are a quarter of the lot: they reach the state changes (and so the
            # audit, idempotency and invariant checks) that broken ones never get to
            kinds += ["valid"] * 8 + ["wrong_type", "missing_field", "unknown_field", "huge_number",
                      "negative_number", "long_string", "invalid_utf8", "nul_byte", "deep_nesting",
                      "bad_uuid_body", "injection_body", "duplicate_key", "empty_body",
                      "wrong_content_type", "not_object", "malformed", "oversize", "chunked",
                      "null_field", "float_for_int", "unicode"]
            if op.idempotency:
                kinds += ["replay", "replay"]
        kind = data.draw(st.sampled_from(kinds), label="mutation")
        tok_name, tok = self.token_for(data, op)
        rid = f"fz{self.run_tag}-{self.sent:06d}"
        headers = {"X-Request-Id": rid, "Accept": "application/json"}
        if tok is not None:
            headers["Authorization"] = f"Bearer {tok}"
        req = {"op": op, "kind": kind, "token": tok_name, "method": op.method, "headers": headers,
               "body": None, "query": {}, "shape_broken": False, "json_ok": False, "rid": rid}

        # path
        segs = {}
        for p in op.path_params:
            segs[p["name"]] = self.pick(data, self.pool(p["name"], mutating), p["name"])
        if kind == "bad_path_id" and op.path_params:
            name = data.draw(st.sampled_from([p["name"] for p in op.path_params]))
            base = segs[name]
            segs[name] = data.draw(st.sampled_from(
                BAD_IDS + [str(uuid.uuid4()), base.upper(), base + "0", base[:-1], " " + base,
                           base.replace("-", "")]), label="bad_id")
        if kind == "injection_path" and op.path_params:
            name = data.draw(st.sampled_from([p["name"] for p in op.path_params]))
            segs[name] = data.draw(st.sampled_from(INJECTIONS + SHAPE_BREAKING))
        path = op.path
        for name, val in segs.items():
            enc = val if val in SHAPE_BREAKING else urllib.parse.quote(val, safe="")
            if val in SHAPE_BREAKING or "/" in val:
                req["shape_broken"] = True
            path = path.replace("{" + name + "}", enc)
        if kind == "garbage_path":
            path = data.draw(st.sampled_from([
                path + "/", path + "/x", path + "//", "/v1" + path.replace("/v1", "/v2", 1),
                path.upper(), path + "/../../etc/passwd", path + "%00", "/" + "a/" * 200,
                path.replace("/", "//", 1), path + "/" + "x" * 1500, path + ";jsessionid=1",
                "/v1/partners/" + self.w.a + "/nothing-here", "/v1", "/", "/.env",
            ]), label="garbage_path")
            req["shape_broken"] = True
        if kind == "wrong_method":
            others = [m for m in ALL_METHODS
                      if not any(o.path == op.path and o.method == m for o in self.c.ops)]
            if others:
                req["method"] = data.draw(st.sampled_from(others), label="method")
                req["wrong_method"] = True
        req["path"] = path
        req["segs"] = segs

        # query
        for p in op.query_params:
            name = p["name"]
            schema = self.c.deref(p.get("schema", {}))
            if data.draw(st.booleans(), label=f"q_{name}"):
                if name == "cursor":
                    val = self.pick(data, self.cursors[op.name], "cursor")
                    if not val:
                        continue
                else:
                    val = data.draw(self.valid_value(schema, name))
                req["query"][name] = str(val)
        if kind == "query_garbage":
            name = data.draw(st.sampled_from([p["name"] for p in op.query_params] + ["foo"]))
            req["query"][name] = data.draw(st.sampled_from(
                ["", "0", "-1", "201", "abc", "1e2", "1.5", " 5", "5 ", "9" * 30, "%00", "null",
                 "[]", "' OR 1=1 --", "x" * 3000, "é", "AAAA", "AAAAA", "a.b", "====",
                 "dmFsdWU", "MTExMTExMTEtMTExMS00MTExLTgxMTEtMTExMTExMTExMTEx"]),
                label="q_garbage")

        # headers
        if kind == "garbage_headers":
            which = data.draw(st.sampled_from(["rid", "origin", "auth", "accept", "idem",
                                                "ifmatch"]))
            if which == "rid":
                headers["X-Request-Id"] = data.draw(st.sampled_from(
                    ["", "x" * 100, "a b", "<script>", "é"]))
                req["rid"] = None
            elif which == "origin":
                headers["Origin"] = data.draw(st.sampled_from(
                    ["https://evil.example", self.origin, "null", "x" * 500]))
            elif which == "auth":
                headers["Authorization"] = data.draw(st.sampled_from(
                    ["Bearer", "Bearer  ", "Basic YTpi", "bearer " + (tok or "x"),
                     "Bearer " + "a" * 9000, "Bearer a.b.c", "Bearer " + (tok or "x") + "x",
                     "Bearer " + (tok or "x").replace(".", "..", 1)]))
                req["token"] = "garbage"
            elif which == "accept":
                headers["Accept"] = data.draw(st.sampled_from(["text/html", "*/*", "x/y;q=0"]))
            elif which == "idem" and op.mutating:  # POSTs check it; the others ignore it
                headers["Idempotency-Key"] = data.draw(st.sampled_from(
                    ["", "k" * 201, "a b", "é", "a\x01b", str(uuid.uuid4())]))
            elif which == "ifmatch" and "if-match" in op.header_params:
                headers["If-Match"] = self.pick(data, ["*", '"0"', "garbage", "W/\"1\""]
                                                + self.etags[-2:], "ifmatch")
        elif "if-match" in op.header_params:
            if data.draw(st.booleans(), label="send_etag") and self.etags:
                headers["If-Match"] = self.etags[-1]
        if op.idempotency and "Idempotency-Key" not in headers and (
                kind == "replay" or data.draw(st.booleans(), label="idem")):
            headers["Idempotency-Key"] = str(uuid.uuid4())

        # body
        if op.body_schema is not None and not req.get("wrong_method"):
            self.build_body(data, op, req, kind)
        return req

    def build_body(self, data, op: Op, req: dict, kind: str):
        headers = req["headers"]
        empty_allowed = not op.body_required
        if empty_allowed and kind == "valid" and data.draw(st.booleans(), label="omit_body"):
            return
        body = data.draw(self.valid_value(op.body_schema), label="body")
        raw = None
        ctype = "application/json"
        paths = self.field_paths(body)
        leafs = [p for p, v in paths if not isinstance(v, (dict, list))] or [p for p, _ in paths]
        pick = (lambda: data.draw(st.sampled_from(leafs), label="field")) if leafs else None
        if kind == "wrong_type" and pick:
            self.set_path(body, pick(), data.draw(st.sampled_from(
                [1, -1, 1.5, True, None, "1", [], {}, ["x"], {"a": 1}])))
        elif kind == "missing_field" and paths:
            self.set_path(body, data.draw(st.sampled_from([p for p, _ in paths])), _DROP)
        elif kind == "unknown_field":
            key = data.draw(st.sampled_from(["extra", "id", "partner_id", "roles", "__proto__",
                                             "a" + "é" * 40, "", "status", "used", "quantity"]))
            if isinstance(body, dict):
                body[key] = data.draw(st.sampled_from([1, "x", None, ["operator"], {"a": 1}]))
        elif kind == "huge_number":
            val = data.draw(st.sampled_from([2**63, -2**63 - 1, 2**53 + 1, 10**30, 1e308,
                                             9007199254740993, 2**31]))
            if pick:
                self.set_path(body, pick(), val)
            else:
                body = {"n": val}
        elif kind == "negative_number" and pick:
            self.set_path(body, pick(), data.draw(st.sampled_from([-1, -2**31, 0, -0.0, -1e-9])))
        elif kind == "long_string" and pick:
            self.set_path(body, pick(), data.draw(st.sampled_from(
                ["x" * 10000, "é" * 10000, "\U0001f600" * 10000, "a" * 10001])))
        elif kind == "null_field" and pick:
            self.set_path(body, pick(), None)
        elif kind == "float_for_int" and pick:
            self.set_path(body, pick(), data.draw(st.sampled_from([1.0, 2.5, 1e2, -0.5])))
        elif kind == "bad_uuid_body":
            targets = [p for p, v in paths if isinstance(v, str)
                       and re.fullmatch(r"[0-9a-f-]{36}", v or "")]
            if targets:
                self.set_path(body, data.draw(st.sampled_from(targets)),
                              data.draw(st.sampled_from(BAD_IDS + [str(uuid.uuid4()).upper()])))
            elif isinstance(body, dict):
                body["user_id"] = "not-a-uuid"
        elif kind == "injection_body" and pick:
            self.set_path(body, pick(), data.draw(st.sampled_from(INJECTIONS)))
        elif kind == "unicode" and pick:
            self.set_path(body, pick(), data.draw(st.text(min_size=1, max_size=30)))
        if kind == "invalid_utf8":
            raw = json.dumps(body).encode()
            cut = raw.rfind(b'"')
            bad = data.draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xc0\xaf",
                                             b"\xf8\x88\x80\x80\x80"]))
            raw = (raw[:cut] + bad + raw[cut:]) if cut > 0 else b'{"a":"' + bad + b'"}'
        elif kind == "nul_byte":
            raw = data.draw(st.sampled_from([
                json.dumps(body).encode() + b"\x00", b'{"a":"\x00"}', b"\x00",
                json.dumps(body).replace('"', '"\\u0000', 1).encode(),
                json.dumps(body).encode().replace(b":", b":\x00", 1)]))
        elif kind == "deep_nesting":
            depth = data.draw(st.sampled_from([100, 2000, 10000]))
            raw = data.draw(st.sampled_from([
                b"[" * depth + b"]" * depth, b'{"a":' * depth + b"1" + b"}" * depth,
                (b'{"x":' + b"[" * depth + b"]" * depth + b"}")]))
        elif kind == "duplicate_key":
            if isinstance(body, dict) and body:
                k = next(iter(body))
                inner = json.dumps(body)[1:-1]
                raw = ("{" + inner + ", " + json.dumps(k) + ": " + json.dumps(body[k]) + "}").encode()
            else:
                raw = b'{"a": 1, "a": 2}'
        elif kind == "empty_body":
            raw = data.draw(st.sampled_from([b"", b" ", b"\n"]))
        elif kind == "wrong_content_type":
            raw = json.dumps(body).encode()
            ctype = data.draw(st.sampled_from([None, "text/plain", "application/xml",
                                               "application/jsonx", "application/json-patch+json",
                                               "multipart/form-data; boundary=x",
                                               "application/x-www-form-urlencoded", "json"]))
        elif kind == "not_object":
            raw = data.draw(st.sampled_from([b"[]", b'"str"', b"1", b"null", b"true", b"[{}]"]))
            req["json_ok"] = True
        elif kind == "malformed":
            full = json.dumps(body)
            raw = data.draw(st.sampled_from([
                full[:-1].encode(), (full + ",").encode(), full.replace('"', "'").encode(),
                b"{a:1}", b"{", b"}", (full + full).encode(), b"\xef\xbb\xbf" + full.encode(),
                b"NaN", b'{"a":NaN}', b'{"a":01}', b'{"a":1,}']))
        elif kind == "oversize":
            raw = json.dumps({"pad": "x" * data.draw(st.sampled_from(
                [66 * 1024, 70 * 1024, 70 * 1024, 300 * 1024, 2 * 1024 * 1024]))}).encode()
        elif kind == "chunked":
            raw = json.dumps(body).encode()
            req["chunked"] = data.draw(st.booleans())
            if not req["chunked"]:
                raw = json.dumps({"pad": "y" * (80 * 1024)}).encode()
                req["chunked"] = True
        if raw is None:
            raw = json.dumps(body, ensure_ascii=data.draw(st.booleans(), label="ascii")).encode()
            req["json_ok"] = True
        req["body"] = raw
        req["body_obj"] = body
        if ctype is not None:
            headers["Content-Type"] = ctype
        req["ctype_ok"] = ctype == "application/json"

    def send(self, req: dict) -> requests.Response | None:
        url = self.base + req["path"]
        body = req["body"]
        if req.get("chunked") and body is not None:
            data_arg = (body[i:i + 4096] for i in range(0, len(body), 4096))
        else:
            data_arg = body
        t0 = time.monotonic()
        self.sent += 1
        self.by_op[req["op"].name] += 1
        self.by_mutation[req["kind"]] += 1
        try:
            r = self.session.request(req["method"], url, params=req["query"] or None,
                                     data=data_arg, headers=req["headers"], timeout=15,
                                     allow_redirects=False)
        except requests.RequestException as e:
            # a connection the service closed after a 413 on a chunked upload is fine;
            # anything else is a failure (crash, hang)
            if req["kind"] in ("oversize", "chunked"):
                return None
            prev = self.previous
            self.fail(req, None, f"request failed: {type(e).__name__}: {e} (request before: "
                                 f"{prev['method'] if prev else '-'} {prev['path'][:100] if prev else ''} "
                                 f"[{prev['kind'] if prev else ''}])")
            return None
        finally:
            self.previous = req
        dt = time.monotonic() - t0
        self.max_latency = max(self.max_latency, dt)
        self.statuses[r.status_code] += 1
        return r

    def fail(self, req, r, why):
        if len(self.failures) >= self.max_failures:
            return
        body = req.get("body")
        self.failures.append({
            "op": req["op"].name, "mutation": req["kind"], "token": req["token"],
            "request": f"{req['method']} {req['path']}"
                       + (f"?{urllib.parse.urlencode(req['query'])}" if req["query"] else ""),
            "headers": {k: (v[:60] + "…" if len(v) > 60 else v) for k, v in req["headers"].items()
                        if k != "Authorization"},
            "body": (body[:300] if body else body), "status": r.status_code if r is not None else None,
            "answer": r.text[:400] if r is not None else None, "why": why})

    def owner(self, id_: str) -> str | None:
        """The partner an id of the pools belongs to (None: not known, e.g. a random uuid)."""
        if not hasattr(self, "_owners"):
            w, o = self.w, {}
            for i in [w.purchase_b, *w.users_b.values(), *w.benefits_b]:
                o[i] = w.b
            for i in [*DEMO_BENEFITS, DEMO_PURCHASE, helpers.GA_ID]:
                o[i] = helpers.CONTOSO
            self._owners = o
        w = self.w
        id_ = id_.lower()  # the service reads ids case-insensitively
        if id_ in self._owners:
            return self._owners[id_]
        if (id_ in w.benefits_a.values() or id_ in w.old_benefits or id_ == w.purchase_a
                or id_ in w.old_purchases or id_ in w.users_a.values()):
            return w.a
        return None

    def strict_status(self, req: dict) -> tuple[set, str] | None:
        """Issue 20: the one answer a request may get for what its token says, beyond what the
        contract documents: a bad token (forged, expired, alg none, absent) is 401 on every
        secured operation; another partner's partner id, or another partner's id under the
        caller's own partner, is 404 (403 when the caller's role may not do it at all: roles
        are checked first). None when nothing stricter applies (garbage paths and methods,
        which routing answers first; bodies the framework refuses before the handler runs)."""
        op = req["op"]
        if op.public or req["shape_broken"] or req.get("wrong_method") or not op.routed:
            return None
        early = {413}  # the body size limit comes before anything else
        tok = req["token"]
        if tok in BAD_TOKENS:
            # a path parameter the router cannot match (injected quotes, spaces, ...) is the
            # router's 404 "No such resource.", before authentication (checked in check())
            router = {404} if req["kind"] in ("injection_path", "bad_path_id") else set()
            return {401} | early | router, f"token {tok}"
        segs = req.get("segs") or {}
        if tok not in PARTNER_OF or "partnerId" not in segs or not op.path.startswith(
                "/v1/partners/{partnerId}"):
            return None
        mine = PARTNER_OF[tok](self.w)
        path_partner = segs["partnerId"].lower()
        why = None
        if mine is not None and path_partner != mine:
            why = f"partner {path_partner} in the path, token of {mine}"
        else:
            for name, val in segs.items():
                own = self.owner(val)
                if name != "partnerId" and own is not None and own != path_partner:
                    why = f"{name} {val} of partner {own} under {path_partner}"
                    break
        if why is None:
            return None
        ok = {404, 422}  # 422: the query or body is invalid on its face, checked first
        if tok not in ALL_ROLES:
            ok.add(403)  # roles are checked before the partner
        if path_partner in (self.w.b, helpers.FABRIKAM) and mine in (None, path_partner):
            ok.add(409)  # a PMC partner the caller may see: membership-in-pmc first
        body_early = {400, 413, 415} if req["kind"] in BODY_BROKEN else set()
        return ok | early | body_early, why

    def check(self, req: dict, r: requests.Response | None):
        if r is None:
            return
        op, st_ = req["op"], r.status_code
        if st_ >= 500:
            self.fail(req, r, f"{st_}: a server error")
            return
        garbage = req["shape_broken"] or req.get("wrong_method") or not op.routed
        allowed = set(op.statuses) | ({404, 405} if garbage else set())
        if req.get("wrong_method"):
            allowed = {404, 405}
        if st_ not in allowed:
            self.fail(req, r, f"status {st_} is not documented for {op.name} "
                              f"(documented: {sorted(allowed)})")
            return
        if (st_ == 401 and req["token"] not in BAD_TOKENS
                and "revoked" in (r.text if r.headers.get("Content-Type", "").startswith(
                    "application/problem+json") else "")):
            # The run's own mutations (a role removed, a user deleted, revoke-tokens) revoke
            # the tokens of that user issued until then (issue 11): mint new ones and go on.
            self.tokens_at = float("-inf")
            self.revoked_answers = getattr(self, "revoked_answers", 0) + 1
            return
        strict = self.strict_status(req)
        if strict is not None:
            code = detail = None
            if st_ in (403, 404, 409, 422) and r.headers.get("Content-Type", "").startswith(
                    "application/problem+json"):
                try:
                    code, detail = r.json().get("code"), r.json().get("detail")
                except ValueError:
                    pass
            if st_ == 404 and req["token"] in BAD_TOKENS and detail != "No such resource.":
                self.fail(req, r, f"404 {detail!r} for {strict[1]}: only the router's 404 may "
                                  "come before authentication")
                return
            want = {403: "forbidden-role", 404: "not-found", 409: "membership-in-pmc",
                    422: "validation-failed"}
            if st_ not in strict[0] or (st_ in want and code != want[st_]):
                self.fail(req, r, f"status {st_} ({code}) for {strict[1]}: expected one of "
                                  f"{sorted(strict[0])}")
                return
        if req["rid"] and r.headers.get("X-Request-Id") != req["rid"]:
            self.fail(req, r, f"X-Request-Id {r.headers.get('X-Request-Id')!r} is not ours")
        if req.get("json_ok") and req.get("ctype_ok") and st_ in (400, 415):
            self.fail(req, r, f"{st_} for a valid JSON body sent as application/json")
        if req.get("ctype_ok") is False and req["body"] and st_ == 400:
            self.fail(req, r, "400 for a body that is not application/json (expected 415)")
        if st_ == 405 and not r.headers.get("Allow"):
            self.fail(req, r, "405 without an Allow header")
        if req["method"] == "HEAD":
            return
        ctype = r.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if st_ >= 400:
            if ctype != "application/problem+json":
                self.fail(req, r, f"{st_} answered as {ctype!r}, not application/problem+json")
                return
            try:
                doc = r.json()
            except ValueError:
                self.fail(req, r, "problem answer is not JSON")
                return
            err = self.c.validate(self.c.schema("Problem"), doc)
            if err:
                self.fail(req, r, f"problem answer breaks the Problem schema: {err}")
            elif doc.get("status") != st_:
                self.fail(req, r, f"problem status {doc.get('status')} != HTTP {st_}")
            elif doc.get("code") not in self.c.problem_codes:
                self.fail(req, r, f"problem code {doc.get('code')!r} is not in the contract")
            if st_ == 401 and "basic" in r.headers.get("WWW-Authenticate", "").lower():
                self.fail(req, r, "401 offers Basic authentication")
            return
        if garbage and st_ in (404, 405):
            return
        content = op.responses.get(st_, {})
        if not content:
            if r.content and st_ == 204:
                self.fail(req, r, "204 with a body")
            return
        if ctype not in content:
            self.fail(req, r, f"{st_} answered as {ctype!r}; documented: {sorted(content)}")
            return
        schema = content[ctype]
        if schema is not None and ctype.endswith("json"):
            try:
                doc = r.json()
            except ValueError:
                self.fail(req, r, f"{st_} body is not JSON")
                return
            err = self.c.validate(schema, doc)
            if err:
                self.fail(req, r, f"{st_} body breaks the contract: {err}")
            self.learn(req, r, doc)

    def learn(self, req, r, doc):
        """Ids and cursors from good answers feed later requests (partner A's only)."""
        op = req["op"]
        if isinstance(doc, dict):
            if doc.get("next_cursor"):
                self.cursors[op.name].append(doc["next_cursor"])
                del self.cursors[op.name][:-5]
            if op.method == "POST" and r.status_code in (201, 202) and isinstance(doc.get("id"), str):
                if self.w.a in req["path"] or self.w.b in req["path"]:
                    kind = ("user" if op.path.endswith("/users") else
                            "purchase" if op.path.endswith("/purchases") else
                            "activation" if "activation" in op.path else "other")
                    self.harvest[kind].append(doc["id"])
        if r.headers.get("ETag"):
            self.etags.append(r.headers["ETag"])
            del self.etags[:-3]

    def record(self, req, r):
        if r is None or req["method"] not in MUTATING:
            return
        rid = r.headers.get("X-Request-Id")
        if rid and req["op"].mutating:
            self.mutations_log.append((rid, req["method"], r.status_code,
                                       r.headers.get("Idempotent-Replayed") == "true",
                                       req["op"].name))

    def one(self, data, op: Op):
        req = self.build(data, op)
        r = self.send(req)
        self.check(req, r)
        self.record(req, r)
        if req["kind"] != "replay" or r is None or "Idempotency-Key" not in req["headers"]:
            return
        if not 200 <= r.status_code < 300:
            return
        # the same request again: the first answer, replayed, nothing done twice
        req2 = dict(req, headers=dict(req["headers"], **{"X-Request-Id": req["rid"] + "-r"}),
                    rid=req["rid"] + "-r")
        r2 = self.send(req2)
        self.check(req2, r2)
        self.record(req2, r2)
        if r2 is not None:
            if r2.status_code != r.status_code or r2.content != r.content:
                self.fail(req2, r2, f"replay answered {r2.status_code} (first: {r.status_code}) "
                                    "or another body")
            elif r2.headers.get("Idempotent-Replayed") != "true":
                self.fail(req2, r2, "replay without Idempotent-Replayed: true")
        # the same key with another body (another JSON document, not just other whitespace:
        # the service compares bodies in canonical form)
        other = dict(req["body_obj"]) if isinstance(req.get("body_obj"), dict) else {}
        other["fuzz_other"] = other.get("fuzz_other", 0) + 1
        req3 = dict(req, body=json.dumps(other).encode(),
                    headers=dict(req["headers"], **{"X-Request-Id": req["rid"] + "-d",
                                                    "Content-Type": "application/json"}),
                    rid=req["rid"] + "-d")
        r3 = self.send(req3)
        self.check(req3, r3)
        self.record(req3, r3)
        if r3 is not None and (r3.status_code != 422 or
                               (r3.headers.get("Content-Type", "").startswith("application/problem")
                                and r3.json().get("code") != "idempotency-key-reused")):
            self.fail(req3, r3, "the same Idempotency-Key with another body is not 422 "
                                "idempotency-key-reused")

    # -- driving ------------------------------------------------------------------------
    def routed(self, op: Op) -> bool:
        """Is the operation in the service yet? Routing comes before authentication, so an
        unauthenticated request answers 401 on a routed secured operation, and 404 (unknown
        path) or 405 (another method of a known path) on one that is not there yet."""
        if op.public:
            return True
        path = op.path
        for p in op.path_params:
            path = path.replace("{" + p["name"] + "}", self.pool(p["name"], True)[0])
        r = self.session.request(op.method, self.base + path, timeout=10)
        self.sent += 1
        return r.status_code not in (404, 405)

    def run_op(self, op: Op, n: int, seed: int):
        @settings(max_examples=n, database=None, deadline=None, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck), derandomize=False)
        @given(st.data())
        def case(data):
            self.one(data, op)

        hyp_seed(seed)(case)()

    def run(self, total: int, chunk: int = 40, include_unrouted: bool = False) -> None:
        for op in self.c.ops:
            op.routed = self.routed(op)
        ops = [op for op in self.c.ops if include_unrouted or op.routed]
        self.skipped = [op.name for op in self.c.ops if not op.routed]
        if not ops:
            raise SystemExit("no routed operation in the contract?")
        rnd = random.Random(self.seed)
        rounds = 0
        while self.sent < total:
            order = ops[:]
            rnd.shuffle(order)
            for op in order:
                left = total - self.sent
                if left <= 0:
                    break
                self.run_op(op, max(1, min(chunk, left)), self.seed + rounds * 1000 + ops.index(op))
                self.w.heal()
            rounds += 1
        self.rounds = rounds
        self.ops_fuzzed = [op.name for op in ops]

    # -- afterwards ---------------------------------------------------------------------
    def check_audit(self) -> list[str]:
        """Every 2xx mutation left an audit event with its request id; no refused or failed
        request did (its transaction was rolled back), and a replay did nothing again. The one
        exception: a replayed Get keys shows the keys again (the record keeps no secret, the
        handler runs again), and every reveal is audited (DESIGN §3)."""
        if not self.mutations_log:
            return []
        rids = [m[0] for m in self.mutations_log]
        audited = dict(self.w.q(
            "SELECT request_id, array_agg(action) FROM audit_events WHERE request_id = ANY(%s) "
            "GROUP BY request_id", rids))
        bad = []
        for rid, method, status, replayed, name in self.mutations_log:
            actions = audited.get(rid, [])
            if replayed:
                actions = [a for a in actions if "reveal" not in a]
            if 200 <= status < 300 and not replayed and not actions:
                bad.append(f"{method} {name} answered {status} but wrote no audit event "
                           f"(request id {rid})")
            elif (status >= 300 or replayed) and actions:
                bad.append(f"{name} answered {status}{' (replayed)' if replayed else ''} "
                           f"yet left audit events {actions} (request id {rid})")
        return bad[:20]

    def summary(self) -> dict:
        return {
            "seed": self.seed, "requests": self.sent, "operations_fuzzed": len(self.ops_fuzzed),
            "operations_skipped": self.skipped, "statuses": dict(sorted(self.statuses.items())),
            "mutations": dict(self.by_mutation.most_common()),
            "max_latency_s": round(self.max_latency, 3), "failures": len(self.failures),
            "mutations_checked_against_audit": len(self.mutations_log),
            "mutations_2xx": sum(1 for m in self.mutations_log if 200 <= m[2] < 300 and not m[3]),
        }


_DROP = object()


def check_invariants(w: World, partners: list[str] | None) -> list[str]:
    """Database invariants after a run; scoped to the fuzzer's partners when given (the shared
    test database holds other tests' data), else over everything."""
    scope = "TRUE" if partners is None else "b.partner_id = ANY(%(p)s::uuid[])"
    pscope = "TRUE" if partners is None else "pu.partner_id = ANY(%(p)s::uuid[])"
    checks = {
        "benefits used beyond their quantity (or below 0)":
            f"SELECT count(*) FROM benefits b WHERE (b.used > b.quantity OR b.used < 0) AND {scope}",
        "seat benefits whose used differs from their seat assignments":
            f"SELECT count(*) FROM benefits b WHERE {scope} AND (b.category = 'visual_studio' OR "
            "EXISTS (SELECT 1 FROM seat_assignments s WHERE s.benefit_id = b.id)) AND b.used <> "
            "(SELECT count(*) FROM seat_assignments s WHERE s.benefit_id = b.id)",
        "seats assigned to a user of another partner":
            f"SELECT count(*) FROM seat_assignments s JOIN benefits b ON b.id = s.benefit_id "
            f"JOIN users u ON u.id = s.user_id WHERE u.partner_id <> b.partner_id AND {scope}",
        "license keys on two benefits":
            "SELECT count(*) FROM (SELECT key_mac FROM license_keys WHERE benefit_id IS NOT NULL "
            "GROUP BY product_id, key_mac HAVING count(DISTINCT benefit_id) > 1) k",
        "license keys handed to a benefit of another product":
            f"SELECT count(*) FROM license_keys k JOIN benefits b ON b.id = k.benefit_id "
            f"WHERE k.product_id <> b.product_id AND {scope}",
        "purchases missing some of their package's benefits":
            f"SELECT count(*) FROM purchases pu JOIN package_benefits pb ON pb.package_id = "
            f"pu.package_id WHERE {pscope} AND NOT EXISTS (SELECT 1 FROM benefits b WHERE "
            "b.purchase_id = pu.id AND b.product_id = pb.product_id)",
        "benefits of another partner than their purchase":
            f"SELECT count(*) FROM benefits b JOIN purchases pu ON pu.id = b.purchase_id "
            f"WHERE b.partner_id <> pu.partner_id AND {scope}",
        "marketing contacts that are users of another partner":
            "SELECT count(*) FROM marketing_contacts m JOIN users u ON u.id = m.user_id "
            "WHERE u.partner_id <> m.partner_id"
            + ("" if partners is None else " AND m.partner_id = ANY(%(p)s::uuid[])"),
        "idempotency records left unfinished (status 0)":
            "SELECT count(*) FROM idempotency_keys WHERE status = 0",
    }
    bad = []
    with w.conn.cursor() as cur:
        for what, sql in checks.items():
            cur.execute(sql, {"p": partners} if partners is not None else None)
            n = cur.fetchone()[0]
            if n:
                bad.append(f"{what}: {n}")
    return bad


def run(base: str, requests_total: int, *, seed: int | None = None, scope: str = "fuzz",
        spec: str | None = None, include_unrouted: bool = False) -> dict:
    """Sets up the world, fuzzes, checks. Returns the summary with `failures`,
    `audit_mismatches` and `invariant_violations` lists (all empty when everything held)."""
    seed = seed if seed is not None else random.randrange(2**31)
    contract = Contract(spec or os.path.join(ROOT, "api", "openapi.yaml"))
    world = World(helpers.env("DATABASE_URL"), helpers.env("KEY_ENCRYPTION_KEY"))
    fz = Fuzzer(base, contract, world, seed=seed)
    t0 = time.monotonic()
    fz.run(requests_total, include_unrouted=include_unrouted)
    out = fz.summary()
    out["seconds"] = round(time.monotonic() - t0, 1)
    out["failure_details"] = fz.failures
    out["audit_mismatches"] = fz.check_audit()
    out["invariant_violations"] = check_invariants(world, None if scope == "global"
                                                   else world.partners)
    out["fuzz_partners"] = world.partners
    world.conn.close()
    return out


def report(out: dict) -> str:
    lines = [f"contract fuzz: {out['requests']} requests in {out['seconds']}s (seed {out['seed']}), "
             f"{out['operations_fuzzed']} operations fuzzed, max latency {out['max_latency_s']}s",
             f"  statuses: {out['statuses']}; {out['mutations_2xx']} state changes (2xx) of "
             f"{out['mutations_checked_against_audit']} mutating requests checked against the audit trail",
             f"  mutations: {out['mutations']}"]
    if out["operations_skipped"]:
        lines.append(f"  not routed by this service yet ({len(out['operations_skipped'])}): "
                     + ", ".join(out["operations_skipped"]))
    for f in out["failure_details"]:
        lines.append(f"  FAIL {f['why']}\n       {f['request']} [{f['mutation']}, token {f['token']}]"
                     f" headers={f['headers']} body={f['body']!r}\n       -> {f['answer']!r}")
    for a in out["audit_mismatches"]:
        lines.append(f"  AUDIT {a}")
    for v in out["invariant_violations"]:
        lines.append(f"  INVARIANT {v}")
    ok = not (out["failure_details"] or out["audit_mismatches"] or out["invariant_violations"]
              or out["operations_skipped"])
    lines.append("  all answers documented, invariants hold" if ok else
                 f"  FAILED (seed {out['seed']}: MB_FUZZ_SEED={out['seed']} or --seed "
                 f"{out['seed']} repeats this run)")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", default=os.environ.get("MB_DIRECT"), help="service URL (MB_DIRECT)")
    ap.add_argument("--requests", type=int, default=10000)
    ap.add_argument("--seed", type=int)
    ap.add_argument("--scope", choices=["fuzz", "global"], default="fuzz",
                    help="invariants over the fuzzer's partners only, or the whole database")
    ap.add_argument("--json", help="also write the summary as JSON here")
    ap.add_argument("--include-unrouted", action="store_true",
                    help="fuzz operations the service does not route yet too (they answer 404/405; "
                         "exercises the generators)")
    args = ap.parse_args()
    if not args.base:
        ap.error("--base or MB_DIRECT is required")
    out = run(args.base, args.requests, seed=args.seed, scope=args.scope,
              include_unrouted=args.include_unrouted)
    print(report(out))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(out, f, indent=1, default=str)
    if out["operations_skipped"]:
        print(f"contract fuzz: {len(out['operations_skipped'])} operation(s) of the contract "
              f"were not fuzzed: {out['operations_skipped']}", file=sys.stderr)
    bad = (out["failure_details"] or out["audit_mismatches"] or out["invariant_violations"]
           or out["operations_skipped"])
    if bad:
        print(f"contract fuzz FAILED; reproduce with --seed {out['seed']}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
