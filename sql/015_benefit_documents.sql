-- Issue 17: benefit documents kept in a table, so that a read PostgreSQL has to answer (a cache
-- miss, a read right after a write) pages through one table instead of building every document
-- of the page again (product, revision, purchase, latest activation, Go-To-Market eligibility).
--
-- benefit_docs (the view, 014) stays the one definition of a document. benefit_documents holds
-- its rows; deferred triggers on every table a document shows write the documents a
-- transaction changed again, at its commit, from that view. benefit_docs_fast is what the
-- partner reads (src/routes/core.c, summary.c, exports.c) page through: the stored row while it
-- holds, the view's row after (see valid_until). Write transactions that answer a document
-- read the view itself: their own documents are written only at their commit.
--
-- Concurrency: two transactions changing rows that one document shows each write the document
-- at their commit. Those of one partner already queue at its data version's row (sql/007, whose
-- trigger names sort first), but a catalog edit writes the documents of every partner that
-- bought the product, holding none of their rows. So the writer locks the document row first
-- and reads the view in a new statement: under READ COMMITTED that snapshot is taken after the
-- lock wait and sees the other commit, and the document ends as both commits left it
-- (tests/api/test_benefit_documents.py).
--
-- The clock: a document shows `status` (expired once term_end or expires_at passes) and
-- Go-To-Market `eligibility` (competencies that expire). valid_until is the first of those
-- instants after the document was written; from then on readers get the view's row, and the
-- scheduler (src/events/scheduler.c) writes such documents again.

CREATE TABLE benefit_documents (
    id          uuid PRIMARY KEY REFERENCES benefits (id) ON DELETE CASCADE,
    partner_id  uuid NOT NULL,
    category    text NOT NULL,
    purchase_id uuid NOT NULL,
    status      text NOT NULL,
    doc         json NOT NULL,
    expires_on  timestamptz,
    quantity    integer NOT NULL,
    used        integer NOT NULL,
    valid_until timestamptz -- NULL: the document holds whatever the time
) WITH (fillfactor = 80);
CREATE INDEX benefit_documents_partner_idx ON benefit_documents (partner_id, id);
CREATE INDEX benefit_documents_valid_idx ON benefit_documents (valid_until);

-- A document as the view builds it now, with the instant it stops holding.
CREATE VIEW benefit_document_rows AS
SELECT d.id, d.partner_id, d.category, d.purchase_id, d.status, d.doc, d.expires_on,
       d.quantity, d.used,
       LEAST(CASE WHEN d.status IN ('available', 'pending', 'active') AND d.expires_on > now()
                  THEN d.expires_on END,
             CASE WHEN d.category = 'go_to_market' THEN (
                 SELECT min(c.expires_at) FROM partner_competencies c
                 WHERE c.partner_id = d.partner_id AND c.expires_at > now()) END) AS valid_until
FROM benefit_docs d;

