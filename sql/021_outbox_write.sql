-- The outbox's write, for issue 17's "writes no slower" (README "Performance", ninth round).
--
-- 1. The NOTIFY at commit (sql/004: the Server-Sent Events feed's wake-up, src/events/feed.c)
--    cost a seat request a fifth of its speed: a signal and a wakeup of the listening backend
--    and of the feed's thread per write, on CPUs the writes share. Most partners have no
--    stream open. A stream now marks its partner's counter row (stream_opened, at the start
--    and every minute; the mark lasts three minutes), and emit_event_data notifies only while
--    the mark holds. It reads the mark from the row it updates to number the event, so no
--    event is missed: that update locks the row, stream_opened's update waits for the
--    writer's commit (and the stream's next look, a new statement, sees its event) or the
--    writer's update comes after the mark and sees it. A stream's mark outlives it by up to
--    three minutes (notifies nobody hears, as every write made before).
-- 2. The events' CHECKs (sql/004) are read back from their text in every statement that writes
--    an event: emit_event_data, the only writer, checks the type instead, with the same error
--    (SQLSTATE 23514, constraint events_type_check); seq > 0 is its counter's, from 1 up.

ALTER TABLE event_counters ADD COLUMN streamed_until timestamptz;

ALTER TABLE events DROP CONSTRAINT events_seq_check, DROP CONSTRAINT events_type_check;

-- A stream of the partner is open (or still open): notify its events for three minutes. A
-- partner with no event yet gets its counter row here, at 0.
CREATE FUNCTION stream_opened(p uuid) RETURNS void LANGUAGE sql AS $$
    INSERT INTO event_counters AS c (partner_id, last_seq, streamed_until)
    VALUES (p, 0, now() + interval '3 minutes')
    ON CONFLICT (partner_id) DO UPDATE SET streamed_until = EXCLUDED.streamed_until
$$;

-- As in sql/017: the type checked first, and the NOTIFY only for a partner streamed now.
CREATE OR REPLACE FUNCTION emit_event_data(p_partner uuid, p_type text, p_subject_type text,
                                           p_subject_id text, p_request_id text, p_data jsonb,
                                           p_occasion text DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
    streamed boolean;
BEGIN
    IF p_type !~ '^[a-z_]+\.[a-z_]+$' THEN
        RAISE EXCEPTION 'new row for relation "events" violates check constraint "events_type_check"'
            USING ERRCODE = 'check_violation', TABLE = 'events', CONSTRAINT = 'events_type_check';
    END IF;
    IF p_data IS NULL THEN
        RAISE EXCEPTION 'event % of % %: no data', p_type, p_subject_type, p_subject_id;
    END IF;
    INSERT INTO event_counters AS c (partner_id, last_seq) VALUES (p_partner, 1)
    ON CONFLICT (partner_id) DO UPDATE SET last_seq = c.last_seq + 1
    RETURNING last_seq, COALESCE(streamed_until > now(), false) INTO n, streamed;
    IF p_occasion IS NOT NULL AND EXISTS (SELECT 1 FROM events WHERE partner_id = p_partner
                                          AND type = p_type AND occasion = p_occasion) THEN
        UPDATE event_counters SET last_seq = last_seq - 1 WHERE partner_id = p_partner;
        RETURN NULL;
    END IF;
    INSERT INTO events (partner_id, seq, type, subject_type, subject_id, data, request_id, occasion)
    VALUES (p_partner, n, p_type, p_subject_type, p_subject_id, p_data, p_request_id, p_occasion);
    IF streamed THEN
        PERFORM pg_notify('mb_events', p_partner::text || ':' || n::text);
    END IF;
    RETURN n;
END
$$;

