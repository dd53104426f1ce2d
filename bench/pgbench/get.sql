-- GET /v1/partners/{p}/benefits/{b}: what src/routes/core.c runs (the partner gate and the
-- benefit in one query).
\set n random(1, 2500)
\set b (:n - 1) * 20 + random(1, 20)
SELECT p.membership_location, d.doc, d.category FROM partners p LEFT JOIN benefit_docs_fast d ON d.partner_id = p.id AND d.id = bench_id('b2000000', :b) WHERE p.id = bench_id('b0000000', :n);
