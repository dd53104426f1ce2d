-- The plain two-statement version of GET /v1/partners/{p}/benefits?limit=20 (issue 17's
-- baseline): the partner check, then the page from one table (limit 20 + 1, no view, no JSON).
\set n random(1, 2500)
SELECT 1 FROM partners WHERE id = bench_id('b0000000', :n);
SELECT id, purchase_id, product_id, category, status, quantity, used, activated_at, expires_at, created_at FROM benefits WHERE partner_id = bench_id('b0000000', :n) ORDER BY id LIMIT 21;
