-- The JSON documents the API answers, built where the data is: one place per
-- resource, so every endpoint answers the same shape (api/openapi.yaml).

-- A benefit past its purchase's term or its own expiry is expired, whatever
-- its stored state.
CREATE FUNCTION benefit_status(s text, term_end timestamptz, expires_at timestamptz)
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN s IN ('available', 'pending', 'active')
             AND (term_end <= now() OR (expires_at IS NOT NULL AND expires_at <= now()))
        THEN 'expired' ELSE s END
$$;

CREATE VIEW partner_docs AS
SELECT p.id, p.mpn_id, p.membership_location,
       json_build_object(
           'id', p.id, 'mpn_id', p.mpn_id, 'name', p.name, 'account_email', p.account_email,
           'membership_location', p.membership_location, 'level', p.level,
           'competencies', COALESCE((SELECT json_agg(json_build_object(
                                        'area', c.area, 'level', c.level, 'expires_at', c.expires_at)
                                        ORDER BY c.area)
                                     FROM partner_competencies c WHERE c.partner_id = p.id), '[]'),
           'co_sell_ready', p.co_sell_ready, 'created_at', p.created_at) AS doc
FROM partners p;

CREATE VIEW package_docs AS
SELECT k.id, k.code,
       json_build_object(
           'id', k.id, 'code', k.code, 'name', k.name, 'price', k.price, 'currency', k.currency,
           'term_months', k.term_months,
           'benefits', COALESCE((SELECT json_agg(json_build_object(
                                    'product_id', pr.id, 'category', pr.category, 'name', pr.name,
                                    'quantity', pb.quantity) ORDER BY pr.category, pr.name)
                                 FROM package_benefits pb JOIN products pr ON pr.id = pb.product_id
                                 WHERE pb.package_id = k.id), '[]')) AS doc
FROM packages k;

CREATE VIEW user_docs AS
SELECT u.id, u.partner_id,
       json_build_object('id', u.id, 'email', u.email, 'display_name', u.display_name,
                         'roles', to_json(u.roles), 'created_at', u.created_at) AS doc
FROM users u;

CREATE VIEW purchase_docs AS
SELECT pu.id, pu.partner_id,
       json_build_object(
           'id', pu.id, 'package_id', pu.package_id,
           'status', CASE WHEN pu.status = 'active' AND pu.term_end <= now() THEN 'expired'
                          ELSE pu.status END,
           'purchased_at', pu.purchased_at, 'term_end', pu.term_end,
           'benefit_ids', COALESCE((SELECT json_agg(b.id ORDER BY b.id) FROM benefits b
                                    WHERE b.purchase_id = pu.id), '[]'),
           'refund', CASE WHEN pu.refund_amount IS NULL THEN NULL
                          ELSE json_build_object('amount', pu.refund_amount,
                                                 'currency', pu.refund_currency) END,
           'cancelled_at', pu.cancelled_at) AS doc
FROM purchases pu;

CREATE VIEW benefit_docs AS
SELECT b.id, b.partner_id, b.category, b.purchase_id,
       benefit_status(b.status, pu.term_end, b.expires_at) AS status,
       json_build_object(
           'id', b.id, 'purchase_id', b.purchase_id, 'product_id', b.product_id,
           'category', b.category, 'name', p.name,
           'status', benefit_status(b.status, pu.term_end, b.expires_at),
           'quantity', b.quantity, 'used', b.used,
           'languages', to_json(p.languages), 'os_types', to_json(p.os_types),
           'cloud_kind', p.cloud_kind, 'access_id', b.access_id, 'contract_id', b.contract_id,
           'expires_at', b.expires_at, 'term_end', pu.term_end) AS doc
FROM benefits b
JOIN products p ON p.id = b.product_id
JOIN purchases pu ON pu.id = b.purchase_id;

CREATE VIEW assignment_docs AS
SELECT s.benefit_id, s.user_id, b.partner_id,
       json_build_object('benefit_id', s.benefit_id, 'user_id', s.user_id,
                         'product_id', b.product_id, 'name', p.name, 'category', b.category,
                         'assigned_at', s.assigned_at, 'portal_url', p.portal_url) AS doc
FROM seat_assignments s
JOIN benefits b ON b.id = s.benefit_id
JOIN products p ON p.id = b.product_id;

CREATE VIEW activation_docs AS
SELECT a.id, a.partner_id, a.status,
       json_build_object('id', a.id, 'partner_id', a.partner_id, 'benefit_id', a.benefit_id,
                         'kind', a.kind, 'status', a.status, 'requested_at', a.requested_at,
                         'processed_at', a.processed_at, 'access_id', a.access_id,
                         'contract_id', a.contract_id, 'expires_at', a.expires_at,
                         'reason', a.reason) AS doc
FROM activations a;

CREATE VIEW support_request_docs AS
SELECT r.id, r.benefit_id, r.partner_id,
       json_build_object('id', r.id, 'benefit_id', r.benefit_id, 'type', r.type,
                         'customer_tenant_id', r.customer_tenant_id, 'hours', r.hours,
                         'description', r.description, 'units', r.units,
                         'created_at', r.created_at) AS doc
FROM support_requests r;

CREATE VIEW audit_event_docs AS
SELECT e.id, e.partner_id,
       json_build_object('id', e.id::text, 'at', e.at, 'actor', e.actor, 'action', e.action,
                         'target', json_build_object('type', e.target_type, 'id', e.target_id),
                         'request_id', e.request_id, 'details', e.details) AS doc
FROM audit_events e;

CREATE VIEW marketing_contact_docs AS
SELECT m.partner_id, m.version,
       json_build_object('user_id', m.user_id, 'email', m.email, 'phone', m.phone,
                         'preferred_language', m.preferred_language,
                         'updated_at', m.updated_at) AS doc
FROM marketing_contacts m;
