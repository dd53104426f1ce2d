-- GET /v1/partners/{p}/benefits: what src/routes/core.c runs (the partner gate and the page in
-- one query; category, status, expiring_before and cursor absent, technical visible, limit 50 + 1).
\set n random(1, 2500)
SELECT p.membership_location, d.doc, d.id::text FROM partners p LEFT JOIN LATERAL (SELECT doc, id FROM benefit_docs_fast WHERE partner_id = p.id AND (NULL::text IS NULL OR category = NULL::text) AND (NULL::text IS NULL OR status = NULL::text) AND (NULL::uuid IS NULL OR id > NULL::uuid) AND (category <> 'technical' OR true) AND (NULL::timestamptz IS NULL OR expires_on < NULL::timestamptz) ORDER BY id LIMIT 51) d ON true WHERE p.id = bench_id('b0000000', :n) ORDER BY d.id;
