-- POST …/keys, a repeat reveal: the same transaction as the service (src/routes/keys.c
-- keys_reveal inside run_tx: BEGIN, partner gate, benefit locked, the product's languages and
-- OS types, "keys already taken?", the reveal row, audit event, the answer with the keys
-- decrypted, COMMIT), on the SQL Server benefit of the first 400 partners.
\set n random(1, 400)
\set b (:n - 1) * 20 + 3
BEGIN;
SELECT membership_location FROM partners WHERE id = bench_id('b0000000', :n);
SELECT b.id, b.purchase_id, b.product_id, b.category, benefit_status(b.status, pu.term_end, b.expires_at), p.cloud_kind, p.unit, p.offer_requirement, p.offer_duration_days, b.quantity, b.used, p.portal_url FROM benefits b JOIN products p ON p.id = b.product_id JOIN purchases pu ON pu.id = b.purchase_id WHERE b.partner_id = bench_id('b0000000', :n) AND b.id = bench_id('b2000000', :b) FOR UPDATE OF b;
SELECT to_json(languages), to_json(os_types) FROM products WHERE id = 'aaaaaaaa-0000-4000-8000-000000000003'::uuid;
SELECT EXISTS (SELECT 1 FROM license_keys WHERE benefit_id = bench_id('b2000000', :b));
INSERT INTO key_reveals (benefit_id, language, os, revealed_by) VALUES (bench_id('b2000000', :b), 'en-US', 'x64', 'bench');
INSERT INTO audit_events (partner_id, actor, action, target_type, target_id, request_id, details) VALUES (bench_id('b0000000', :n), 'bench', 'keys.revealed', 'benefit', bench_id('b2000000', :b)::text, 'pgbench', '{"language":"en-US","os":"x64","first": false}'::jsonb);
SELECT json_build_object('benefit_id', bench_id('b2000000', :b), 'product_id', p.id, 'language', 'en-US'::text, 'os', 'x64'::text, 'keys', COALESCE((SELECT json_agg(pgp_sym_decrypt(k.key_enc, :kek) ORDER BY k.id) FROM license_keys k WHERE k.benefit_id = bench_id('b2000000', :b)), '[]'), 'download_links', COALESCE((SELECT json_agg(json_build_object('language', d.language, 'os', d.os, 'url', d.url) ORDER BY d.url) FROM product_downloads d WHERE d.product_id = p.id AND d.language = 'en-US' AND d.os = 'x64'), '[]'), 'instructions', p.instructions) FROM products p WHERE p.id = 'aaaaaaaa-0000-4000-8000-000000000003'::uuid;
COMMIT;
