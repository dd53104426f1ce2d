-- Seat cycle, bare: only the INSERT and the DELETE of seat_assignments (each its own
-- autocommit transaction; the trigger keeps benefits.used). Client c works on partners
-- n = c+1 (mod clients) only, so no two clients touch the same seat.
\set n :client_id + 1 + :clients * random(0, 2500 / :clients - 1)
\set u (:n - 1) * 8 + random(2, 8)
\set b (:n - 1) * 20 + 6
INSERT INTO seat_assignments (benefit_id, user_id, assigned_by) VALUES (('b2000000-0000-4000-8000-' || lpad(to_hex(:b::bigint), 12, '0'))::uuid, ('b1000000-0000-4000-8000-' || lpad(to_hex(:u::bigint), 12, '0'))::uuid, 'bench');
DELETE FROM seat_assignments WHERE benefit_id = ('b2000000-0000-4000-8000-' || lpad(to_hex(:b::bigint), 12, '0'))::uuid AND user_id = ('b1000000-0000-4000-8000-' || lpad(to_hex(:u::bigint), 12, '0'))::uuid RETURNING user_id::text;
