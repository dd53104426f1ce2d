"""A seat-only change of a benefit edits its stored document instead of writing it again from the
view (sql/018_seat_documents.sql): the document's `status` and `used`, and the columns beside
them. Each test holds the stored text to the view's, byte for byte, and tells the two ways apart:
a document written from the view in a transaction carries that transaction's id in written_in;
an edit leaves written_in as it was, so the row's xmin differs from it."""
from __future__ import annotations

from fresh_partner import VS_ENTERPRISE, fresh_partner
from helpers import db_all, db_connect, db_exec, db_one, db_val

EXEMPT = {"used", "status", "activated_at"}  # what a seat changes; activated_at shows nowhere


def same_as_view(bid: str) -> bool:
    return db_val("SELECT (m.doc::text, m.status, m.used, m.valid_until) IS NOT DISTINCT FROM "
                  "(d.doc::text, d.status, d.used, d.valid_until) FROM benefit_documents m "
                  "JOIN benefit_document_rows d ON d.id = m.id WHERE m.id = %s", bid)


def edited(bid: str) -> bool:
    """The document's row was last changed by an edit, not written from the view."""
    return db_val("SELECT (written_in::text::bigint & 4294967295) <> xmin::text::bigint "
                  "FROM benefit_documents WHERE id = %s", bid)


def shown(bid: str) -> tuple:
    return db_one("SELECT doc->>'status', (doc->>'used')::int FROM benefit_documents "
                  "WHERE id = %s", bid)


def test_assigning_and_removing_a_seat_edit_the_document(base):
    f = fresh_partner()
    ga, bid, emp = f.client(base), f.benefits[VS_ENTERPRISE], f.users["employee"]
    assert shown(bid) == ("available", 0) and not edited(bid)
    r = ga.post(f.path(f"/benefits/{bid}/assignments"), json={"user_id": emp})
    assert r.status_code == 201, r.text
    assert shown(bid) == ("active", 1) and edited(bid) and same_as_view(bid)
    assert ga.get(f.path(f"/benefits/{bid}")).json()["used"] == 1
    r = ga.delete(f.path(f"/benefits/{bid}/assignments/{emp}"))
    assert r.status_code == 204, r.text
    assert shown(bid) == ("available", 0) and edited(bid) and same_as_view(bid)
    assert ga.get(f.path(f"/benefits/{bid}")).json()["status"] == "available"


def test_the_seat_only_test_names_every_other_column_of_benefits():
    """A column added to benefits is shown by documents until proven otherwise: the trigger must
    compare it, or a change of it alone would be taken for a seat's and only edited."""
    columns = {c for (c,) in db_all("SELECT column_name FROM information_schema.columns "
                                    "WHERE table_schema = 'public' AND table_name = 'benefits'")}
    src = db_val("SELECT prosrc FROM pg_proc WHERE proname = 'benefit_changed'")
    assert EXEMPT <= columns
    missing = [c for c in sorted(columns - EXEMPT) if f"OLD.{c}," not in src and
               f"OLD.{c})" not in src]
    assert missing == []


def test_another_column_changed_with_used_writes_from_the_view():
    f = fresh_partner()
    bid = f.benefits[VS_ENTERPRISE]
    db_exec("UPDATE benefits SET used = 1, status = 'active', quantity = quantity + 3 "
            "WHERE id = %s", bid)
    assert not edited(bid) and same_as_view(bid) and shown(bid) == ("active", 1)


def _in_one_transaction(stmts: list[str], args: tuple) -> None:
    conn = db_connect()
    conn.autocommit = False
    try:
        with conn.cursor() as cur:
            for s in stmts:
                cur.execute(s, args)
        conn.commit()
    finally:
        conn.close()


SEAT = ("INSERT INTO seat_assignments (benefit_id, user_id, assigned_by) "
        "SELECT %(b)s, %(u)s, 'test'")
UNSEAT = "DELETE FROM seat_assignments WHERE benefit_id = %(b)s AND user_id = %(u)s"
TERM = "UPDATE purchases SET term_end = term_end + interval '1 day' WHERE id = %(pu)s"


def test_a_seat_and_another_change_in_one_transaction_write_from_the_view_whatever_the_order():
    """The edit fires first in one order, the view's write first in the other: either way the
    document is the view's at commit (the edit does not make the view's write skip it)."""
    f = fresh_partner()
    args = {"b": f.benefits[VS_ENTERPRISE], "u": f.users["employee"], "pu": f.purchase}
    term = db_val("SELECT doc->>'term_end' FROM benefit_documents WHERE id = %s", args["b"])
    _in_one_transaction([SEAT, TERM], args)
    assert shown(args["b"]) == ("active", 1) and same_as_view(args["b"])
    assert db_val("SELECT doc->>'term_end' FROM benefit_documents WHERE id = %s",
                  args["b"]) != term
    _in_one_transaction([TERM, UNSEAT], args)
    assert shown(args["b"]) == ("available", 0) and same_as_view(args["b"])
    assert not edited(args["b"])


def test_a_document_the_clock_made_expired_is_written_from_the_view():
    """Its status is not the row's: the edit cannot tell what it shows, the view can."""
    f = fresh_partner()
    bid, emp = f.benefits[VS_ENTERPRISE], f.users["employee"]
    db_exec("UPDATE purchases SET term_end = now() - interval '1 second' WHERE id = %s",
            f.purchase)
    assert shown(bid) == ("expired", 0)
    db_exec(SEAT.replace("%(b)s", "%s").replace("%(u)s", "%s"), bid, emp)
    assert shown(bid) == ("expired", 1) and not edited(bid) and same_as_view(bid)
