-- Issue 14: the operator edits the catalog by API, and a purchase keeps what
-- it bought.
--
-- A benefit points at an immutable revision of its product's partner-visible
-- side (name, languages, OS types, instructions, portal link, downloads): the
-- BEFORE INSERT trigger on benefits pins the revision that matches the product
-- as it is at that moment, creating it when the product changed since the last
-- one. Later edits of products and product_downloads therefore never reach the
-- benefits already bought, whoever inserts benefits (the purchase route, the
-- demo seed, the bench data, tests).
--
-- Depends on 001/002 only.

CREATE TABLE product_revisions (
    id           bigserial PRIMARY KEY,
    product_id   uuid NOT NULL REFERENCES products (id),
    digest       text NOT NULL,
    name         text NOT NULL,
    languages    text[] NOT NULL,
    os_types     text[] NOT NULL,
    instructions text NOT NULL,
    portal_url   text,
    -- [{language, os, url}] in (language, os) order
    downloads    jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (product_id, digest)
);

-- The current revision of a product: found by the digest of its content, or
-- created. Concurrent first buyers of a changed product both end up with the
-- one row the unique index lets in.
CREATE FUNCTION product_revision_of(pid uuid) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    snap jsonb;
    d    text;
    rid  bigint;
BEGIN
    SELECT jsonb_build_object(
               'name', p.name, 'languages', to_jsonb(p.languages), 'os_types', to_jsonb(p.os_types),
               'instructions', p.instructions, 'portal_url', p.portal_url,
               'downloads', COALESCE((SELECT jsonb_agg(jsonb_build_object(
                                          'language', dl.language, 'os', dl.os, 'url', dl.url)
                                          ORDER BY dl.language, dl.os)
                                      FROM product_downloads dl WHERE dl.product_id = p.id),
                                     '[]'::jsonb))
      INTO snap FROM products p WHERE p.id = pid;
    IF snap IS NULL THEN
        RETURN NULL; -- no such product: the foreign key of the insert refuses it
    END IF;
    d := md5(snap::text);
    SELECT id INTO rid FROM product_revisions WHERE product_id = pid AND digest = d;
    IF rid IS NOT NULL THEN
        RETURN rid;
    END IF;
    INSERT INTO product_revisions (product_id, digest, name, languages, os_types, instructions,
                                   portal_url, downloads)
    SELECT pid, d, snap->>'name', ARRAY(SELECT jsonb_array_elements_text(snap->'languages')),
           ARRAY(SELECT jsonb_array_elements_text(snap->'os_types')), snap->>'instructions',
           snap->>'portal_url', snap->'downloads'
    ON CONFLICT (product_id, digest) DO NOTHING
    RETURNING id INTO rid;
    IF rid IS NULL THEN -- a concurrent transaction inserted it first
        SELECT id INTO rid FROM product_revisions WHERE product_id = pid AND digest = d;
    END IF;
    RETURN rid;
END $$;

ALTER TABLE benefits ADD COLUMN product_rev bigint REFERENCES product_revisions (id);
UPDATE benefits SET product_rev = product_revision_of(product_id) WHERE product_rev IS NULL;

CREATE FUNCTION benefit_product_rev_trg() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- A benefit keeps the product revision it was bought with, also when its
    -- product_id is rewritten (it never is by the API).
    IF TG_OP = 'INSERT' OR NEW.product_id IS DISTINCT FROM OLD.product_id
       OR NEW.product_rev IS NULL THEN
        NEW.product_rev := product_revision_of(NEW.product_id);
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER benefits_product_rev BEFORE INSERT OR UPDATE OF product_id, product_rev ON benefits
    FOR EACH ROW EXECUTE FUNCTION benefit_product_rev_trg();

ALTER TABLE benefits ALTER COLUMN product_rev SET NOT NULL;

-- What a benefit shows of its product: the revision it was bought with.
CREATE VIEW benefit_catalog AS
SELECT b.id AS benefit_id, b.partner_id, b.product_id, r.name, r.languages, r.os_types,
       r.instructions, r.portal_url, r.downloads
FROM benefits b
JOIN product_revisions r ON r.id = b.product_rev;

