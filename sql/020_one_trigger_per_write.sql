-- The write path, fifth round (issue 17: "writes no slower, although every write now bumps a
-- version"). Counted in instructions (README "Performance", ninth round): what PostgreSQL does
-- per statement and per trigger call, around the few lines that matter.
--
-- 1. A seat request's transaction ran three of issue 17's trigger calls at commit: the benefit
--    row's bump, the benefit row's document, and the audit row's bump (which found the partner
--    bumped already). A PL/pgSQL call costs more than its lines suggest: its state is set up
--    again, and each of its expressions is prepared again once per transaction.
--    - The benefit row has one trigger, benefits_bump_version, that bumps and keeps the
--      document (benefit_changed: sql/018's document function with the bump in it). A seat-only
--      change, whose document is edited, bumps without the time marks (its instants are
--      unchanged), in place: bump_partner's plain case, without the call.
--    - The tables whose rows name their partner and hold no instant (the audit row is one) have
--      bump_partner_of_partner_row: a partner bumped already in the transaction is one test.
--    bump_partner (sql/019) stays the bump for every other case; the other tables keep
--    bump_partner_of_row. tests/api/test_write_path.py holds every table with a bump trigger to
--    "bumped, and once", whichever function it runs.
-- 2. PostgreSQL reads a table's CHECK constraints back from their stored text, and a trigger's
--    WHEN likewise, in every statement that writes a row (a list of strings is stored byte by
--    byte): 4 % of a seat request, for checks that its rows cannot fail.
--    - benefits: the category is a foreign key to benefit_categories now (checked only when it
--      is written, never on a seat's update); quantity > 0 is part of
--      benefits_used_within_quantity (one check instead of two).
--    - events: written only by emit_event_data, which checks the type now (sql/021).
--    - events_mail has no WHEN: its function tests the type first (as it did in sql/004).

CREATE FUNCTION bump_partner_of_partner_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM bump_partner(OLD.partner_id, false);
        RETURN NULL;
    END IF;
    -- bump_partner's record holds ' <partner id>v' or ' <partner id>m': either is a bump
    IF strpos(COALESCE(current_setting('mb.v_done', true), ''), NEW.partner_id::text) = 0 THEN
        PERFORM bump_partner(NEW.partner_id, false);
    END IF;
    IF TG_OP = 'UPDATE' AND OLD.partner_id IS DISTINCT FROM NEW.partner_id THEN
        PERFORM bump_partner(OLD.partner_id, false);
    END IF;
    RETURN NULL;
END
$$;

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['users', 'activations', 'marketing_contacts', 'support_requests',
                             'cancellation_requests', 'audit_events'] LOOP
        EXECUTE format('DROP TRIGGER %I ON %I', t || '_bump_version', t);
        EXECUTE format('CREATE CONSTRAINT TRIGGER %I AFTER INSERT OR UPDATE OR DELETE ON %I '
                       'DEFERRABLE INITIALLY DEFERRED FOR EACH ROW '
                       'EXECUTE FUNCTION bump_partner_of_partner_row()', t || '_bump_version', t);
    END LOOP;
END
$$;

-- sql/018's benefit_document_of_benefit, with the bump: the seat-only edit first, else the
-- bump (with the time marks when an instant is new) and the document from the view.
CREATE FUNCTION benefit_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN -- the document goes with the row (ON DELETE CASCADE)
        PERFORM bump_partner(OLD.partner_id, true);
        RETURN NULL;
    END IF;
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
            -- bump_partner(NEW.partner_id, false), in place
            IF strpos(COALESCE(current_setting('mb.v_done', true), ''), NEW.partner_id::text) = 0
            THEN
                PERFORM set_config('mb.v_done', COALESCE(current_setting('mb.v_done', true), '')
                                   || ' ' || NEW.partner_id::text || 'v', true);
                UPDATE partner_versions SET data_version = data_version + 1
                WHERE partner_id = NEW.partner_id;
            END IF;
            RETURN NULL;
        END IF;
    END IF;
    PERFORM bump_partner(NEW.partner_id,
                         TG_OP = 'INSERT' OR OLD.expires_at IS DISTINCT FROM NEW.expires_at);
    IF TG_OP = 'UPDATE' AND OLD.partner_id IS DISTINCT FROM NEW.partner_id THEN
        PERFORM bump_partner(OLD.partner_id, true);
    END IF;
    -- not seat-only, not editable, or done already in this transaction (then this only locks
    -- and finds written_in, or writes the edited document once more from the view)
    PERFORM write_benefit_document(NEW.id);
    RETURN NULL;
END
$$;

DROP TRIGGER benefits_documents ON benefits;
DROP TRIGGER benefits_bump_version ON benefits;
DROP FUNCTION benefit_document_of_benefit();
CREATE CONSTRAINT TRIGGER benefits_bump_version AFTER INSERT OR UPDATE OR DELETE ON benefits
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION benefit_changed();

-- 2. The checks.
CREATE TABLE benefit_categories (category text PRIMARY KEY);
INSERT INTO benefit_categories
VALUES ('software'), ('cloud'), ('visual_studio'), ('technical'), ('go_to_market');
ALTER TABLE benefits
    ADD CONSTRAINT benefits_category_fkey FOREIGN KEY (category) REFERENCES benefit_categories,
    DROP CONSTRAINT benefits_category_check,
    DROP CONSTRAINT benefits_quantity_check,
    DROP CONSTRAINT benefits_used_within_quantity,
    ADD CONSTRAINT benefits_used_within_quantity
        CHECK (used >= 0 AND used <= quantity AND quantity > 0);

-- (the event's checks: sql/021, with emit_event_data)
DROP TRIGGER events_mail ON events;
CREATE TRIGGER events_mail AFTER INSERT ON events FOR EACH ROW EXECUTE FUNCTION events_mail();
