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
    ELSIF p_subject_type = 'webhook' THEN
        SELECT doc INTO d FROM webhook_docs WHERE id = p_subject_id::uuid;
    END IF;
    d := COALESCE(d, p_extra);
    IF d IS NULL THEN
        RAISE EXCEPTION 'event % of % %: no data', p_type, p_subject_type, p_subject_id;
    END IF;
    INSERT INTO event_counters AS c (partner_id, last_seq) VALUES (p_partner, 1)
    ON CONFLICT (partner_id) DO UPDATE SET last_seq = c.last_seq + 1
    RETURNING last_seq INTO n;
    -- A scheduled event is written once per occasion, however many processes
    -- try: under the counter's lock, one that committed first is seen here
    -- (and the unique index stops anything that slips past).
    IF p_occasion IS NOT NULL AND EXISTS (SELECT 1 FROM events WHERE partner_id = p_partner
                                          AND type = p_type AND occasion = p_occasion) THEN
        UPDATE event_counters SET last_seq = last_seq - 1 WHERE partner_id = p_partner;
        RETURN NULL;
    END IF;
    INSERT INTO events (partner_id, seq, type, subject_type, subject_id, data, request_id, occasion)
    VALUES (p_partner, n, p_type, p_subject_type, p_subject_id, d, p_request_id, p_occasion);
    -- Delivered at commit only: listeners wake for committed events.
    PERFORM pg_notify('mb_events', p_partner::text || ':' || n::text);
    RETURN n;
END
$$;

-- Webhooks (DESIGN §4b). The secret is stored encrypted under
-- KEY_ENCRYPTION_KEY (like the license keys), so a dump alone does not reveal
-- it; during a rotation the previous one keeps signing until old_until.
CREATE TABLE webhooks (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    partner_id uuid NOT NULL REFERENCES partners (id) ON DELETE CASCADE,
    url text NOT NULL CHECK (length(url) <= 2048),
    event_types text[] NOT NULL DEFAULT '{}',
    description text NOT NULL DEFAULT '' CHECK (length(description) <= 500),
    enabled boolean NOT NULL DEFAULT true,
    disabled_reason text,
    secret_enc bytea NOT NULL,
    old_secret_enc bytea,
    old_until timestamptz,
    -- the Idempotency-Key of the request that created it / last rotated its
    -- secret: a retry of that request answers the same secret again
    create_key text,
    rotate_key text,
    -- since when every delivery failed (NULL after a success)
    failing_since timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (partner_id, create_key)
);
CREATE INDEX webhooks_partner_idx ON webhooks (partner_id) WHERE enabled;

-- One row per (event, webhook): the outbox's fan-out, written with the event.
CREATE TABLE webhook_deliveries (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    webhook_id uuid NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    partner_id uuid NOT NULL,
    event_id text NOT NULL,
    event_type text NOT NULL,
    payload jsonb NOT NULL,
    status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'succeeded', 'failed')),
    attempts int NOT NULL DEFAULT 0,
    last_status_code int,
    last_error text,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    claimed_until timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    delivered_at timestamptz,
    UNIQUE (webhook_id, event_id)
);
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_hook_idx ON webhook_deliveries (webhook_id, created_at);

CREATE VIEW webhook_docs AS
SELECT w.id, w.partner_id,
       json_build_object('id', w.id, 'url', w.url, 'event_types', to_json(w.event_types),
                         'description', w.description, 'enabled', w.enabled,
                         'disabled_reason', w.disabled_reason,
                         'secret_rotating_until',
                         CASE WHEN w.old_until > now() THEN w.old_until END,
                         'created_at', w.created_at, 'updated_at', w.updated_at) AS doc
FROM webhooks w;

CREATE VIEW webhook_delivery_docs AS
SELECT d.id, d.webhook_id, d.partner_id, d.created_at,
       json_build_object('id', d.id, 'webhook_id', d.webhook_id, 'event_id', d.event_id,
                         'event_type', d.event_type, 'status', d.status, 'attempts', d.attempts,
                         'last_status_code', d.last_status_code, 'last_error', d.last_error,
                         'next_attempt_at', CASE WHEN d.status = 'pending' THEN d.next_attempt_at END,
                         'created_at', d.created_at, 'delivered_at', d.delivered_at) AS doc
FROM webhook_deliveries d;

-- Every event goes to each enabled webhook of its partner that wants its type.
CREATE FUNCTION events_fan_out() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_deliveries (webhook_id, partner_id, event_id, event_type, payload)
    SELECT w.id, NEW.partner_id, event_id(NEW.seq), NEW.type,
           (SELECT doc FROM event_docs e WHERE e.partner_id = NEW.partner_id AND e.seq = NEW.seq)
    FROM webhooks w
    WHERE w.partner_id = NEW.partner_id AND w.enabled
      AND (w.event_types = '{}' OR NEW.type = ANY (w.event_types));
    RETURN NULL;
END
$$;
CREATE TRIGGER events_fan_out AFTER INSERT ON events FOR EACH ROW EXECUTE FUNCTION events_fan_out();

-- Mail to the marketing contact (R9: "we will email instructions to your
-- marketing contact"): written by the outbox with the Go-To-Market activation
-- events, sent by the worker through SMTP_URL with the webhooks' retries.
CREATE TABLE mail_deliveries (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    partner_id uuid NOT NULL REFERENCES partners (id) ON DELETE CASCADE,
    event_id text NOT NULL,
    event_type text NOT NULL,
    to_addr text NOT NULL,
    subject text NOT NULL,
    body text NOT NULL,
    status text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'succeeded', 'failed', 'not_sent')),
    attempts int NOT NULL DEFAULT 0,
    last_error text,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    claimed_until timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    delivered_at timestamptz,
    UNIQUE (partner_id, event_id)
);
CREATE INDEX mail_deliveries_due_idx ON mail_deliveries (next_attempt_at) WHERE status = 'pending';

