-- A seat benefit is active exactly while a seat of it is used (a Visual Studio subscription or a
-- usage-based cloud benefit: R5, R6). The seat routes kept that with an UPDATE of their own
-- after the seat_assignments trigger had counted the seat, so every seat assignment and removal
-- changed the benefit row twice, and each change queued the data-version and document triggers
-- (sql/007, sql/015) again. The trigger now does both in the one UPDATE it already makes (bench:
-- the seat cycle's transactions about a fifth faster in pgbench, README "Performance").
--
-- Only the two seat states move: a benefit that expired or was cancelled keeps its status (the
-- refund's cancellation deletes the seats in the statement that cancels the benefits, and this
-- trigger then sees 'cancelled'). Every way a seat goes now follows the rule: a user deleted
-- from Account settings used to leave the benefit 'active' with no seat used. Rows left so
-- before this migration are not changed here: the next seat assigned or removed sets them.
CREATE OR REPLACE FUNCTION seat_used_trg() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        UPDATE benefits SET used = used + 1,
               status = CASE WHEN status = 'available' THEN 'active' ELSE status END,
               activated_at = CASE WHEN status = 'available' THEN now() ELSE activated_at END
        WHERE id = NEW.benefit_id;
        RETURN NEW;
    END IF;
    UPDATE benefits SET used = used - 1,
           status = CASE WHEN status = 'active' AND used = 1 THEN 'available' ELSE status END,
           activated_at = CASE WHEN status = 'active' AND used = 1 THEN NULL ELSE activated_at END
    WHERE id = OLD.benefit_id;
    RETURN OLD;
END $$;

