-- mpn-benefits: the whole model of DESIGN §3.
-- The database keeps the integrity: foreign keys, CHECKs on every state and
-- category, and triggers that keep benefits.used in step with seats, keys and
-- support requests so that a CHECK (used <= quantity) refuses oversubscription
-- whatever the number of service processes.

CREATE EXTENSION IF NOT EXISTS pgcrypto;

CREATE TABLE partners (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    mpn_id              bigint NOT NULL UNIQUE CHECK (mpn_id > 0),
    name                text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    account_email       text NOT NULL CHECK (length(account_email) BETWEEN 3 AND 254),
    membership_location text NOT NULL CHECK (membership_location IN ('partner_center', 'pmc')),
    level               text NOT NULL CHECK (level IN ('member', 'action_pack', 'silver', 'gold')),
    co_sell_ready       boolean NOT NULL DEFAULT false,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE partner_competencies (
    partner_id uuid NOT NULL REFERENCES partners (id) ON DELETE CASCADE,
    area       text NOT NULL CHECK (length(area) BETWEEN 1 AND 100),
    level      text NOT NULL CHECK (level IN ('silver', 'gold')),
    expires_at timestamptz,
    PRIMARY KEY (partner_id, area)
);

CREATE TABLE users (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    partner_id   uuid NOT NULL REFERENCES partners (id),
    email        text NOT NULL CHECK (length(email) BETWEEN 3 AND 254),
    display_name text NOT NULL CHECK (length(display_name) BETWEEN 1 AND 200),
    roles        text[] NOT NULL DEFAULT '{}'
                 CHECK (roles <@ ARRAY['global_admin', 'user_admin', 'admin_agent', 'mpn_partner_admin']),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_partner_email_uq ON users (partner_id, lower(email));
CREATE INDEX users_partner_idx ON users (partner_id, id);

-- Catalog: products are what a benefit gives; packages allocate products.
CREATE TABLE products (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    code                text NOT NULL UNIQUE,
    name                text NOT NULL,
    category            text NOT NULL
                        CHECK (category IN ('software', 'cloud', 'visual_studio', 'technical', 'go_to_market')),
    cloud_kind          text CHECK (cloud_kind IN ('usage_based', 'license_based')),
    languages           text[] NOT NULL DEFAULT '{}',
    os_types            text[] NOT NULL DEFAULT '{}',
    instructions        text NOT NULL DEFAULT '',
    portal_url          text,
    -- technical benefits: what one support request uses ('incidents' or 'hours')
    unit                text CHECK (unit IN ('incidents', 'hours')),
    -- go-to-market offers: what the partner needs to activate it
    offer_requirement   text CHECK (offer_requirement IN ('silver_competency', 'gold_competency', 'co_sell_ready')),
    offer_duration_days integer CHECK (offer_duration_days > 0),
    CHECK ((category = 'cloud') = (cloud_kind IS NOT NULL)),
    CHECK ((category = 'technical') = (unit IS NOT NULL))
);

CREATE TABLE product_downloads (
    product_id uuid NOT NULL REFERENCES products (id) ON DELETE CASCADE,
    language   text NOT NULL,
    os         text NOT NULL,
    url        text NOT NULL,
    PRIMARY KEY (product_id, language, os)
);

CREATE TABLE packages (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    code        text NOT NULL UNIQUE,
    name        text NOT NULL,
    price       numeric(12, 2) NOT NULL CHECK (price >= 0),
    currency    char(3) NOT NULL,
    term_months integer NOT NULL CHECK (term_months > 0)
);

CREATE TABLE package_benefits (
    package_id uuid NOT NULL REFERENCES packages (id) ON DELETE CASCADE,
    product_id uuid NOT NULL REFERENCES products (id),
    quantity   integer NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (package_id, product_id)
);

CREATE TABLE purchases (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    partner_id      uuid NOT NULL REFERENCES partners (id),
    package_id      uuid NOT NULL REFERENCES packages (id),
    status          text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'cancelled', 'expired')),
    purchased_at    timestamptz NOT NULL DEFAULT now(),
    term_end        timestamptz NOT NULL,
    cancelled_at    timestamptz,
    refund_amount   numeric(12, 2),
    refund_currency char(3),
    created_by      text NOT NULL,
    CHECK (term_end > purchased_at),
    CHECK ((status = 'cancelled') = (cancelled_at IS NOT NULL))
);
-- A partner holds a package at most once while it is active.
CREATE UNIQUE INDEX purchases_one_active_uq ON purchases (partner_id, package_id) WHERE status = 'active';
CREATE INDEX purchases_partner_idx ON purchases (partner_id, id);

CREATE TABLE benefits (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    partner_id   uuid NOT NULL REFERENCES partners (id),
    purchase_id  uuid NOT NULL REFERENCES purchases (id),
    product_id   uuid NOT NULL REFERENCES products (id),
    category     text NOT NULL
                 CHECK (category IN ('software', 'cloud', 'visual_studio', 'technical', 'go_to_market')),
    status       text NOT NULL DEFAULT 'available'
                 CHECK (status IN ('available', 'pending', 'active', 'expired', 'cancelled')),
    quantity     integer NOT NULL CHECK (quantity > 0),
    used         integer NOT NULL DEFAULT 0,
    activated_at timestamptz,
    expires_at   timestamptz,
    access_id    text UNIQUE,
    contract_id  text UNIQUE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT benefits_used_within_quantity CHECK (used BETWEEN 0 AND quantity)
);
CREATE INDEX benefits_partner_idx ON benefits (partner_id, id);
CREATE INDEX benefits_purchase_idx ON benefits (purchase_id);

