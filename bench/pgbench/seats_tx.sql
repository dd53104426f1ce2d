-- Seat cycle, the same transactions and round trips as the service: POST …/assignments
-- (src/routes/seats.c assignment_create inside run_tx): BEGIN, partner gate, benefit locked,
-- pending cancellation check, user check in one round trip (mb_gate_benefit); the INSERT (its
-- trigger counts the seat and sets the benefit's status, sql/016) and the answer's document in
-- the next; the audit row, the outbox event with that document as data (sql/017) and the COMMIT
-- in the last (mb_db_defer). pgbench cannot keep a value read inside a pipeline (\gset), so the
-- event reads the document again where the service passes what it read. Then DELETE
-- …/assignments/{userId} (assignment_delete): gate and benefit locked, DELETE, audit row and
-- outbox event with the COMMIT. Client c works on partners n = c+1 (mod clients) only, so no
-- two clients touch the same seat. One run of this script = two requests.
\set n :client_id + 1 + :clients * random(0, 2500 / :clients - 1)
\set u (:n - 1) * 8 + random(2, 8)
\set b (:n - 1) * 20 + 6
\startpipeline
BEGIN;
SELECT membership_location FROM partners WHERE id = bench_id('b0000000', :n);
SELECT b.id, b.purchase_id, b.product_id, b.category, benefit_status(b.status, pu.term_end, b.expires_at), p.cloud_kind, p.unit, p.offer_requirement, p.offer_duration_days, b.quantity, b.used, p.portal_url FROM benefits b JOIN products p ON p.id = b.product_id JOIN purchases pu ON pu.id = b.purchase_id WHERE b.partner_id = bench_id('b0000000', :n) AND b.id = bench_id('b2000000', :b) FOR UPDATE OF b;
SELECT id::text FROM cancellation_requests WHERE purchase_id = (SELECT purchase_id FROM benefits WHERE id = bench_id('b2000000', :b)) AND status = 'pending';
SELECT id::text FROM users WHERE id = bench_id('b1000000', :u) AND partner_id = bench_id('b0000000', :n);
\endpipeline
\startpipeline
INSERT INTO seat_assignments (benefit_id, user_id, assigned_by) VALUES (bench_id('b2000000', :b), bench_id('b1000000', :u), 'bench');
SELECT doc FROM assignment_docs WHERE benefit_id = bench_id('b2000000', :b) AND user_id = bench_id('b1000000', :u);
\endpipeline
\startpipeline
INSERT INTO audit_events (partner_id, actor, action, target_type, target_id, request_id, details) VALUES (bench_id('b0000000', :n), 'bench', 'seat.assigned', 'benefit', bench_id('b2000000', :b)::text, 'pgbench', ('{"user_id":"' || bench_id('b1000000', :u) || '"}')::jsonb);
SELECT emit_event_data(bench_id('b0000000', :n), 'seat.assigned', 'benefit', bench_id('b2000000', :b)::text, 'pgbench', (SELECT doc FROM assignment_docs WHERE benefit_id = bench_id('b2000000', :b) AND user_id = bench_id('b1000000', :u))::jsonb);
COMMIT;
\endpipeline
\startpipeline
BEGIN;
SELECT membership_location FROM partners WHERE id = bench_id('b0000000', :n);
SELECT b.id, b.purchase_id, b.product_id, b.category, benefit_status(b.status, pu.term_end, b.expires_at), p.cloud_kind, p.unit, p.offer_requirement, p.offer_duration_days, b.quantity, b.used, p.portal_url FROM benefits b JOIN products p ON p.id = b.product_id JOIN purchases pu ON pu.id = b.purchase_id WHERE b.partner_id = bench_id('b0000000', :n) AND b.id = bench_id('b2000000', :b) FOR UPDATE OF b;
\endpipeline
DELETE FROM seat_assignments WHERE benefit_id = bench_id('b2000000', :b) AND user_id = bench_id('b1000000', :u) RETURNING user_id::text;
\startpipeline
INSERT INTO audit_events (partner_id, actor, action, target_type, target_id, request_id, details) VALUES (bench_id('b0000000', :n), 'bench', 'seat.removed', 'benefit', bench_id('b2000000', :b)::text, 'pgbench', ('{"user_id":"' || bench_id('b1000000', :u) || '"}')::jsonb);
SELECT emit_event(bench_id('b0000000', :n), 'seat.removed', 'benefit', bench_id('b2000000', :b)::text, 'pgbench', ('{"user_id":"' || bench_id('b1000000', :u) || '"}')::jsonb);
COMMIT;
\endpipeline
