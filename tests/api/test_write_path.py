"""The data-version triggers after sql/017_write_path_triggers.sql and sql/020: bump_partner_of_row
names each table's columns instead of converting the row to jsonb (the benefit row and the rows
that only name their partner have functions of their own since sql/020), the seat row's own trigger fires on
UPDATE only (its INSERT and DELETE change the benefit row, which bumps), and the partner row
bumps through the same trigger, into partner_versions (sql/019). Table-driven over every table the trigger is on: a table
with no row here fails, so a new one cannot be left out.

Each change runs in a transaction that is rolled back, with the deferred triggers run first
(SET CONSTRAINTS ALL IMMEDIATE); the partner's version must then be exactly one higher: bumped,
and once."""
from __future__ import annotations

import pytest

from fresh_partner import VS_ENTERPRISE, WINDOWS_SERVER, fresh_partner
from helpers import db_all

POOL_KEY = ("INSERT INTO license_keys (product_id, key_enc, key_mac) "
            "VALUES (%(wp)s, '\\x00', decode(md5('write path'), 'hex'))")

# table -> changes, each a statement or a list of them run in one transaction; %(p)s the
# partner, %(b)s its Visual Studio benefit, %(k)s its software benefit, %(u)s its employee,
# %(pu)s its purchase
CHANGES = {
    "partner_competencies": [
        "INSERT INTO partner_competencies (partner_id, area, level) "
        "VALUES (%(p)s, 'Write path', 'gold')",
        "UPDATE partner_competencies SET level = level WHERE partner_id = %(p)s",
        "DELETE FROM partner_competencies WHERE partner_id = %(p)s"],
    "users": [
        "INSERT INTO users (partner_id, email, display_name) "
        "VALUES (%(p)s, 'write.path@fresh.example', 'W')",
        "UPDATE users SET display_name = 'W' WHERE id = %(u)s"],
    "purchases": ["UPDATE purchases SET created_by = created_by WHERE id = %(pu)s"],
    "benefits": ["UPDATE benefits SET used = used WHERE id = %(b)s"],
    "key_reveals": [
        "INSERT INTO key_reveals (benefit_id, language, os, revealed_by) "
        "VALUES (%(k)s, 'en', 'windows', 'test')"],
    "seat_assignments": [
        "INSERT INTO seat_assignments (benefit_id, user_id, assigned_by) "
        "VALUES (%(b)s, %(u)s, 'test')"],
    "activations": [
        "INSERT INTO activations (partner_id, benefit_id, kind, requested_by) "
        "VALUES (%(p)s, %(b)s, 'technical', 'test')"],
    "marketing_contacts": [
        "INSERT INTO marketing_contacts (partner_id, user_id, email, phone, preferred_language) "
        "VALUES (%(p)s, %(u)s, 'm@fresh.example', '+4930123456', 'en')"],
    "support_requests": [
        "INSERT INTO support_requests (partner_id, benefit_id, type, units, created_by) "
        "VALUES (%(p)s, %(b)s, 'on_premises', 1, 'test')"],
    "cancellation_requests": [
        "INSERT INTO cancellation_requests (partner_id, purchase_id, reason, requested_by, "
        "refund_reasons) VALUES (%(p)s, %(pu)s, 'write path', 'test', '{test}')"],
    "partners": ["UPDATE partners SET name = name || '.' WHERE id = %(p)s"],
    "audit_events": [
        "INSERT INTO audit_events (partner_id, actor, action, target_type, target_id) "
        "VALUES (%(p)s, 'test', 'test.bump', 'partner', %(p)s)"],
    # a pool key (no partner: no bump) handed to the benefit
    "license_keys": [[POOL_KEY, "UPDATE license_keys SET benefit_id = %(k)s, assigned_at = now() "
                      "WHERE key_mac = decode(md5('write path'), 'hex')"]],
}


def _version(cur, pid: str) -> int:
    cur.execute("SELECT data_version FROM partner_versions WHERE partner_id = %s", (pid,))
    return cur.fetchone()[0]