-- Writes one benefit's document again, once per transaction: every call runs at commit and
-- sees the same rows, so a document this transaction already wrote (its row's xmin is this
-- transaction's id) is skipped. Not a custom setting per benefit: PostgreSQL 15 keeps every
-- setting name a session ever used and sorts them all again for each new one (sql/012); and
-- not one setting listing them, which a catalog edit of thousands of documents would make
-- quadratic.
CREATE FUNCTION write_benefit_document(bid uuid) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    mine boolean;
BEGIN
    IF bid IS NULL THEN
        RETURN;
    END IF;
    -- the lock first; the read below is a new statement, with a snapshot taken after it
    SELECT xmin::text::bigint = (txid_current() & 4294967295) INTO mine
    FROM benefit_documents WHERE id = bid FOR UPDATE;
    IF mine THEN
        RETURN;
    END IF;
    INSERT INTO benefit_documents AS t
    SELECT * FROM benefit_document_rows WHERE id = bid
    ON CONFLICT (id) DO UPDATE SET
        partner_id = EXCLUDED.partner_id, category = EXCLUDED.category,
        purchase_id = EXCLUDED.purchase_id, status = EXCLUDED.status, doc = EXCLUDED.doc,
        expires_on = EXCLUDED.expires_on, quantity = EXCLUDED.quantity, used = EXCLUDED.used,
        valid_until = EXCLUDED.valid_until;
END
$$;

-- The documents a changed row shows in.
CREATE FUNCTION benefit_documents_of_row() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    r record;
    bid uuid;
BEGIN
    IF TG_OP = 'DELETE' THEN
        r := OLD;
    ELSE
        r := NEW;
    END IF;
    CASE TG_TABLE_NAME
    WHEN 'benefits' THEN
        PERFORM write_benefit_document(r.id);
    WHEN 'activations' THEN
        PERFORM write_benefit_document(r.benefit_id);
        IF TG_OP = 'UPDATE' THEN -- an activation moved to another benefit (never by the API)
            PERFORM write_benefit_document(OLD.benefit_id);
        END IF;
    WHEN 'purchases' THEN
        FOR bid IN SELECT id FROM benefits WHERE purchase_id = r.id ORDER BY id LOOP
            PERFORM write_benefit_document(bid);
        END LOOP;
    WHEN 'products' THEN
        FOR bid IN SELECT id FROM benefits WHERE product_id = r.id ORDER BY id LOOP
            PERFORM write_benefit_document(bid);
        END LOOP;
    WHEN 'product_revisions' THEN
        FOR bid IN SELECT id FROM benefits WHERE product_rev = r.id ORDER BY id LOOP
            PERFORM write_benefit_document(bid);
        END LOOP;
    WHEN 'partners' THEN -- co_sell_ready: the Go-To-Market eligibility
        FOR bid IN SELECT id FROM benefits WHERE partner_id = r.id AND category = 'go_to_market'
                   ORDER BY id LOOP
            PERFORM write_benefit_document(bid);
        END LOOP;
    ELSE -- partner_competencies: the Go-To-Market eligibility
        FOR bid IN SELECT id FROM benefits
                   WHERE partner_id = r.partner_id AND category = 'go_to_market' ORDER BY id LOOP
            PERFORM write_benefit_document(bid);
        END LOOP;
    END CASE;
    RETURN NULL;
END
$$;

CREATE CONSTRAINT TRIGGER benefits_documents AFTER INSERT OR UPDATE ON benefits
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION benefit_documents_of_row();
CREATE CONSTRAINT TRIGGER activations_documents AFTER INSERT OR UPDATE OR DELETE ON activations
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION benefit_documents_of_row();
CREATE CONSTRAINT TRIGGER purchases_documents AFTER UPDATE ON purchases
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION benefit_documents_of_row();
CREATE CONSTRAINT TRIGGER products_documents AFTER UPDATE ON products
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION benefit_documents_of_row();
CREATE CONSTRAINT TRIGGER product_revisions_documents AFTER UPDATE ON product_revisions
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION benefit_documents_of_row();
CREATE CONSTRAINT TRIGGER partner_competencies_documents
    AFTER INSERT OR UPDATE OR DELETE ON partner_competencies
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION benefit_documents_of_row();
CREATE CONSTRAINT TRIGGER partners_documents AFTER UPDATE OF co_sell_ready ON partners
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    WHEN (OLD.co_sell_ready IS DISTINCT FROM NEW.co_sell_ready)
    EXECUTE FUNCTION benefit_documents_of_row();

-- The documents whose time has passed, written again, at most max_rows of them (the scheduler,
-- src/events/scheduler.c): how many were written.
CREATE FUNCTION write_due_benefit_documents(max_rows integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    bid uuid;
    n integer := 0;
BEGIN
    FOR bid IN SELECT id FROM benefit_documents WHERE valid_until <= now()
               ORDER BY valid_until LIMIT max_rows LOOP
        PERFORM write_benefit_document(bid);
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;

-- A document as the view builds it now, for a row whose instant has passed. A function of its
-- own, in PL/pgSQL so that it is not inlined: the view below then costs the planner and the
-- executor's start-up one function call, not the whole document query (six tables and the
-- eligibility's sub-plans), in every read (pgbench of a list page: 6 400 -> 9 600 tps).
CREATE FUNCTION benefit_document_now(bid uuid, OUT status text, OUT doc json)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    SELECT d.status, d.doc INTO status, doc FROM benefit_docs d WHERE d.id = bid;
END
$$;

-- What the partner reads page through: the stored document while it holds, the view's after.
-- One scan of the partner's rows in id order (a page stops at its limit).
CREATE VIEW benefit_docs_fast AS
SELECT m.id, m.partner_id, m.category, m.purchase_id,
       CASE WHEN m.valid_until IS NULL OR m.valid_until > now() THEN m.status
            ELSE (benefit_document_now(m.id)).status END AS status,
       CASE WHEN m.valid_until IS NULL OR m.valid_until > now() THEN m.doc
            ELSE (benefit_document_now(m.id)).doc END AS doc,
       m.expires_on, m.quantity, m.used
FROM benefit_documents m;

INSERT INTO benefit_documents SELECT * FROM benefit_document_rows;
