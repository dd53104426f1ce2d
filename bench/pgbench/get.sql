-- GET /v1/partners/{p}/benefits/{b}: what src/routes/core.c runs (partner gate, then the
-- benefit query).
\set n random(1, 2500)
\set b (:n - 1) * 20 + random(1, 20)
SELECT membership_location FROM partners WHERE id = bench_id('b0000000', :n);
SELECT doc, category FROM benefit_docs WHERE partner_id = bench_id('b0000000', :n) AND id = bench_id('b2000000', :b);
