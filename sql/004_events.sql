-- Events (DESIGN §4b): a transactional outbox. Every state change writes its
-- event row in its own transaction, so an event exists if and only if the
-- change committed.

-- Event ids increase in commit order per partner. A sequence value is taken
-- when a statement runs, not when its transaction commits, so a reader could
-- see id 8 before id 7 commits and skip 7 for good. The counter row of the
-- partner is updated in the transaction instead: its row lock is held until
-- commit, so the next transaction of that partner gets the next number only
-- after this one has committed (or rolled back, taking its number with it).
CREATE TABLE event_counters (
    partner_id uuid PRIMARY KEY REFERENCES partners (id) ON DELETE CASCADE,
    last_seq bigint NOT NULL
);

CREATE TABLE events (
    partner_id uuid NOT NULL REFERENCES partners (id) ON DELETE CASCADE,
    seq bigint NOT NULL CHECK (seq > 0),
    type text NOT NULL CHECK (type ~ '^[a-z_]+\.[a-z_]+$'),
    occurred_at timestamptz NOT NULL DEFAULT now(),
    subject_type text NOT NULL,
    subject_id text NOT NULL,
    data jsonb NOT NULL,
    request_id text,
    -- scheduled events: what occasion they are for (one event per occasion)
    occasion text,
    PRIMARY KEY (partner_id, seq)
);
CREATE UNIQUE INDEX events_occasion_idx ON events (partner_id, type, occasion)
    WHERE occasion IS NOT NULL;
CREATE INDEX events_occurred_idx ON events (occurred_at);

-- The API's id of an event: its number, zero-padded so that ids compare the
-- same as strings and as numbers.
CREATE FUNCTION event_id(seq bigint) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT lpad(seq::text, 12, '0')
$$;

CREATE VIEW event_docs AS
SELECT e.partner_id, e.seq, e.type,
       json_build_object('id', event_id(e.seq), 'type', e.type, 'occurred_at', e.occurred_at,
                         'partner_id', e.partner_id,
                         'subject', json_build_object('type', e.subject_type, 'id', e.subject_id),
                         'data', e.data, 'request_id', e.request_id) AS doc
FROM events e;

-- Writes one event in the calling transaction and returns its number. data is
-- the subject as its GET shows it (the views of 002_views.sql); extra carries
-- what the subject alone does not say (the user of a seat) and is the data of
-- a subject that no longer exists. Never give it a license key.
CREATE FUNCTION emit_event(p_partner uuid, p_type text, p_subject_type text, p_subject_id text,
                           p_request_id text, p_extra jsonb DEFAULT NULL,
                           p_occasion text DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    d jsonb;
    n bigint;
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
    END IF;
    d := COALESCE(d, p_extra);
    IF d IS NULL THEN
        RAISE EXCEPTION 'event % of % %: no data', p_type, p_subject_type, p_subject_id;
    END IF;
    INSERT INTO event_counters AS c (partner_id, last_seq) VALUES (p_partner, 1)
    ON CONFLICT (partner_id) DO UPDATE SET last_seq = c.last_seq + 1
    RETURNING last_seq INTO n;
    INSERT INTO events (partner_id, seq, type, subject_type, subject_id, data, request_id, occasion)
    VALUES (p_partner, n, p_type, p_subject_type, p_subject_id, d, p_request_id, p_occasion);
    -- Delivered at commit only: listeners wake for committed events.
    PERFORM pg_notify('mb_events', p_partner::text || ':' || n::text);
    RETURN n;
END
$$;