-- The same columns as 002, the bought revision's name, languages and OS types.
CREATE OR REPLACE VIEW benefit_docs AS
SELECT b.id, b.partner_id, b.category, b.purchase_id,
       benefit_status(b.status, pu.term_end, b.expires_at) AS status,
       json_build_object(
           'id', b.id, 'purchase_id', b.purchase_id, 'product_id', b.product_id,
           'category', b.category, 'name', r.name,
           'status', benefit_status(b.status, pu.term_end, b.expires_at),
           'quantity', b.quantity, 'used', b.used,
           'languages', to_json(r.languages), 'os_types', to_json(r.os_types),
           'cloud_kind', p.cloud_kind, 'access_id', b.access_id, 'contract_id', b.contract_id,
           'expires_at', b.expires_at, 'term_end', pu.term_end) AS doc,
       -- when it stops being usable (filters and the summary of issue 14)
       LEAST(b.expires_at, pu.term_end) AS expires_on, b.quantity, b.used
FROM benefits b
JOIN products p ON p.id = b.product_id
JOIN product_revisions r ON r.id = b.product_rev
JOIN purchases pu ON pu.id = b.purchase_id;

CREATE OR REPLACE VIEW assignment_docs AS
SELECT s.benefit_id, s.user_id, b.partner_id,
       json_build_object('benefit_id', s.benefit_id, 'user_id', s.user_id,
                         'product_id', b.product_id, 'name', r.name, 'category', b.category,
                         'assigned_at', s.assigned_at, 'portal_url', r.portal_url) AS doc
FROM seat_assignments s
JOIN benefits b ON b.id = s.benefit_id
JOIN product_revisions r ON r.id = b.product_rev;

-- Go-To-Market offer types of the API, stored as the requirement they carry.
CREATE FUNCTION offer_type_of(requirement text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE requirement WHEN 'silver_competency' THEN 'silver_core'
                            WHEN 'gold_competency' THEN 'gold_core'
                            WHEN 'co_sell_ready' THEN 'isv_co_sell_ready' END
$$;

CREATE VIEW product_docs AS
SELECT p.id, p.code,
       json_build_object(
           'id', p.id, 'code', p.code, 'name', p.name, 'category', p.category,
           'languages', to_json(p.languages), 'os_types', to_json(p.os_types),
           'instructions', p.instructions, 'cloud_kind', p.cloud_kind, 'unit', p.unit,
           'offer_type', offer_type_of(p.offer_requirement),
           'offer_duration_days', p.offer_duration_days, 'portal_url', p.portal_url,
           'downloads', COALESCE((SELECT json_agg(json_build_object(
                                      'language', d.language, 'os', d.os, 'url', d.url)
                                      ORDER BY d.language, d.os)
                                  FROM product_downloads d WHERE d.product_id = p.id), '[]')
       ) AS doc
FROM products p;

-- Filters of issue 14: users by a part of their email or name, case-insensitive
-- (trigram indexes serve LIKE '%...%'; pg_trgm ships with PostgreSQL like
-- pgcrypto), the audit trail by action and by actor.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX users_email_trgm_idx ON users USING gin (lower(email) gin_trgm_ops);
CREATE INDEX users_name_trgm_idx ON users USING gin (lower(display_name) gin_trgm_ops);
CREATE INDEX audit_events_partner_action_idx ON audit_events (partner_id, action, id DESC);
CREATE INDEX audit_events_partner_actor_idx ON audit_events (partner_id, actor, id DESC);

-- One CSV value (RFC 4180) for the exports of issue 14: a value a spreadsheet
-- would run as a formula (leading = + - @, tab or CR) gets a leading ', and a
-- value with a comma, a quote or a line end is quoted with its quotes doubled.
CREATE FUNCTION csv_cell(v text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN v IS NULL THEN ''
                WHEN v ~ '[",\r\n]'
                THEN '"' || CASE WHEN v ~ '^[-=+@\t\r]' THEN '''' ELSE '' END
                     || replace(v, '"', '""') || '"'
                ELSE CASE WHEN v ~ '^[-=+@\t\r]' THEN '''' ELSE '' END || v END
$$;
