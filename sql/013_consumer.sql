-- Issue 18: the Retry-After of an answer kept for an Idempotency-Key, so that a replay carries
-- it too (api/openapi.yaml marks it required on the 202 of an activation; src/http/idempotency.c).
-- Records made before this column existed hold NULL (no Retry-After replayed).
ALTER TABLE idempotency_keys ADD COLUMN retry_after text;
