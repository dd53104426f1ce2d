-- The write path, fourth round (issue 17: "writes no slower, although every write now bumps a
-- version"). Counted in instructions, not seconds (valgrind's callgrind on a single-user backend
-- running the seat cycle's statements as prepared, generic plans, as the service does; README
-- "Performance"), two things of PostgreSQL's own cost more than the bump's logic:
--
-- 1. The bump updated the partners row, and PostgreSQL prepares a table's CHECK constraints
--    again in every statement that writes a row of it (their stored text read back into
--    nodes, then compiled). partners has five; that was 6.5 % of all the instructions of a
--    seat request. The data version and the time marks now live in a table of their own,
--    partner_versions, with no CHECK, no trigger and nothing else in its rows: the bump is the
--    smallest update PostgreSQL can make. Its fill factor leaves room for those updates to
--    stay on their page (HOT).
-- 2. Every event ran the webhook fan-out's INSERT ... SELECT, also for the partners without a
--    webhook (most): 3 % of a seat request. An EXISTS on the partial index of enabled webhooks
--    decides first now.
--
-- The reader: the version read of every partner read (src/cache/versions.c), which is also its
-- tenant gate. It needs one column of the partner besides: where its membership is managed.
-- That column is copied into the version's row (the partner row's trigger below keeps it), so
-- that the read stays one row of one table: joining partners back cost the reads more than the
-- bump saved the writes (warm list: postgres 0.060 -> 0.095 ms per read, README "Performance").
-- A change of the partner row itself bumps through the same deferred trigger as every other
-- table's rows now (it was a BEFORE trigger that set the column on the row).

CREATE TABLE partner_versions (
    partner_id          uuid PRIMARY KEY REFERENCES partners (id) ON DELETE CASCADE,
    membership_location text NOT NULL, -- partners.membership_location, copied
    data_version        bigint NOT NULL,
    time_marks          timestamptz[] NOT NULL
) WITH (fillfactor = 50);
INSERT INTO partner_versions
SELECT id, membership_location, data_version, time_marks FROM partners;

-- A new partner starts at version 1, with no instants; its location follows it.
CREATE FUNCTION partner_versions_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO partner_versions VALUES (NEW.id, NEW.membership_location, 1, '{}');
    ELSE
        UPDATE partner_versions SET membership_location = NEW.membership_location
        WHERE partner_id = NEW.id;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER partners_version_row AFTER INSERT OR UPDATE OF membership_location ON partners
    FOR EACH ROW EXECUTE FUNCTION partner_versions_row();

DROP TRIGGER partners_bump_version ON partners;
DROP FUNCTION bump_partner_self();
ALTER TABLE partners DROP COLUMN data_version, DROP COLUMN time_marks;

-- As in sql/012, the row now partner_versions'.
CREATE OR REPLACE FUNCTION bump_partner(pid uuid, marks boolean) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    done text;
    tok text;
BEGIN
    IF pid IS NULL THEN
        RETURN;
    END IF;
    done := COALESCE(current_setting('mb.v_done', true), '');
    tok := ' ' || pid::text || CASE WHEN marks THEN 'm' ELSE 'v' END;
    IF strpos(done, tok) > 0 THEN
        RETURN;
    END IF;
    PERFORM set_config('mb.v_done', done || tok, true);
    IF marks THEN
        UPDATE partner_versions SET data_version = data_version + 1,
               time_marks = partner_time_marks(pid)
        WHERE partner_id = pid;
    ELSE
        UPDATE partner_versions SET data_version = data_version + 1 WHERE partner_id = pid;
    END IF;
END
$$;

-- As in sql/017, with the partner row itself (its own id), and two calls fewer: sql/017 called
-- bump_partner for the row's former partner on every INSERT and DELETE too, where there is none
-- (a NULL that bump_partner then returned on), and again for every further row of a partner the
-- transaction had bumped already (a seat request: the benefit's row, then the audit row). The
-- bump itself and its once-per-transaction record stay bump_partner's.
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
    IF TG_TABLE_NAME = 'partners' THEN
        pid := r.id;
    ELSIF TG_TABLE_NAME IN ('key_reveals', 'seat_assignments', 'license_keys') THEN
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
    IF pid IS NOT NULL AND strpos(COALESCE(current_setting('mb.v_done', true), ''),
                                  ' ' || pid::text || CASE WHEN marks THEN 'm' ELSE 'v' END) = 0 THEN
        PERFORM bump_partner(pid, marks);
    END IF;
    IF old_pid IS NOT NULL AND old_pid <> pid THEN
        PERFORM bump_partner(old_pid, marks);
    END IF;
    RETURN NULL;
END
$$;

-- The partner row: any change of it (co_sell_ready, level, the location...) shows in its reads.
CREATE CONSTRAINT TRIGGER partners_bump_version AFTER UPDATE ON partners
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (OLD.* IS DISTINCT FROM NEW.*)
    EXECUTE FUNCTION bump_partner_of_row();

-- As in sql/004, with the EXISTS first.
CREATE OR REPLACE FUNCTION events_fan_out() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM webhooks w WHERE w.partner_id = NEW.partner_id AND w.enabled) THEN
        RETURN NULL;
    END IF;
    INSERT INTO webhook_deliveries (webhook_id, partner_id, event_id, event_type, payload)
    SELECT w.id, NEW.partner_id, event_id(NEW.seq), NEW.type,
           (SELECT doc FROM event_docs e WHERE e.partner_id = NEW.partner_id AND e.seq = NEW.seq)
    FROM webhooks w
    WHERE w.partner_id = NEW.partner_id AND w.enabled
      AND (w.event_types = '{}' OR NEW.type = ANY (w.event_types));
    RETURN NULL;
END
$$;
