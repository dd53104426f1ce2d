-- Bench data set for scripts/bench.sh (never for production databases): runs after
-- `migrate` and `seed-demo` (which brings the catalog) on a throwaway cluster.
--
--   partners  2 500   id b0000000-0000-4000-8000-<n as 12 hex digits>, n = 1..2500
--   users    20 000   8 per partner, id b1000000-0000-4000-8000-<m>, m = (n-1)*8 + 1..8;
--                     the first of each partner is its global_admin
--   purchases 5 000   Gold + Silver per partner
--   benefits 50 000   20 per partner, id b2000000-0000-4000-8000-<k>, k = (n-1)*20 + 1..20,
--                     in product order: Gold's 11 (k 1..11) then Silver's 9 (k 12..20);
--                     k = (n-1)*20 + 6 is the Gold Visual Studio Enterprise benefit (25 seats),
--                     k = (n-1)*20 + 3 the Gold SQL Server benefit (10 keys)
--   audit    300 000  120 events per partner
--   keys              :keys_partners partners x 10 keys of SQL Server, for the reveal bench
--
-- psql -v keys_partners=N (default 400) sizes the key pool. Ids are plain hex numbers so the
-- wrk and pgbench scripts can compute them from n.
\if :{?keys_partners}
\else
\set keys_partners 400
\endif

SELECT set_config('mpn.kek', :'kek', false);
SET synchronous_commit = off;
BEGIN;

