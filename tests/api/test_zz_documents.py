"""Last (the name sorts it after every other test module): every benefit document the whole suite
left behind equals what its view builds now (sql/015_benefit_documents.sql). The suite's writes
(purchases, reveals, seats, activations, approvals, refunds, catalog and partner edits, the bulk
routes) all reach the table through its triggers; a table a document shows without a trigger, or
a trigger that misses a case, leaves a document here that differs from the view's."""
from helpers import db_all, db_val


def test_every_stored_benefit_document_equals_its_view():
    assert db_val("SELECT count(*) FROM benefits") > 0
    missing = db_all("SELECT b.id::text FROM benefits b LEFT JOIN benefit_documents m "
                     "ON m.id = b.id WHERE m.id IS NULL LIMIT 5")
    assert missing == []
    differ = db_all(
        "SELECT m.id::text, m.doc::text, d.doc::text FROM benefit_documents m "
        "JOIN benefit_document_rows d ON d.id = m.id "
        "WHERE (m.valid_until IS NULL OR m.valid_until > now()) "
        "AND (m.doc::text, m.status, m.partner_id, m.category, m.purchase_id, m.quantity, m.used, "
        "m.expires_on) IS DISTINCT FROM (d.doc::text, d.status, d.partner_id, d.category, "
        "d.purchase_id, d.quantity, d.used, d.expires_on) LIMIT 5")
    assert differ == []