def _bumps(db, stmts: list[str], args: dict, partners: list[str]) -> list[int]:
    """How much each of partners' versions moves when stmts run in one transaction."""
    cur = db.cursor()
    cur.execute("BEGIN")
    try:
        before = [_version(cur, p) for p in partners]
        for s in stmts:
            cur.execute(s, args)
        cur.execute("SET CONSTRAINTS ALL IMMEDIATE")  # the deferred bumps run now
        return [_version(cur, p) - b for p, b in zip(partners, before)]
    finally:
        cur.execute("ROLLBACK")


@pytest.fixture(scope="module")
def fresh():
    f = fresh_partner()
    return {"p": f.partner, "b": f.benefits[VS_ENTERPRISE], "k": f.benefits[WINDOWS_SERVER],
            "u": f.users["employee"], "pu": f.purchase, "wp": WINDOWS_SERVER}


def test_every_table_with_the_trigger_has_a_row_here():
    # a partner's bump trigger, whichever function it runs (sql/020 gave some their own)
    on = {r[0] for r in db_all(
        "SELECT c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
        "JOIN pg_proc f ON f.oid = t.tgfoid "
        "WHERE t.tgname LIKE '%\\_bump\\_version' AND f.proname <> 'bump_catalog'")}
    assert "benefits" in on and "audit_events" in on
    assert on == set(CHANGES), f"tables without a row: {on - set(CHANGES)}"


@pytest.mark.parametrize("table", sorted(CHANGES))
def test_each_change_bumps_its_partner_once(db, fresh, table):
    other = fresh_partner()
    for change in CHANGES[table]:
        stmts = change if isinstance(change, list) else [change]
        got = _bumps(db, stmts, fresh, [fresh["p"], other.partner])
        assert got == [1, 0], f"{stmts}: moved {got}"


def test_deleting_a_seat_bumps_once_through_its_benefit(db, fresh):
    cur = db.cursor()
    cur.execute("INSERT INTO seat_assignments (benefit_id, user_id, assigned_by) "
                "VALUES (%(b)s, %(u)s, 'test')", fresh)
    try:
        assert _bumps(db, ["DELETE FROM seat_assignments WHERE benefit_id = %(b)s "
                           "AND user_id = %(u)s"], fresh, [fresh["p"]]) == [1]
        assert _bumps(db, ["UPDATE seat_assignments SET assigned_by = 'moved' "
                           "WHERE benefit_id = %(b)s AND user_id = %(u)s"],
                      fresh, [fresh["p"]]) == [1]
    finally:
        cur.execute("DELETE FROM seat_assignments WHERE benefit_id = %(b)s "
                    "AND user_id = %(u)s", fresh)


def test_a_row_moved_to_another_partner_bumps_both(db, fresh):
    other = fresh_partner()
    args = dict(fresh, o=other.partner, ok=other.benefits[WINDOWS_SERVER])
    # through partner_id
    assert _bumps(db, ["UPDATE users SET partner_id = %(o)s WHERE id = %(u)s"], args,
                  [fresh["p"], other.partner]) == [1, 1]
    # through benefit_id: a key handed from one partner's benefit to the other's
    assert _bumps(db, CHANGES["license_keys"][0] +
                  ["UPDATE license_keys SET benefit_id = %(ok)s WHERE benefit_id = %(k)s"],
                  args, [fresh["p"], other.partner]) == [1, 1]


def test_time_marks_follow_the_instants_only(db, fresh):
    cur = db.cursor()
    cur.execute("BEGIN")
    try:
        cur.execute("UPDATE benefits SET used = used WHERE id = %(b)s", fresh)
        cur.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cur.execute("SELECT time_marks::text FROM partner_versions WHERE partner_id = %(p)s", fresh)
        marks = cur.fetchone()[0]
        cur.execute("SELECT set_config('mb.v_done', '', true)")
        cur.execute("UPDATE benefits SET expires_at = '2031-02-03T04:05:06Z' WHERE id = %(b)s",
                    fresh)
        cur.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cur.execute("SELECT time_marks::text FROM partner_versions WHERE partner_id = %(p)s", fresh)
        now = cur.fetchone()[0]
        assert "2031-02-03" in now and "2031-02-03" not in marks
    finally:
        cur.execute("ROLLBACK")