-- The data-version triggers (sql/007_data_versions.sql) would fire once per loaded row at
-- commit (300 000 audit events alone: minutes); off for the load, the partners' time marks
-- are set once at the end (the versions of a fresh data set need no bump).
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['partner_competencies', 'users', 'purchases', 'benefits',
                             'audit_events', 'license_keys'] LOOP
        EXECUTE format('ALTER TABLE %I DISABLE TRIGGER %I', t, t || '_bump_version');
    END LOOP;
    -- the benefit documents (sql/015) likewise: written once, together, at the end (a benefit's
    -- own are its bump trigger's since sql/020)
    FOREACH t IN ARRAY ARRAY['partner_competencies', 'activations'] LOOP
        EXECUTE format('ALTER TABLE %I DISABLE TRIGGER %I', t, t || '_documents');
    END LOOP;
END
$$;

-- The id scheme; the pgbench scripts call it too (an inlined immutable SQL function: pgbench
-- can only draw numbers, the statements need the uuid).
CREATE FUNCTION bench_id(prefix text, n bigint) RETURNS uuid
LANGUAGE sql IMMUTABLE AS $$
    SELECT (prefix || '-0000-4000-8000-' || lpad(to_hex(n), 12, '0'))::uuid
$$;

INSERT INTO partners (id, mpn_id, name, account_email, membership_location, level, co_sell_ready)
SELECT bench_id('b0000000', n), 5000000 + n, 'Bench partner ' || n,
       'admin@p' || n || '.bench.example', 'partner_center',
       CASE n % 3 WHEN 0 THEN 'gold' WHEN 1 THEN 'silver' ELSE 'action_pack' END, n % 5 = 0
FROM generate_series(1, 2500) AS n;

INSERT INTO partner_competencies (partner_id, area, level, expires_at)
SELECT bench_id('b0000000', n), a.area, CASE WHEN n % 2 = 0 THEN 'gold' ELSE 'silver' END,
       now() + interval '1 year'
FROM generate_series(1, 2500) AS n
CROSS JOIN (VALUES ('Cloud Platform'), ('Data Analytics')) AS a (area);

INSERT INTO users (id, partner_id, email, display_name, roles)
SELECT bench_id('b1000000', (n - 1) * 8 + u), bench_id('b0000000', n),
       'user' || u || '@p' || n || '.bench.example', 'User ' || u || ' of partner ' || n,
       CASE WHEN u = 1 THEN '{global_admin}'::text[] WHEN u = 2 THEN '{mpn_partner_admin}'
            ELSE '{}' END
FROM generate_series(1, 2500) AS n
CROSS JOIN generate_series(1, 8) AS u;

INSERT INTO purchases (id, partner_id, package_id, status, purchased_at, term_end, created_by)
SELECT bench_id('b3000000', (n - 1) * 2 + k), bench_id('b0000000', n),
       pk.id, 'active', now() - (n % 300) * interval '1 day',
       now() - (n % 300) * interval '1 day' + make_interval(months => pk.term_months), 'bench'
FROM generate_series(1, 2500) AS n
CROSS JOIN (VALUES (1, 'bbbbbbbb-0000-4000-8000-000000000003'::uuid),
                   (2, 'bbbbbbbb-0000-4000-8000-000000000002'::uuid)) AS x (k, package_id)
JOIN packages pk ON pk.id = x.package_id;

INSERT INTO benefits (id, partner_id, purchase_id, product_id, category, status, quantity)
SELECT bench_id('b2000000', (n - 1) * 20 + a.k), bench_id('b0000000', n),
       bench_id('b3000000', (n - 1) * 2 + a.purchase_no), a.product_id, a.category,
       'available', a.quantity
FROM generate_series(1, 2500) AS n
CROSS JOIN (
    SELECT row_number() OVER (ORDER BY pk.code DESC, pb.product_id) AS k,
           CASE pk.code WHEN 'gold-membership' THEN 1 ELSE 2 END AS purchase_no,
           pb.product_id, pr.category, pb.quantity
    FROM package_benefits pb
    JOIN packages pk ON pk.id = pb.package_id
    JOIN products pr ON pr.id = pb.product_id
    WHERE pk.code IN ('gold-membership', 'silver-membership')
) AS a
ORDER BY 1;

INSERT INTO audit_events (partner_id, actor, action, target_type, target_id, request_id, details, at)
SELECT bench_id('b0000000', n), bench_id('b1000000', (n - 1) * 8 + 1)::text,
       (ARRAY['purchase.created', 'seat.assigned', 'seat.removed', 'keys.revealed',
              'user.created'])[1 + e % 5],
       'benefit', bench_id('b2000000', (n - 1) * 20 + 1 + e % 20)::text,
       md5(n::text || '/' || e::text), '{}'::jsonb,
       now() - (e * interval '1 hour')
FROM generate_series(1, 2500) AS n
CROSS JOIN generate_series(1, 120) AS e;

-- Key pool for the reveal bench: 10 SQL Server keys per revealing partner, encrypted under
-- the service's key exactly as the key-pool endpoint does.
INSERT INTO license_keys (product_id, key_enc, key_mac)
SELECT 'aaaaaaaa-0000-4000-8000-000000000003'::uuid,
       pgp_sym_encrypt(k, current_setting('mpn.kek')), hmac(k, current_setting('mpn.kek'), 'sha256')
FROM generate_series(1, :keys_partners * 10) AS i
CROSS JOIN LATERAL (SELECT 'BENCH-' || upper(substr(md5('bench-key/' || i), 1, 20))) AS t (k)
ON CONFLICT DO NOTHING;

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['partner_competencies', 'users', 'purchases', 'benefits',
                             'audit_events', 'license_keys'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE TRIGGER %I', t, t || '_bump_version');
    END LOOP;
    FOREACH t IN ARRAY ARRAY['partner_competencies', 'activations'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE TRIGGER %I', t, t || '_documents');
    END LOOP;
END
$$;
INSERT INTO benefit_documents SELECT * FROM benefit_document_rows
WHERE partner_id >= bench_id('b0000000', 1) AND partner_id <= bench_id('b0000000', 2500);
UPDATE partner_versions SET time_marks = partner_time_marks(partner_id)
WHERE partner_id >= bench_id('b0000000', 1) AND partner_id <= bench_id('b0000000', 2500);

COMMIT;
VACUUM ANALYZE;
