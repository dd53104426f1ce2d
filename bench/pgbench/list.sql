-- GET /v1/partners/{p}/benefits: what src/routes/core.c runs (partner gate, then the list
-- query with category, status and cursor absent, technical visible, limit 50 + 1).
\set n random(1, 2500)
SELECT membership_location FROM partners WHERE id = bench_id('b0000000', :n);
SELECT doc, id::text FROM benefit_docs WHERE partner_id = bench_id('b0000000', :n) AND (NULL::text IS NULL OR category = NULL::text) AND (NULL::text IS NULL OR status = NULL::text) AND (NULL::uuid IS NULL OR id > NULL::uuid) AND (category <> 'technical' OR true) ORDER BY id LIMIT 51;