def test_the_partner_row_bumps_once_for_its_own_change(db, fresh):
    assert _bumps(db, ["UPDATE partners SET name = name || '.' WHERE id = %(p)s"], fresh,
                  [fresh["p"]]) == [1]
    # an UPDATE that changes nothing shows nothing new (sql/019: WHEN OLD.* IS DISTINCT FROM NEW.*)
    assert _bumps(db, ["UPDATE partners SET name = name WHERE id = %(p)s"], fresh,
                  [fresh["p"]]) == [0]
    assert _bumps(db, [CHANGES["audit_events"][0]], fresh, [fresh["p"]]) == [1]


def test_the_version_row_follows_the_partner_location_and_lives_with_the_partner():
    """partner_versions carries the one partner column the version read needs (sql/019): a new
    partner gets its row, a moved membership its location, in the same transaction."""
    f = fresh_partner()
    q = "SELECT membership_location, data_version FROM partner_versions WHERE partner_id = %s"
    [(location, version)] = db_all(q, f.partner)
    assert location == "partner_center"
    db_all("UPDATE partners SET membership_location = 'pmc' WHERE id = %s RETURNING id", f.partner)
    assert db_all(q, f.partner) == [("pmc", version + 1)]
    assert db_all("SELECT count(*) FROM partners p FULL JOIN partner_versions v "
                  "ON v.partner_id = p.id AND v.membership_location = p.membership_location "
                  "WHERE p.id IS NULL OR v.partner_id IS NULL") == [(0,)]


@pytest.mark.parametrize("order", ["audit first", "seat first"])
def test_a_seat_and_another_row_of_its_partner_bump_once(db, fresh, order):
    """sql/020: the seat's benefit bumps in place (its document edited) and records it like
    bump_partner does; the audit row's bump then finds it, and the other way round."""
    pair = [CHANGES["audit_events"][0], CHANGES["seat_assignments"][0]]
    if order == "seat first":
        pair.reverse()
    assert _bumps(db, pair, fresh, [fresh["p"]]) == [1]


def _refused(db, sql: str, args: dict) -> tuple[str, str]:
    """(SQLSTATE, constraint) of the statement's error; the transaction rolled back."""
    import psycopg2
    cur = db.cursor()
    cur.execute("BEGIN")
    try:
        cur.execute(sql, args)
        cur.execute("SET CONSTRAINTS ALL IMMEDIATE")
    except psycopg2.Error as e:
        return e.pgcode, e.diag.constraint_name
    finally:
        cur.execute("ROLLBACK")
    raise AssertionError(f"not refused: {sql}")


def test_the_checks_moved_out_of_the_rows_still_refuse(db, fresh):
    """sql/020 took three CHECKs off the rows a seat request writes (PostgreSQL prepares them
    again in every statement): what they refused is still refused, with the same SQLSTATE."""
    ins = ("INSERT INTO benefits (partner_id, purchase_id, product_id, category, quantity) "
           "VALUES (%(p)s, %(pu)s, %(wp)s, {}, {})")
    assert _refused(db, ins.format("'hardware'", 1), fresh) == ("23503", "benefits_category_fkey")
    assert _refused(db, ins.format("'software'", 0), fresh) == (
        "23514", "benefits_used_within_quantity")
    assert _refused(db, "UPDATE benefits SET used = quantity + 1 WHERE id = %(b)s", fresh) == (
        "23514", "benefits_used_within_quantity")
    assert _refused(db, "SELECT emit_event_data(%(p)s, 'Not a type', 'benefit', %(b)s, 'test', "
                        "'{}')", fresh) == ("23514", "events_type_check")
    ok = _bumps(db, ["SELECT emit_event_data(%(p)s, 'seat.assigned', 'benefit', %(b)s, 'test', "
                     "'{}')"], fresh, [fresh["p"]])
    assert ok == [0]  # an event is no change of what reads show
