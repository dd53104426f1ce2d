-- The write path (issue 17): bump_partner (sql/007_data_versions.sql) remembered the partners
-- it had bumped in a transaction as one custom setting per partner ('mb.v_<partner>').
-- PostgreSQL keeps every custom setting name a session has ever used for the life of the
-- backend: a pooled connection that writes for 2 500 partners ends up with 2 500 more
-- settings, each new one re-sorts the whole list (PostgreSQL 15: about 1 ms each, the first
-- cost of the seat cycle in pg_stat_statements), and every writing transaction's end walks
-- them all; the memory never comes back. Now one setting per session, 'mb.v_done', holds the
-- partners bumped in this transaction (' <uuid>v' without, ' <uuid>m' with the time marks);
-- it is transaction-local, so it is empty again at the next transaction. Same guarantee: the
-- bump is in the same transaction, once per partner (and once more with the marks).
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
        UPDATE partners SET data_version = data_version + 1, time_marks = partner_time_marks(pid)
        WHERE id = pid;
    ELSE
        UPDATE partners SET data_version = data_version + 1 WHERE id = pid;
    END IF;
END
$$;