-- License keys, encrypted at rest with pgcrypto (KEY_ENCRYPTION_KEY); key_mac
-- (an HMAC under the same key) finds duplicates without decrypting.
CREATE TABLE license_keys (
    id          bigserial PRIMARY KEY,
    product_id  uuid NOT NULL REFERENCES products (id),
    key_enc     bytea NOT NULL,
    key_mac     bytea NOT NULL,
    benefit_id  uuid REFERENCES benefits (id),
    assigned_at timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (product_id, key_mac),
    CHECK ((benefit_id IS NULL) = (assigned_at IS NULL))
);
CREATE INDEX license_keys_free_idx ON license_keys (product_id, id) WHERE benefit_id IS NULL;
CREATE INDEX license_keys_benefit_idx ON license_keys (benefit_id) WHERE benefit_id IS NOT NULL;

-- First reveal of a software or license-based cloud benefit (R5, R6); it ends
-- the refund window of the purchase (R10).
CREATE TABLE key_reveals (
    id          bigserial PRIMARY KEY,
    benefit_id  uuid NOT NULL REFERENCES benefits (id),
    language    text NOT NULL,
    os          text NOT NULL,
    revealed_by text NOT NULL,
    revealed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX key_reveals_benefit_idx ON key_reveals (benefit_id);

CREATE TABLE seat_assignments (
    benefit_id  uuid NOT NULL REFERENCES benefits (id),
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    assigned_by text NOT NULL,
    assigned_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (benefit_id, user_id)
);
CREATE INDEX seat_assignments_user_idx ON seat_assignments (user_id);

CREATE TABLE activations (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    partner_id   uuid NOT NULL REFERENCES partners (id),
    benefit_id   uuid NOT NULL REFERENCES benefits (id),
    kind         text NOT NULL CHECK (kind IN ('technical', 'go_to_market')),
    status       text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'active', 'rejected')),
    requested_by text NOT NULL,
    requested_at timestamptz NOT NULL DEFAULT now(),
    processed_by text,
    processed_at timestamptz,
    access_id    text,
    contract_id  text,
    expires_at   timestamptz,
    reason       text,
    CHECK ((status = 'pending') = (processed_at IS NULL))
);
-- At most one live (pending or active) activation per benefit.
CREATE UNIQUE INDEX activations_live_uq ON activations (benefit_id) WHERE status IN ('pending', 'active');
CREATE INDEX activations_status_idx ON activations (status, id);

CREATE TABLE marketing_contacts (
    partner_id         uuid PRIMARY KEY REFERENCES partners (id),
    user_id            uuid NOT NULL REFERENCES users (id),
    email              text NOT NULL,
    phone              text NOT NULL CHECK (phone ~ '^\+[1-9][0-9]{6,14}$'),
    preferred_language text NOT NULL,
    version            integer NOT NULL DEFAULT 1,
    updated_at         timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE support_requests (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    partner_id         uuid NOT NULL REFERENCES partners (id),
    benefit_id         uuid NOT NULL REFERENCES benefits (id),
    type               text NOT NULL CHECK (type IN ('cloud_on_behalf_of_customer', 'on_premises',
                                                     'presales_deployment', 'advisory_hours')),
    customer_tenant_id uuid,
    hours              integer CHECK (hours > 0),
    description        text,
    units              integer NOT NULL CHECK (units > 0),
    created_by         text NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    CHECK (type <> 'cloud_on_behalf_of_customer' OR customer_tenant_id IS NOT NULL),
    CHECK (type <> 'advisory_hours' OR hours IS NOT NULL)
);
CREATE INDEX support_requests_benefit_idx ON support_requests (benefit_id, id);

CREATE TABLE audit_events (
    id          bigserial PRIMARY KEY,
    partner_id  uuid REFERENCES partners (id),
    actor       text NOT NULL,
    action      text NOT NULL,
    target_type text NOT NULL,
    target_id   text NOT NULL,
    request_id  text,
    details     jsonb NOT NULL DEFAULT '{}',
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_events_partner_idx ON audit_events (partner_id, id DESC);

-- Idempotency-Key records: the first answer of a state-changing POST, per
-- scope (partner id, or the operator's subject).
CREATE TABLE idempotency_keys (
    scope        text NOT NULL,
    key          text NOT NULL,
    request_hash bytea NOT NULL,
    status       integer NOT NULL,
    body         text NOT NULL,
    location     text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_keys_created_idx ON idempotency_keys (created_at);

-- Keep benefits.used in step with what uses it; the CHECK on benefits then
-- refuses any oversubscription in the same statement.
CREATE FUNCTION seat_used_trg() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        UPDATE benefits SET used = used + 1 WHERE id = NEW.benefit_id;
        RETURN NEW;
    END IF;
    UPDATE benefits SET used = used - 1 WHERE id = OLD.benefit_id;
    RETURN OLD;
END $$;
CREATE TRIGGER seat_assignments_used AFTER INSERT OR DELETE ON seat_assignments
    FOR EACH ROW EXECUTE FUNCTION seat_used_trg();

CREATE FUNCTION support_used_trg() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE benefits SET used = used + NEW.units WHERE id = NEW.benefit_id;
    RETURN NEW;
END $$;
CREATE TRIGGER support_requests_used AFTER INSERT ON support_requests
    FOR EACH ROW EXECUTE FUNCTION support_used_trg();