CREATE FUNCTION one_line(s text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT regexp_replace(COALESCE(s, ''), '[\r\n]+', ' ', 'g')
$$;

CREATE FUNCTION events_mail() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.type IN ('activation.requested', 'activation.completed', 'activation.rejected')
       AND NEW.data ->> 'kind' = 'go_to_market' THEN
        INSERT INTO mail_deliveries (partner_id, event_id, event_type, to_addr, subject, body)
        SELECT NEW.partner_id, event_id(NEW.seq), NEW.type, one_line(m.email),
               one_line('Go-To-Market offer "' || pr.name || '" for ' || p.name || ': ' ||
                        CASE NEW.type WHEN 'activation.requested' THEN 'request received'
                                      WHEN 'activation.completed' THEN 'activated'
                                      ELSE 'not approved' END),
               'Hello,' || E'\n\n' ||
               CASE NEW.type
                   WHEN 'activation.requested' THEN
                       p.name || ' (MPN ID ' || p.mpn_id || ') asked to activate the Go-To-Market offer "'
                       || pr.name || '". You are the company marketing contact: we will email you the '
                       || 'instructions once the program team has processed the request.'
                   WHEN 'activation.completed' THEN
                       'The Go-To-Market offer "' || pr.name || '" of ' || p.name || ' (MPN ID '
                       || p.mpn_id || ') is active' ||
                       COALESCE(' until ' || to_char((NEW.data ->> 'expires_at')::timestamptz
                                                     AT TIME ZONE 'UTC', 'YYYY-MM-DD'), '') || '.'
                       || E'\n\nAccess ID: ' || COALESCE(NEW.data ->> 'access_id', '-')
                       || E'\nContract ID: ' || COALESCE(NEW.data ->> 'contract_id', '-')
                       || CASE WHEN pr.instructions <> '' THEN E'\n\nInstructions:\n' || pr.instructions
                               ELSE '' END
                       || COALESCE(E'\n\n' || pr.portal_url, '')
                   ELSE
                       'The request of ' || p.name || ' (MPN ID ' || p.mpn_id
                       || ') for the Go-To-Market offer "' || pr.name || '" was not approved: '
                       || COALESCE(NEW.data ->> 'reason', 'no reason given') || '.'
               END || E'\n\n-- Microsoft Partner Network benefits\n'
        FROM marketing_contacts m
        JOIN partners p ON p.id = m.partner_id
        JOIN benefits b ON b.id = (NEW.data ->> 'benefit_id')::uuid
        JOIN products pr ON pr.id = b.product_id
        WHERE m.partner_id = NEW.partner_id;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER events_mail AFTER INSERT ON events FOR EACH ROW EXECUTE FUNCTION events_mail();

-- Scheduled events (DESIGN §4b): what is due now, one row per occasion not yet
-- written. The scheduler (src/events/scheduler.c) writes each with emit_event.
CREATE VIEW scheduled_event_candidates AS
SELECT b.partner_id, 'benefit.expiring'::text AS type, 'benefit'::text AS subject_type,
       b.id::text AS subject_id, 'expiring:' || b.id || ':' || x.at AS occasion
FROM benefits b
JOIN purchases pu ON pu.id = b.purchase_id
CROSS JOIN LATERAL (SELECT LEAST(COALESCE(b.expires_at, pu.term_end), pu.term_end) AS at) x
WHERE b.status IN ('available', 'pending', 'active') AND pu.status = 'active'
  AND x.at > now() AND x.at <= now() + interval '30 days'
UNION ALL
SELECT pu.partner_id, 'purchase.renewal_open', 'purchase', pu.id::text,
       'renewal_open:' || pu.id || ':' || pu.term_end
FROM purchases pu
WHERE pu.status = 'active' AND pu.term_end > now() AND pu.term_end <= now() + interval '90 days'
UNION ALL
SELECT pu.partner_id, 'purchase.refund_window_closing', 'purchase', pu.id::text,
       'refund_window_closing:' || pu.id || ':' || pu.purchased_at
FROM purchases pu
WHERE pu.status = 'active' AND pu.term_end > now()
  AND pu.purchased_at + interval '30 days' > now()
  AND pu.purchased_at + interval '27 days' <= now()
  -- still eligible (R10): no software key handed out
  AND NOT EXISTS (SELECT 1 FROM license_keys lk JOIN benefits b ON b.id = lk.benefit_id
                  WHERE b.purchase_id = pu.id AND b.category = 'software')
  AND NOT EXISTS (SELECT 1 FROM key_reveals kr JOIN benefits b ON b.id = kr.benefit_id
                  WHERE b.purchase_id = pu.id AND b.category = 'software');

CREATE VIEW mail_delivery_docs AS
SELECT m.id, m.partner_id, m.status, m.created_at,
       json_build_object('id', m.id, 'partner_id', m.partner_id, 'event_id', m.event_id,
                         'event_type', m.event_type, 'to', m.to_addr, 'subject', m.subject,
                         'status', m.status, 'attempts', m.attempts, 'last_error', m.last_error,
                         'next_attempt_at', CASE WHEN m.status = 'pending' THEN m.next_attempt_at END,
                         'created_at', m.created_at, 'delivered_at', m.delivered_at) AS doc
FROM mail_deliveries m;
