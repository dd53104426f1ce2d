-- Data versions (issue 17): a number per partner that changes, in the same transaction, with
-- anything one of that partner's reads can show, and one for the catalog. A reader compares
-- the version with the one its cached answer was made at: equal means the answer is still
-- exactly what the SQL would give (src/cache/cache.c).
--
-- Triggers, so that no route can forget. They are deferred to commit: the partner row is then
-- locked last, after every other row the transaction locks, so the bump adds no lock-order
-- cycle; a transaction bumps each partner once (a transaction-local setting remembers it).
-- Answers also depend on the clock (a benefit whose term has ended shows `expired`): the
-- partner keeps the instants at which that happens (time_marks), and the version counts how
-- many have passed.
ALTER TABLE partners ADD COLUMN data_version bigint NOT NULL DEFAULT 1;
ALTER TABLE partners ADD COLUMN time_marks timestamptz[] NOT NULL DEFAULT '{}';

CREATE TABLE catalog_version (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    version bigint NOT NULL
);
INSERT INTO catalog_version VALUES (true, 1);

CREATE FUNCTION partner_time_marks(pid uuid) RETURNS timestamptz[] LANGUAGE sql STABLE AS $$
    SELECT COALESCE(array_agg(DISTINCT t ORDER BY t), '{}') FROM (
        SELECT pu.term_end AS t FROM purchases pu WHERE pu.partner_id = pid
        UNION ALL SELECT b.expires_at FROM benefits b WHERE b.partner_id = pid
        UNION ALL SELECT c.expires_at FROM partner_competencies c WHERE c.partner_id = pid
    ) m WHERE t IS NOT NULL
$$;

CREATE FUNCTION bump_partner(pid uuid, marks boolean) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    flag text := 'mb.v_' || replace(pid::text, '-', '') || CASE WHEN marks THEN 'm' ELSE '' END;
BEGIN
    IF pid IS NULL OR current_setting(flag, true) = '1' THEN
        RETURN;
    END IF;
    PERFORM set_config(flag, '1', true);
    IF marks THEN
        UPDATE partners SET data_version = data_version + 1, time_marks = partner_time_marks(pid)
        WHERE id = pid;
    ELSE
        UPDATE partners SET data_version = data_version + 1 WHERE id = pid;
    END IF;
END
$$;

-- The partner of the changed row: column partner_id, or through benefit_id.
CREATE FUNCTION bump_partner_of_row() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    j jsonb;
    marks boolean := TG_TABLE_NAME IN ('purchases', 'benefits', 'partner_competencies');
    pid uuid;
BEGIN
    IF TG_OP = 'DELETE' THEN
        j := to_jsonb(OLD);
    ELSE
        j := to_jsonb(NEW);
    END IF;
    -- the time marks change only with the instants themselves (a seat changes `used`, not them)
    IF marks AND TG_OP = 'UPDATE' THEN
        marks := j -> 'expires_at' IS DISTINCT FROM to_jsonb(OLD) -> 'expires_at'
                 OR j -> 'term_end' IS DISTINCT FROM to_jsonb(OLD) -> 'term_end';
    END IF;
    IF j ? 'partner_id' THEN
        pid := (j ->> 'partner_id')::uuid;
    ELSIF j ->> 'benefit_id' IS NOT NULL THEN
        SELECT partner_id INTO pid FROM benefits WHERE id = (j ->> 'benefit_id')::uuid;
    END IF;
    PERFORM bump_partner(pid, marks);
    IF TG_OP = 'UPDATE' THEN -- a row that moved to another partner (or benefit)
        j := to_jsonb(OLD);
        IF j ? 'partner_id' AND (j ->> 'partner_id')::uuid IS DISTINCT FROM pid THEN
            PERFORM bump_partner((j ->> 'partner_id')::uuid, marks);
        ELSIF j ->> 'benefit_id' IS NOT NULL AND NOT (to_jsonb(NEW) ? 'partner_id') THEN
            PERFORM bump_partner((SELECT partner_id FROM benefits
                                  WHERE id = (j ->> 'benefit_id')::uuid), marks);
        END IF;
    END IF;
    RETURN NULL;
END
$$;

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['partner_competencies', 'users', 'purchases', 'benefits',
                             'key_reveals', 'seat_assignments', 'activations',
                             'marketing_contacts', 'support_requests', 'audit_events'] LOOP
        EXECUTE format('CREATE CONSTRAINT TRIGGER %I AFTER INSERT OR UPDATE OR DELETE ON %I '
                       'DEFERRABLE INITIALLY DEFERRED FOR EACH ROW '
                       'EXECUTE FUNCTION bump_partner_of_row()', t || '_bump_version', t);
    END LOOP;
END
$$;

-- A key pool's rows belong to no partner until a reveal hands them to a benefit (a pool
-- import of 100 000 keys fires nothing).
CREATE CONSTRAINT TRIGGER license_keys_bump_version AFTER UPDATE ON license_keys
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    WHEN (NEW.benefit_id IS DISTINCT FROM OLD.benefit_id)
    EXECUTE FUNCTION bump_partner_of_row();

-- The partner row itself: any change but the version's own bookkeeping.
CREATE FUNCTION bump_partner_self() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (to_jsonb(NEW) - 'data_version' - 'time_marks')
       IS DISTINCT FROM (to_jsonb(OLD) - 'data_version' - 'time_marks') THEN
        NEW.data_version := OLD.data_version + 1;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER partners_bump_version BEFORE UPDATE ON partners
    FOR EACH ROW EXECUTE FUNCTION bump_partner_self();

-- The catalog, which every partner's benefits show parts of.
CREATE FUNCTION bump_catalog() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('mb.v_catalog', true) IS DISTINCT FROM '1' THEN
        PERFORM set_config('mb.v_catalog', '1', true);
        UPDATE catalog_version SET version = version + 1;
    END IF;
    RETURN NULL;
END
$$;
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['products', 'product_downloads', 'packages', 'package_benefits',
                             'product_revisions'] LOOP
        EXECUTE format('CREATE CONSTRAINT TRIGGER %I AFTER INSERT OR UPDATE OR DELETE ON %I '
                       'DEFERRABLE INITIALLY DEFERRED FOR EACH ROW '
                       'EXECUTE FUNCTION bump_catalog()', t || '_bump_version', t);
    END LOOP;
END
$$;

UPDATE partners SET time_marks = partner_time_marks(id);
