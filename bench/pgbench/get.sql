-- GET /v1/partners/{p}/benefits/{b}: what src/routes/core.c runs (partner gate, then the
-- benefit query).
\set n random(1, 2500)
\set b (:n - 1) * 20 + random(1, 20)
SELECT membership_location FROM partners WHERE id = ('b0000000-0000-4000-8000-' || lpad(to_hex(:n::bigint), 12, '0'))::uuid;
SELECT doc, category FROM benefit_docs WHERE partner_id = ('b0000000-0000-4000-8000-' || lpad(to_hex(:n::bigint), 12, '0'))::uuid AND id = ('b2000000-0000-4000-8000-' || lpad(to_hex(:b::bigint), 12, '0'))::uuid;
