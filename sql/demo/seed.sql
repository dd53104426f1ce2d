-- mpn-benefits: demo data, loaded by `mpn-benefits seed-demo`.
--
-- The service runs this file as one transaction (one PQexec) right after
-- `SELECT set_config('mpn.kek', <KEY_ENCRYPTION_KEY>, false)`; license keys
-- are encrypted and MACed under that key here, as the service does.
--
-- Idempotent: every row has a fixed id (or a natural key) and every INSERT
-- is ON CONFLICT DO NOTHING, so a second run changes nothing. Rows the API
-- has changed since (a benefit activated, a key handed out) are left alone.
--
-- Fixed ids:
--   products          aaaaaaaa-0000-4000-8000-0000000000NN  (01..13)
--   packages          bbbbbbbb-0000-4000-8000-00000000000N  (1 Action Pack, 2 Silver, 3 Gold)
--   Contoso purchase  cccccccc-0000-4000-8000-000000000001  (Gold)
--   Contoso benefits  dddddddd-0000-4000-8000-0000000000NN  (NN = the product's NN)
--   Contoso           11111111-1111-4111-8111-111111111111, users 22222222-2222-4222-8222-00000000000N
--   Fabrikam          33333333-3333-4333-8333-333333333333, user  44444444-4444-4444-8444-000000000001

-- Without the key encryption key the keys below would be encrypted under an
-- empty password; under a different key than the pool already in the table
-- they would not match its key_mac and a second pool would be added. Refuse
-- both.
DO $$
DECLARE
    sample bytea;
BEGIN
    IF coalesce(current_setting('mpn.kek', true), '') = '' THEN
        RAISE EXCEPTION 'seed-demo: mpn.kek is not set (KEY_ENCRYPTION_KEY)';
    END IF;
    SELECT key_enc INTO sample FROM license_keys ORDER BY id LIMIT 1;
    IF sample IS NOT NULL THEN
        BEGIN
            PERFORM pgp_sym_decrypt(sample, current_setting('mpn.kek'));
        EXCEPTION WHEN OTHERS THEN
            RAISE EXCEPTION 'seed-demo: the license keys in the database were encrypted '
                            'under another KEY_ENCRYPTION_KEY';
        END;
    END IF;
END $$;

-- ---------------------------------------------------------------------------
-- Catalog: products (R3: five categories)
-- ---------------------------------------------------------------------------

INSERT INTO products (id, code, name, category, cloud_kind, languages, os_types,
                      instructions, portal_url, unit, offer_requirement, offer_duration_days)
VALUES
    -- software (R5)
    ('aaaaaaaa-0000-4000-8000-000000000001', 'windows-server-2022-standard',
     'Windows Server 2022 Standard', 'software', NULL,
     '{en-US,de-DE,fr-FR,ja-JP}', '{x64}',
     'Internal use only. Each key activates Windows Server 2022 Standard on one server '
     || '(up to 16 cores, two virtual machines). Install from the ISO, then run '
     || '"slmgr /ipk <key>" and "slmgr /ato" as an administrator.',
     NULL, NULL, NULL, NULL),
    ('aaaaaaaa-0000-4000-8000-000000000002', 'office-ltsc-professional-plus-2021',
     'Office LTSC Professional Plus 2021', 'software', NULL,
     '{en-US,de-DE,fr-FR,ja-JP,es-ES}', '{x64,x86}',
     'Internal use only. Uninstall Microsoft 365 Apps first. Mount the image, run setup, '
     || 'then enter the key in File > Account > Change Product Key. Choose the 32-bit (x86) '
     || 'build only if your add-ins require it.',
     NULL, NULL, NULL, NULL),
    ('aaaaaaaa-0000-4000-8000-000000000003', 'sql-server-2022-standard',
     'SQL Server 2022 Standard', 'software', NULL,
     '{en-US,de-DE,fr-FR,ja-JP}', '{x64}',
     'Internal use only. Run setup from the ISO and enter the key on the Product Key page; '
     || 'licensed per server with client access licenses included in your membership.',
     NULL, NULL, NULL, NULL),
    -- cloud (R6)
    ('aaaaaaaa-0000-4000-8000-000000000004', 'azure-credits',
     'Azure credits', 'cloud', 'usage_based',
     '{}', '{}',
     'Assign yourself as the user of this subscription, then sign in to the Azure portal '
     || 'to create resources. Monthly credits do not roll over.',
     'https://portal.azure.com', NULL, NULL, NULL),
    ('aaaaaaaa-0000-4000-8000-000000000005', 'microsoft-365-e3',
     'Microsoft 365 E3', 'cloud', 'license_based',
     '{en-US,de-DE,fr-FR,ja-JP}', '{x64,x86,arm64}',
     'Redeem the key at https://admin.microsoft.com (Billing > Your products > Redeem) '
     || 'with your company''s work account, assign the licenses to users, then install '
     || 'Microsoft 365 Apps from the links below.',
     'https://admin.microsoft.com', NULL, NULL, NULL),
    -- visual_studio (R7)
    ('aaaaaaaa-0000-4000-8000-000000000006', 'visual-studio-enterprise',
     'Visual Studio Enterprise subscription', 'visual_studio', NULL,
     '{}', '{}',
     'Assign one seat per developer. Assigned users sign in to the Visual Studio '
     || 'subscriptions portal with the email of their account.',
     'https://my.visualstudio.com', NULL, NULL, NULL),
    ('aaaaaaaa-0000-4000-8000-000000000007', 'visual-studio-professional',
     'Visual Studio Professional subscription', 'visual_studio', NULL,
     '{}', '{}',
     'Assign one seat per developer. Assigned users sign in to the Visual Studio '
     || 'subscriptions portal with the email of their account.',
     'https://my.visualstudio.com', NULL, NULL, NULL),
    -- technical (R8)
    ('aaaaaaaa-0000-4000-8000-000000000008', 'product-support-incidents',
     'Product support incidents', 'technical', NULL,
     '{}', '{}',
     'Activate, then open a support request for a cloud product on behalf of a customer '
     || '(give the customer tenant id) or for an on-premises product. Each request uses one incident.',
     NULL, 'incidents', NULL, NULL),
    ('aaaaaaaa-0000-4000-8000-000000000009', 'advisory-hours',
     'Advisory hours', 'technical', NULL,
     '{}', '{}',
     'Activate, then request advisory hours for architecture or deployment guidance; '
     || 'the hours you request are deducted from the balance.',
     NULL, 'hours', NULL, NULL),
    ('aaaaaaaa-0000-4000-8000-000000000010', 'presales-deployment-hours',
     'Presales and deployment hours', 'technical', NULL,
     '{}', '{}',
     'Activate, then request technical presales or deployment assistance for a customer '
     || 'opportunity; the hours you request are deducted from the balance.',
     NULL, 'hours', NULL, NULL),
    -- go_to_market (R9)
    ('aaaaaaaa-0000-4000-8000-000000000011', 'silver-core-marketing-offer',
     'Silver Core marketing offer', 'go_to_market', NULL,
     '{}', '{}',
     'Needs a silver competency and a company marketing contact. Instructions are emailed '
     || 'to the marketing contact once the offer is active.',
     NULL, NULL, 'silver_competency', 365),
    ('aaaaaaaa-0000-4000-8000-000000000012', 'gold-core-marketing-offer',
     'Gold Core marketing offer', 'go_to_market', NULL,
     '{}', '{}',
     'Needs a gold competency and a company marketing contact. Instructions are emailed '
     || 'to the marketing contact once the offer is active.',
     NULL, NULL, 'gold_competency', 365),
    ('aaaaaaaa-0000-4000-8000-000000000013', 'isv-co-sell-ready-offer',
     'ISV Co-sell ready offer', 'go_to_market', NULL,
     '{}', '{}',
     'Needs co-sell ready status and a company marketing contact. Instructions are emailed '
     || 'to the marketing contact once the offer is active.',
     NULL, NULL, 'co_sell_ready', 180)
ON CONFLICT DO NOTHING;

-- One download per language x OS of every product that has them (R5), taken
-- from the product row itself so the two never disagree.
INSERT INTO product_downloads (product_id, language, os, url)
SELECT p.id, l.language, o.os,
       format('https://downloads.example.com/%s/%s/%s.%s', d.slug, l.language, o.os, d.ext)
FROM (VALUES
        ('aaaaaaaa-0000-4000-8000-000000000001'::uuid, 'windows-server-2022', 'iso'),
        ('aaaaaaaa-0000-4000-8000-000000000002'::uuid, 'office-ltsc-2021', 'img'),
        ('aaaaaaaa-0000-4000-8000-000000000003'::uuid, 'sql-server-2022', 'iso'),
        ('aaaaaaaa-0000-4000-8000-000000000005'::uuid, 'microsoft-365-apps', 'exe')
     ) AS d (product_id, slug, ext)
JOIN products p ON p.id = d.product_id
CROSS JOIN LATERAL unnest(p.languages) AS l (language)
CROSS JOIN LATERAL unnest(p.os_types) AS o (os)
ON CONFLICT DO NOTHING;

-- ---------------------------------------------------------------------------
-- Catalog: packages and what they allocate
-- ---------------------------------------------------------------------------

INSERT INTO packages (id, code, name, price, currency, term_months)
VALUES
    ('bbbbbbbb-0000-4000-8000-000000000001', 'action-pack',       'Action Pack',       475.00,  'USD', 12),
    ('bbbbbbbb-0000-4000-8000-000000000002', 'silver-membership', 'Silver membership', 1900.00, 'USD', 12),
    ('bbbbbbbb-0000-4000-8000-000000000003', 'gold-membership',   'Gold membership',   5000.00, 'USD', 12)
ON CONFLICT DO NOTHING;

INSERT INTO package_benefits (package_id, product_id, quantity)
VALUES
    -- Action Pack
    ('bbbbbbbb-0000-4000-8000-000000000001', 'aaaaaaaa-0000-4000-8000-000000000001', 10),  -- Windows Server
    ('bbbbbbbb-0000-4000-8000-000000000001', 'aaaaaaaa-0000-4000-8000-000000000002', 5),   -- Office LTSC
    ('bbbbbbbb-0000-4000-8000-000000000001', 'aaaaaaaa-0000-4000-8000-000000000004', 1),   -- Azure credits
    ('bbbbbbbb-0000-4000-8000-000000000001', 'aaaaaaaa-0000-4000-8000-000000000007', 3),   -- VS Professional seats
    ('bbbbbbbb-0000-4000-8000-000000000001', 'aaaaaaaa-0000-4000-8000-000000000008', 5),   -- support incidents
    -- Silver
    ('bbbbbbbb-0000-4000-8000-000000000002', 'aaaaaaaa-0000-4000-8000-000000000001', 15),
    ('bbbbbbbb-0000-4000-8000-000000000002', 'aaaaaaaa-0000-4000-8000-000000000002', 10),
    ('bbbbbbbb-0000-4000-8000-000000000002', 'aaaaaaaa-0000-4000-8000-000000000003', 5),   -- SQL Server
    ('bbbbbbbb-0000-4000-8000-000000000002', 'aaaaaaaa-0000-4000-8000-000000000004', 1),
    ('bbbbbbbb-0000-4000-8000-000000000002', 'aaaaaaaa-0000-4000-8000-000000000005', 10),  -- Microsoft 365 E3
    ('bbbbbbbb-0000-4000-8000-000000000002', 'aaaaaaaa-0000-4000-8000-000000000007', 10),
    ('bbbbbbbb-0000-4000-8000-000000000002', 'aaaaaaaa-0000-4000-8000-000000000008', 10),
    ('bbbbbbbb-0000-4000-8000-000000000002', 'aaaaaaaa-0000-4000-8000-000000000010', 20),  -- presales hours
    ('bbbbbbbb-0000-4000-8000-000000000002', 'aaaaaaaa-0000-4000-8000-000000000011', 1),   -- Silver Core
    -- Gold
    ('bbbbbbbb-0000-4000-8000-000000000003', 'aaaaaaaa-0000-4000-8000-000000000001', 25),
    ('bbbbbbbb-0000-4000-8000-000000000003', 'aaaaaaaa-0000-4000-8000-000000000002', 25),
    ('bbbbbbbb-0000-4000-8000-000000000003', 'aaaaaaaa-0000-4000-8000-000000000003', 10),
    ('bbbbbbbb-0000-4000-8000-000000000003', 'aaaaaaaa-0000-4000-8000-000000000004', 1),
    ('bbbbbbbb-0000-4000-8000-000000000003', 'aaaaaaaa-0000-4000-8000-000000000005', 25),
    ('bbbbbbbb-0000-4000-8000-000000000003', 'aaaaaaaa-0000-4000-8000-000000000006', 25),  -- VS Enterprise seats
    ('bbbbbbbb-0000-4000-8000-000000000003', 'aaaaaaaa-0000-4000-8000-000000000008', 20),
    ('bbbbbbbb-0000-4000-8000-000000000003', 'aaaaaaaa-0000-4000-8000-000000000009', 50),  -- advisory hours
    ('bbbbbbbb-0000-4000-8000-000000000003', 'aaaaaaaa-0000-4000-8000-000000000010', 40),
    ('bbbbbbbb-0000-4000-8000-000000000003', 'aaaaaaaa-0000-4000-8000-000000000012', 1),   -- Gold Core
    ('bbbbbbbb-0000-4000-8000-000000000003', 'aaaaaaaa-0000-4000-8000-000000000013', 1)    -- ISV Co-sell ready
ON CONFLICT DO NOTHING;

-- ---------------------------------------------------------------------------
-- Key pools (software and license-based cloud): two full Gold reveals plus
-- one Silver and one Action Pack reveal each. Keys are deterministic
-- (md5 of a seed string mapped onto product-key characters) so a second run
-- finds them by key_mac; NOT EXISTS keeps the id sequence from moving then.
-- ---------------------------------------------------------------------------

INSERT INTO license_keys (product_id, key_enc, key_mac)
SELECT k.product_id,
       pgp_sym_encrypt(k.key, current_setting('mpn.kek')),
       hmac(k.key, current_setting('mpn.kek'), 'sha256')
FROM (
    SELECT pool.product_id,
           concat_ws('-', substr(h, 1, 5), substr(h, 6, 5), substr(h, 11, 5),
                          substr(h, 16, 5), substr(h, 21, 5)) AS key,
           n
    FROM (VALUES
            ('aaaaaaaa-0000-4000-8000-000000000001'::uuid, 'windows-server-2022-standard', 75),
            ('aaaaaaaa-0000-4000-8000-000000000002'::uuid, 'office-ltsc-professional-plus-2021', 65),
            ('aaaaaaaa-0000-4000-8000-000000000003'::uuid, 'sql-server-2022-standard', 25),
            ('aaaaaaaa-0000-4000-8000-000000000005'::uuid, 'microsoft-365-e3', 60)
         ) AS pool (product_id, code, size)
    CROSS JOIN LATERAL generate_series(1, pool.size) AS n
    CROSS JOIN LATERAL translate(upper(md5('mpn-benefits-demo/' || pool.code || '/' || n)),
                                 '0123456789ABCDEF', '2346789BCDFGHJKM') AS h
    WHERE EXISTS (SELECT 1 FROM products p WHERE p.id = pool.product_id)
) AS k
WHERE NOT EXISTS (
    SELECT 1 FROM license_keys lk
    WHERE lk.product_id = k.product_id
      AND lk.key_mac = hmac(k.key, current_setting('mpn.kek'), 'sha256'))
ORDER BY k.product_id, k.n
ON CONFLICT (product_id, key_mac) DO NOTHING;

-- ---------------------------------------------------------------------------
-- Contoso Ltd: Gold partner in Partner Center, holds the Gold package
-- ---------------------------------------------------------------------------

INSERT INTO partners (id, mpn_id, name, account_email, membership_location, level, co_sell_ready)
VALUES ('11111111-1111-4111-8111-111111111111', 1234567, 'Contoso Ltd',
        'admin@contoso.example', 'partner_center', 'gold', true)
ON CONFLICT DO NOTHING;

INSERT INTO partner_competencies (partner_id, area, level, expires_at)
VALUES
    ('11111111-1111-4111-8111-111111111111', 'Cloud Platform', 'gold',   now() + interval '1 year'),
    ('11111111-1111-4111-8111-111111111111', 'Data Analytics', 'silver', now() + interval '1 year')
ON CONFLICT DO NOTHING;

INSERT INTO users (id, partner_id, email, display_name, roles)
VALUES
    ('22222222-2222-4222-8222-000000000001', '11111111-1111-4111-8111-111111111111',
     'ga@contoso.example', 'Grace Admin', '{global_admin}'),
    ('22222222-2222-4222-8222-000000000002', '11111111-1111-4111-8111-111111111111',
     'ua@contoso.example', 'Uma Useradmin', '{user_admin}'),
    ('22222222-2222-4222-8222-000000000003', '11111111-1111-4111-8111-111111111111',
     'aa@contoso.example', 'Alex Agent', '{admin_agent}'),
    ('22222222-2222-4222-8222-000000000004', '11111111-1111-4111-8111-111111111111',
     'pa@contoso.example', 'Pat Partneradmin', '{mpn_partner_admin}'),
    ('22222222-2222-4222-8222-000000000005', '11111111-1111-4111-8111-111111111111',
     'emp@contoso.example', 'Eve Employee', '{}')
ON CONFLICT DO NOTHING;

-- Bought three days ago: still inside the 30-day refund window (R10).
INSERT INTO purchases (id, partner_id, package_id, status, purchased_at, term_end, created_by)
SELECT 'cccccccc-0000-4000-8000-000000000001', '11111111-1111-4111-8111-111111111111',
       pk.id, 'active', t.at, t.at + make_interval(months => pk.term_months), 'seed-demo'
FROM packages pk
CROSS JOIN (SELECT now() - interval '3 days' AS at) AS t
WHERE pk.id = 'bbbbbbbb-0000-4000-8000-000000000003'
ON CONFLICT DO NOTHING;

-- One benefit per allocation of the Gold package; the benefit id carries the
-- product's number (dddd…NN for product aaaa…NN).
INSERT INTO benefits (id, partner_id, purchase_id, product_id, category, status, quantity)
SELECT b.id, pu.partner_id, pu.id, pb.product_id, p.category, 'available', pb.quantity
FROM (VALUES
        ('dddddddd-0000-4000-8000-000000000001'::uuid, 'aaaaaaaa-0000-4000-8000-000000000001'::uuid),
        ('dddddddd-0000-4000-8000-000000000002'::uuid, 'aaaaaaaa-0000-4000-8000-000000000002'::uuid),
        ('dddddddd-0000-4000-8000-000000000003'::uuid, 'aaaaaaaa-0000-4000-8000-000000000003'::uuid),
        ('dddddddd-0000-4000-8000-000000000004'::uuid, 'aaaaaaaa-0000-4000-8000-000000000004'::uuid),
        ('dddddddd-0000-4000-8000-000000000005'::uuid, 'aaaaaaaa-0000-4000-8000-000000000005'::uuid),
        ('dddddddd-0000-4000-8000-000000000006'::uuid, 'aaaaaaaa-0000-4000-8000-000000000006'::uuid),
        ('dddddddd-0000-4000-8000-000000000008'::uuid, 'aaaaaaaa-0000-4000-8000-000000000008'::uuid),
        ('dddddddd-0000-4000-8000-000000000009'::uuid, 'aaaaaaaa-0000-4000-8000-000000000009'::uuid),
        ('dddddddd-0000-4000-8000-000000000010'::uuid, 'aaaaaaaa-0000-4000-8000-000000000010'::uuid),
        ('dddddddd-0000-4000-8000-000000000012'::uuid, 'aaaaaaaa-0000-4000-8000-000000000012'::uuid),
        ('dddddddd-0000-4000-8000-000000000013'::uuid, 'aaaaaaaa-0000-4000-8000-000000000013'::uuid)
     ) AS b (id, product_id)
JOIN purchases pu ON pu.id = 'cccccccc-0000-4000-8000-000000000001'
JOIN package_benefits pb ON pb.package_id = pu.package_id AND pb.product_id = b.product_id
JOIN products p ON p.id = pb.product_id
ORDER BY b.id
ON CONFLICT DO NOTHING;

-- ---------------------------------------------------------------------------
-- Fabrikam Inc: Silver partner whose membership is still in PMC (R1)
-- ---------------------------------------------------------------------------

INSERT INTO partners (id, mpn_id, name, account_email, membership_location, level, co_sell_ready)
VALUES ('33333333-3333-4333-8333-333333333333', 7654321, 'Fabrikam Inc',
        'owner@fabrikam.example', 'pmc', 'silver', false)
ON CONFLICT DO NOTHING;

INSERT INTO partner_competencies (partner_id, area, level, expires_at)
VALUES ('33333333-3333-4333-8333-333333333333', 'Application Development', 'silver',
        now() + interval '1 year')
ON CONFLICT DO NOTHING;

INSERT INTO users (id, partner_id, email, display_name, roles)
VALUES ('44444444-4444-4444-8444-000000000001', '33333333-3333-4333-8333-333333333333',
        'ga@fabrikam.example', 'Frank Global', '{global_admin}')
ON CONFLICT DO NOTHING;
