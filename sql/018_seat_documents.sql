-- The write path, third round (issue 17: "writes no slower"). A seat assigned or removed changes
-- its benefit's `used` and, for the first seat or the last, `status` (available <-> active: the
-- seat trigger, sql/016). Its document was written again at commit from the view
-- (write_benefit_document, sql/015): six tables, the eligibility and the latest activation read
-- to change two numbers: the largest single part of what postgres did for a seat request.
-- With the two calls the data-version trigger skips (sql/019), this takes 18 % of the
-- instructions of the seat cycle's transactions away (README "Performance", eighth round).
--
-- Such a change now edits the stored document instead: the two fields in its text, and the
-- columns beside it. json_build_object (sql/014) writes a document as
-- `..., "status" : "<s>", "quantity" : <q>, "used" : <u>, ...`: that run of text can only be the
-- document's own three fields (a string value cannot hold an unescaped quote), and the edit
-- replaces exactly it. The edit is taken only when the document shows what the row showed:
-- its status is the row's own (not one the clock overrides: `expired`, whose document is read
-- from the view, sql/015 valid_until) and its text holds the run; else the document is written
-- from the view as before. tests/api/test_zz_documents.py still holds every stored document to
-- the view, byte for byte.
--
-- Which updates are seat-only is decided in the trigger's function: every column of benefits but
-- used, status and activated_at (activated_at is in no document) unchanged, and both statuses
-- available or active. Not in a WHEN condition: PostgreSQL reads a WHEN from its stored text
-- again in every statement that queues the trigger. tests/api/test_seat_documents.py fails when
-- a column is added to benefits and not to the comparison.
--
-- Once per transaction: a transaction that also changes something else of the document (a
-- purchase's term, a product's name) writes it from the view at commit, whichever of its
-- deferred triggers fires first. written_in marks a document written from the view in this
-- transaction (the edit leaves it alone): the edit skips such a document, and the view's write
-- no longer skips one this transaction only edited (the row's xmin, its test before, cannot
-- tell the two apart).

ALTER TABLE benefit_documents ADD COLUMN written_in xid8 NOT NULL DEFAULT pg_current_xact_id();

CREATE OR REPLACE FUNCTION write_benefit_document(bid uuid) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    mine boolean;
BEGIN
    IF bid IS NULL THEN
        RETURN;
    END IF;
    -- the lock first; the read below is a new statement, with a snapshot taken after it
    SELECT written_in = pg_current_xact_id() INTO mine
    FROM benefit_documents WHERE id = bid FOR UPDATE;
    IF mine THEN
        RETURN;
    END IF;
    INSERT INTO benefit_documents AS t
    SELECT r.*, pg_current_xact_id() FROM benefit_document_rows r WHERE r.id = bid
    ON CONFLICT (id) DO UPDATE SET
        partner_id = EXCLUDED.partner_id, category = EXCLUDED.category,
        purchase_id = EXCLUDED.purchase_id, status = EXCLUDED.status, doc = EXCLUDED.doc,
        expires_on = EXCLUDED.expires_on, quantity = EXCLUDED.quantity, used = EXCLUDED.used,
        valid_until = EXCLUDED.valid_until, written_in = EXCLUDED.written_in;
END
$$;

-- The run of a document's text that holds its status, quantity and used (sql/014's order).
-- STABLE, as the integers' text is: so the planner inlines it (an IMMUTABLE one is called).
CREATE FUNCTION seat_fields_text(s text, q integer, u integer) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT ', "status" : "' || s || '", "quantity" : ' || q || ', "used" : ' || u || ','
$$;

-- A benefit's document after a change of the benefit row: edited when the change is seat-only
-- (see above), else written from the view. At commit, like the others: it reads the benefit as
-- the transaction leaves it. The edit is one statement: the UPDATE locks the document, and
-- under READ COMMITTED it edits the newest committed text if it had to wait for another
-- writer's commit.
CREATE FUNCTION benefit_document_of_benefit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE'
       AND (OLD.id, OLD.partner_id, OLD.purchase_id, OLD.product_id, OLD.category, OLD.quantity,
            OLD.expires_at, OLD.access_id, OLD.contract_id, OLD.created_at, OLD.product_rev)
           IS NOT DISTINCT FROM
           (NEW.id, NEW.partner_id, NEW.purchase_id, NEW.product_id, NEW.category, NEW.quantity,
            NEW.expires_at, NEW.access_id, NEW.contract_id, NEW.created_at, NEW.product_rev)
       AND OLD.status IN ('available', 'active') AND NEW.status IN ('available', 'active') THEN
        UPDATE benefit_documents m SET status = b.status, used = b.used,
               doc = replace(m.doc::text, seat_fields_text(m.status, m.quantity, m.used),
                             seat_fields_text(b.status, m.quantity, b.used))::json
        FROM benefits b
        WHERE m.id = NEW.id AND b.id = NEW.id
          AND m.written_in <> pg_current_xact_id() -- written from the view already
          AND m.xmin::text::bigint <> (txid_current() & 4294967295) -- edited already
          AND m.status IN ('available', 'active') AND b.status IN ('available', 'active')
          AND m.quantity = b.quantity
          AND strpos(m.doc::text, seat_fields_text(m.status, m.quantity, m.used)) > 0;
        IF FOUND THEN
            RETURN NULL;
        END IF;
    END IF;
    -- not seat-only, not editable, or done already in this transaction (then this only locks
    -- and finds written_in, or writes the edited document once more from the view)
    PERFORM write_benefit_document(NEW.id);
    RETURN NULL;
END
$$;

DROP TRIGGER benefits_documents ON benefits;
CREATE CONSTRAINT TRIGGER benefits_documents AFTER INSERT OR UPDATE ON benefits
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION benefit_document_of_benefit();
