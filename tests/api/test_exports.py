"""Issue 14, step 5: `Accept: text/csv` exports of the users, assignments, benefits and audit
events lists: every row with the JSON list's filters (RFC 4180, header row, UTF-8), values that
a spreadsheet would run as formulas escaped, streamed in chunks so that the service's memory
stays flat from 3 000 to 300 000 rows (printed)."""
from __future__ import annotations

import csv
import io
import os
import time

import requests

from fresh_partner import VS_ENTERPRISE, assign_seat, fresh_partner
from helpers import BASE, Client, assert_problem, db_exec, db_val, spawn_server, token

CSV = {"Accept": "text/csv"}


def rows(r) -> list[list[str]]:
    assert r.status_code == 200, r.text[:300]
    assert r.headers["Content-Type"].startswith("text/csv"), r.headers
    text = r.content.decode("utf-8")
    assert text.endswith("\r\n")
    return list(csv.reader(io.StringIO(text, newline="")))


def json_total(c: Client, path: str, **params) -> int:
    n, cursor = 0, None
    while True:
        q = dict(params, limit=200, **({"cursor": cursor} if cursor else {}))
        r = c.get(path, params=q)
        assert r.status_code == 200, r.text
        n += len(r.json()["items"])
        cursor = r.json()["next_cursor"]
        if not cursor:
            return n


def test_users_export_has_every_row_of_the_json_list_and_escapes_formulas():
    f = fresh_partner()
    names = ["=cmd()", "+SUM(A1)", "-2+3", "@HYPERLINK(x)", "Doe, Jane", 'Say "hi"', "Line\nbreak"]
    for i, name in enumerate(names):
        db_exec("INSERT INTO users (partner_id, email, display_name) VALUES (%s, %s, %s)",
                f.partner, f"x{i}-{f.partner[:8]}@fresh.example", name)
    for i in range(450):  # more than two JSON pages
        db_exec("INSERT INTO users (partner_id, email, display_name) VALUES (%s, %s, %s)",
                f.partner, f"bulk{i}-{f.partner[:8]}@fresh.example", f"Bulk {i}")
    c = f.client(BASE, "user_admin")
    path = f.path("/users")
    got = rows(c.get(path, headers=CSV))
    assert got[0] == ["id", "email", "display_name", "roles", "created_at"]
    assert len(got) - 1 == json_total(c, path) == 5 + len(names) + 450
    by_name = {r[2] for r in got[1:]}
    for safe in ["'=cmd()", "'+SUM(A1)", "'-2+3", "'@HYPERLINK(x)", "Doe, Jane", 'Say "hi"',
                 "Line\nbreak"]:
        assert safe in by_name, safe
    assert "=cmd()" not in by_name
    raw = c.get(path, headers=CSV).text
    assert ",'=cmd()," in raw and '"Say ""hi"""' in raw
    # the same filters as the JSON list
    for params in ({"q": "bulk1"}, {"role": "global_admin"}, {"q": "x", "role": "user_admin"}):
        assert len(rows(c.get(path, headers=CSV, params=params))) - 1 == \
            json_total(c, path, **params), params
    assert_problem(c.get(path, headers=CSV, params={"role": "nobody"}), 422)


def test_benefit_assignment_and_audit_exports_follow_their_lists():
    f = fresh_partner()
    ga = f.client(BASE)
    path = f.path("/benefits")
    for params in ({}, {"category": "software"}, {"status": "available"}):
        got = rows(ga.get(path, headers=CSV, params=params))
        assert got[0][:4] == ["id", "purchase_id", "product_id", "category"]
        assert len(got) - 1 == json_total(ga, path, **params) > 0, params
    aa = f.client(BASE, "admin_agent")  # R8: no technical benefits in its export either
    got = rows(aa.get(path, headers=CSV))
    assert len(got) - 1 == json_total(aa, path)
    assert "technical" not in {r[3] for r in got[1:]}
    vs = f.benefits[VS_ENTERPRISE]
    for role in ("employee", "admin_agent"):
        assign_seat(vs, f.users[role])
    apath = f.path(f"/benefits/{vs}/assignments")
    got = rows(ga.get(apath, headers=CSV))
    assert len(got) - 1 == json_total(ga, apath) == 2
    assert sorted(r[0] for r in got[1:]) == sorted([f.users["employee"], f.users["admin_agent"]])
    for i in range(5):
        db_exec("INSERT INTO audit_events (partner_id, actor, action, target_type, target_id, "
                "details) VALUES (%s, %s, 'test.exported', 'x', '=1+1', '{\"a\": \"b,c\"}')",
                f.partner, f"actor-{i % 2}")
    upath = f.path("/audit-events")
    for params in ({}, {"action": "test.exported"}, {"actor": "actor-1"}):
        got = rows(ga.get(upath, headers=CSV, params=params))
        assert len(got) - 1 == json_total(ga, upath, **params), params
    got = rows(ga.get(upath, headers=CSV, params={"action": "test.exported"}))
    assert {r[5] for r in got[1:]} == {"'=1+1"} and got[1][7] == '{"a": "b,c"}'
    # the gate and the roles hold as for the JSON list
    assert_problem(aa.get(upath, headers=CSV), 403, "forbidden-role")
    other = fresh_partner()  # another partner's token: 404, like the JSON list
    assert_problem(other.client(BASE).get(path, headers=CSV), 404, "not-found")


def _vm(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(field)


def test_audit_export_memory_stays_flat_from_3000_to_300000_rows():
    f = fresh_partner()
    db_exec("INSERT INTO audit_events (partner_id, actor, action, target_type, target_id, details) "
            "SELECT %s, 'bulk', 'test.bulk', 'benefit', g::text, "
            "jsonb_build_object('n', g, 'note', 'a row of the export test') "
            "FROM generate_series(1, 3000) g", f.partner)
    # ASan keeps freed memory in quarantine (256 MB by default), which would show as growth
    opts = os.environ.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=1"
    with spawn_server(env_overrides={"ASAN_OPTIONS": opts, "DB_POOL_SIZE": 2}) as srv:
        tok = token(f.users["global_admin"], f.partner, ["global_admin"])
        url = f"{srv.url}/v1/partners/{f.partner}/audit-events"

        def export() -> tuple[int, int, float]:
            t0 = time.monotonic()
            n = 0
            with requests.get(url, headers=dict(CSV, Authorization=f"Bearer {tok}"),
                              stream=True, timeout=600) as r:
                assert r.status_code == 200, r.text[:300]
                for chunk in r.iter_content(65536):
                    n += chunk.count(b"\n")  # a CRLF may straddle two chunks
            return n - 1, _vm(srv.proc.pid, "VmHWM"), time.monotonic() - t0

        export()  # warm up: connections, prepared statements, allocator arenas
        small, hwm_small, t_small = export()
        db_exec("INSERT INTO audit_events (partner_id, actor, action, target_type, target_id, "
                "details) SELECT %s, 'bulk', 'test.bulk', 'benefit', g::text, "
                "jsonb_build_object('n', g, 'note', 'a row of the export test') "
                "FROM generate_series(3001, 300000) g", f.partner)
        big, hwm_big, t_big = export()
    print(f"audit export: {small} rows peak RSS {hwm_small // 1024} MB ({t_small:.1f} s); "
          f"{big} rows peak RSS {hwm_big // 1024} MB ({t_big:.1f} s) (ASan build)")
    assert hwm_big - hwm_small < 24 * 1024, (hwm_small, hwm_big)
    assert (small, big) == (3000, 300000)
    assert db_val("SELECT count(*) FROM audit_events WHERE partner_id = %s", f.partner) == big
