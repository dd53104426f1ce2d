-- The roles of the caller that made a request with an Idempotency-Key: a replay is answered
-- only to a caller who still has all of them (src/http/idempotency.c). Records made before
-- this column existed hold 0 (no role needed).
ALTER TABLE idempotency_keys ADD COLUMN roles integer NOT NULL DEFAULT 0;
