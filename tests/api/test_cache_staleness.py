"""Issue 17: the cache is never stale, table-driven over every state-changing operation of the
contract (the role matrix's rows, so a new operation is covered when it gets its row).

Replica B keeps every read of the module's partner in its cache (each read twice: the second is
a hit); replica C keeps nothing (CACHE_MB=0), so its answers are what PostgreSQL says now. For
each write (sent through the shared service, as an allowed caller, with the recipe's own
preparation done before the reads are cached), every partner read on B must then equal the same
read on C."""
from __future__ import annotations

import pytest
import requests

import test_role_matrix as rm
from helpers import spawn_server
from role_matrix import AA, GA, OP, PA, ROWS, UA, Row

world = rm.world  # a fresh partner of this module's own

WRITES = [r for r in ROWS if r.method != "GET"]
READS = [r for r in ROWS if r.method == "GET" and r.path.startswith("/v1/partners/")]


def _caller(row: Row) -> str:
    return next(w for w in (GA, PA, OP, UA, AA) if w in row.allowed)


def _hits(url: str) -> float:
    for line in requests.get(url + "/metrics", timeout=5).text.splitlines():
        if line.startswith('mpn_cache_answers_total{outcome="hit"}'):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError("no cache hit counter in /metrics")


@pytest.fixture(scope="module")
def replicas():
    b = spawn_server()
    c = spawn_server(env_overrides={"CACHE_MB": 0})
    yield b, c
    b.stop()
    c.stop()


def read_paths(world) -> list:
    """Each read's request, made once (some read recipes prepare data, e.g. a webhook to read)."""
    return [(row, _caller(row), rm.RECIPES[row.id](world, _caller(row))) for row in READS]


def read_all(world, base: str, paths: list) -> dict:
    out = {}
    for row, who, req in paths:
        r = world.clients[who].at(base).get(req.path, params=req.params)
        body = r.json() if r.content else None
        if isinstance(body, dict):
            body.pop("as_of", None)  # the summary's clock reading, not data
            if r.headers.get("Content-Type", "").startswith("application/problem+json"):
                body.pop("request_id", None)  # each problem names its own request
        out[row.id] = (r.status_code, body)
    return out


def test_reads_cover_the_partner_and_the_cache_is_on_in_b_off_in_c(world, replicas):
    b, c = replicas
    assert len(READS) >= 15 and len(WRITES) >= 30
    paths = read_paths(world)
    read_all(world, b.url, paths)
    read_all(world, c.url, paths)
    hb, hc = _hits(b.url), _hits(c.url)
    read_all(world, b.url, paths)
    read_all(world, c.url, paths)
    assert _hits(b.url) >= hb + 8, "replica B does not answer from its cache"
    assert _hits(c.url) == hc, "replica C (CACHE_MB=0) answered from a cache"


@pytest.mark.parametrize("row", WRITES, ids=[r.id for r in WRITES])
def test_after_each_write_every_cached_read_equals_the_database(world, replicas, row: Row):
    b, c = replicas
    who = _caller(row)
    paths = read_paths(world)  # first: some read recipes prepare data (a request to read)
    req = rm.RECIPES[row.id](world, who)  # its preparation (SQL) happens before the reads
    read_all(world, b.url, paths)
    read_all(world, b.url, paths)  # now from B's cache
    r = rm._send(world.clients[who], row.method, req)
    assert r.status_code == req.expect, r.text[:300]
    after, truth = read_all(world, b.url, paths), read_all(world, c.url, paths)
    stale = [k for k in truth if after[k] != truth[k]]
    assert not stale, (f"after {row.id}, replica B answers stale reads: {stale}: " +
                       "; ".join(f"B {after[k]} C {truth[k]}" for k in stale)[:1500])
