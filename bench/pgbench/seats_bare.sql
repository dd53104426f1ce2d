-- Seat cycle, bare: only the INSERT and the DELETE of seat_assignments (each its own
-- autocommit transaction; the trigger keeps benefits.used). Client c works on partners
-- n = c+1 (mod clients) only, so no two clients touch the same seat.
\set n :client_id + 1 + :clients * random(0, 2500 / :clients - 1)
\set u (:n - 1) * 8 + random(2, 8)
\set b (:n - 1) * 20 + 6
INSERT INTO seat_assignments (benefit_id, user_id, assigned_by) VALUES (bench_id('b2000000', :b), bench_id('b1000000', :u), 'bench');
DELETE FROM seat_assignments WHERE benefit_id = bench_id('b2000000', :b) AND user_id = bench_id('b1000000', :u) RETURNING user_id::text;
