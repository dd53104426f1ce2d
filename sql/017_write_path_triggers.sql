-- The write path, second round (issue 17: "writes no slower, although every write now bumps a
-- version"). What a seat assignment or removal paid for the data version and the events, and
-- what is now skipped (README "Performance": pgbench of the seat cycle, postgres CPU per pair):
--
-- 1. The seat row's own version trigger. A seat inserted or deleted always changes its benefit
--    row (the seat_assignments trigger counts `used`, sql/016), whose trigger bumps the same
--    partner: the seat's trigger only queued a second bump that found the partner done. It now
--    fires on UPDATE only (a seat row that moves to another benefit), which changes no count.
-- 2. bump_partner_of_row (sql/007) read the partner and the instants of every row through
--    to_jsonb(NEW) and to_jsonb(OLD), a whole-row conversion per trigger. PL/pgSQL compiles a
--    trigger function once per table, so it can name the columns: the table's name says which
--    it has.
-- 3. The partner row's own trigger (a change to the partner itself bumps its version) compared
--    the whole row as jsonb twice on every bump as well. A bump changes data_version, so the
--    trigger now runs only for updates that leave data_version alone.
-- 4. A seat.assigned event read the assignment's document through the view again, right after
--    the route had read it for its answer: emit_event_data takes data the caller already has
--    (src/routes/seats.c), and emit_event is the lookup and then that.
-- 5. The mail trigger of the events ran a function for every event to find the three
--    activation types it mails about: a WHEN condition now decides without a call.

DROP TRIGGER seat_assignments_bump_version ON seat_assignments;
CREATE CONSTRAINT TRIGGER seat_assignments_bump_version AFTER UPDATE ON seat_assignments
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION bump_partner_of_row();

-- The partner of the changed row: column partner_id, or through benefit_id (key_reveals,
-- seat_assignments, license_keys); the time marks with the instants of purchases, benefits and
-- competencies; on UPDATE the row's former partner as well, when it moved.
CREATE OR REPLACE FUNCTION bump_partner_of_row() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    r record;
    pid uuid;
    old_pid uuid;
    marks boolean := false;
BEGIN
    IF TG_OP = 'DELETE' THEN
        r := OLD;
    ELSE
        r := NEW;
    END IF;
    IF TG_TABLE_NAME IN ('key_reveals', 'seat_assignments', 'license_keys') THEN
        SELECT partner_id INTO pid FROM benefits WHERE id = r.benefit_id;
        IF TG_OP = 'UPDATE' AND OLD.benefit_id IS DISTINCT FROM NEW.benefit_id THEN
            SELECT partner_id INTO old_pid FROM benefits WHERE id = OLD.benefit_id;
        END IF;
    ELSE
        pid := r.partner_id;
        IF TG_OP = 'UPDATE' THEN
            old_pid := OLD.partner_id;
        END IF;
        -- the time marks change only with the instants themselves (a seat changes `used`)
        IF TG_TABLE_NAME IN ('benefits', 'partner_competencies') THEN
            marks := TG_OP <> 'UPDATE' OR OLD.expires_at IS DISTINCT FROM NEW.expires_at;
        ELSIF TG_TABLE_NAME = 'purchases' THEN
            marks := TG_OP <> 'UPDATE' OR OLD.term_end IS DISTINCT FROM NEW.term_end;
        END IF;
    END IF;
    PERFORM bump_partner(pid, marks);
    IF old_pid IS DISTINCT FROM pid THEN
        PERFORM bump_partner(old_pid, marks);
    END IF;
    RETURN NULL;
END
$$;

DROP TRIGGER partners_bump_version ON partners;
CREATE TRIGGER partners_bump_version BEFORE UPDATE ON partners
    FOR EACH ROW WHEN (OLD.data_version = NEW.data_version) EXECUTE FUNCTION bump_partner_self();

-- Numbers, writes and announces an event whose data the caller has: the part of emit_event
-- after the lookup (sql/004_events.sql says why each step is there).
CREATE FUNCTION emit_event_data(p_partner uuid, p_type text, p_subject_type text,
                                p_subject_id text, p_request_id text, p_data jsonb,
                                p_occasion text DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
BEGIN
    IF p_data IS NULL THEN
        RAISE EXCEPTION 'event % of % %: no data', p_type, p_subject_type, p_subject_id;
    END IF;
    INSERT INTO event_counters AS c (partner_id, last_seq) VALUES (p_partner, 1)
    ON CONFLICT (partner_id) DO UPDATE SET last_seq = c.last_seq + 1
    RETURNING last_seq INTO n;
    IF p_occasion IS NOT NULL AND EXISTS (SELECT 1 FROM events WHERE partner_id = p_partner
                                          AND type = p_type AND occasion = p_occasion) THEN
        UPDATE event_counters SET last_seq = last_seq - 1 WHERE partner_id = p_partner;
        RETURN NULL;
    END IF;
    INSERT INTO events (partner_id, seq, type, subject_type, subject_id, data, request_id, occasion)
    VALUES (p_partner, n, p_type, p_subject_type, p_subject_id, p_data, p_request_id, p_occasion);
    PERFORM pg_notify('mb_events', p_partner::text || ':' || n::text);
    RETURN n;
END
$$;

-- The data of an event: the subject as its GET shows it. Volatile, as emit_event was: its reads
-- see what the statement calling it has changed so far.
CREATE FUNCTION event_data_of(p_type text, p_subject_type text, p_subject_id text, p_extra jsonb)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    d jsonb;
BEGIN
    IF p_type = 'seat.assigned' THEN
        SELECT doc INTO d FROM assignment_docs
        WHERE benefit_id = p_subject_id::uuid AND user_id = (p_extra ->> 'user_id')::uuid;
    ELSIF p_type IN ('seat.removed', 'user.deleted') THEN
        d := jsonb_build_object(CASE p_subject_type WHEN 'benefit' THEN 'benefit_id' ELSE 'id' END,
                                p_subject_id) || COALESCE(p_extra, '{}');
    ELSIF p_subject_type = 'purchase' THEN
        SELECT doc INTO d FROM purchase_docs WHERE id = p_subject_id::uuid;
    ELSIF p_subject_type = 'benefit' THEN
        SELECT doc INTO d FROM benefit_docs WHERE id = p_subject_id::uuid;
    ELSIF p_subject_type = 'user' THEN
        SELECT doc INTO d FROM user_docs WHERE id = p_subject_id::uuid;
    ELSIF p_subject_type = 'activation' THEN
        SELECT doc INTO d FROM activation_docs WHERE id = p_subject_id::uuid;
    ELSIF p_subject_type = 'support_request' THEN
        SELECT doc INTO d FROM support_request_docs WHERE id = p_subject_id::uuid;
    ELSIF p_subject_type = 'marketing_contact' THEN
        SELECT doc INTO d FROM marketing_contact_docs WHERE partner_id = p_subject_id::uuid;
    ELSIF p_subject_type = 'webhook' THEN
        SELECT doc INTO d FROM webhook_docs WHERE id = p_subject_id::uuid;
    END IF;
    RETURN COALESCE(d, p_extra);
END
$$;

CREATE OR REPLACE FUNCTION emit_event(p_partner uuid, p_type text, p_subject_type text,
                                      p_subject_id text, p_request_id text,
                                      p_extra jsonb DEFAULT NULL, p_occasion text DEFAULT NULL)
RETURNS bigint LANGUAGE sql AS $$
    SELECT emit_event_data(p_partner, p_type, p_subject_type, p_subject_id, p_request_id,
                           event_data_of(p_type, p_subject_type, p_subject_id, p_extra),
                           p_occasion)
$$;

DROP TRIGGER events_mail ON events;
CREATE TRIGGER events_mail AFTER INSERT ON events FOR EACH ROW
    WHEN (NEW.type IN ('activation.requested', 'activation.completed', 'activation.rejected'))
    EXECUTE FUNCTION events_mail();
