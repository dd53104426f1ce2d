"""Verified bearer tokens are remembered until their exp (src/identity/token_cache.c), four to a
set: two tokens that hash to the same slot both stay remembered, where a direct-mapped cache
pushed each out with the other and checked every request of theirs in full."""
from __future__ import annotations

import requests

from helpers import metric, operator_token, spawn_server

SLOTS = 16384  # TOKEN_SLOTS: the sets are this modulo the ways, so one slot is one set


def _fnv1a(b: bytes) -> int:
    h = 2166136261
    for x in b:
        h = ((h ^ x) * 16777619) & 0xFFFFFFFF
    return h


def _two_tokens_of_one_slot() -> tuple[str, str]:
    seen: dict[int, str] = {}
    for i in range(200000):
        t = operator_token(jti=f"cache-{i}")
        slot = _fnv1a(t.encode()) % SLOTS
        if slot in seen:
            return seen[slot], t
        seen[slot] = t
    raise AssertionError("no two tokens of one slot")


def test_two_tokens_of_one_slot_are_both_remembered():
    a, b = _two_tokens_of_one_slot()
    with spawn_server() as srv:
        for tok in (a, b) * 4:
            r = requests.get(srv.url + "/v1/me", timeout=5,
                             headers={"Authorization": "Bearer " + tok})
            assert r.status_code == 200, r.text
        # each checked in full once, then found: 2 misses and 6 hits (direct-mapped: 8 misses)
        assert metric(srv.url, 'mpn_token_cache_total{outcome="miss"}') == 2
        assert metric(srv.url, 'mpn_token_cache_total{outcome="hit"}') == 6


def test_a_refused_token_is_not_remembered():
    with spawn_server() as srv:
        bad = operator_token(jti="cache-bad", key=b"not the secret")
        for _ in range(3):
            r = requests.get(srv.url + "/v1/me", timeout=5,
                             headers={"Authorization": "Bearer " + bad})
            assert r.status_code == 401
        assert metric(srv.url, 'mpn_token_cache_total{outcome="miss"}') == 3
        assert metric(srv.url, 'mpn_token_cache_total{outcome="hit"}') == 0
