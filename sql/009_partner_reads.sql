-- Issue 13 (partner reads): what a benefit shows before anyone acts on it, and the partner's
-- lists of activations and support requests.
--
-- Go-To-Market eligibility (R9) is decided here, in ONE function: the benefit documents show
-- it and the activation route (src/routes/activation.c) refuses with it, so what a partner
-- sees before pressing Activate is by construction what activating answers.

-- Why the partner may not activate an offer that requires `requirement` (products.
-- offer_requirement): an empty array when it may. The rules of the first wave: any silver or
-- gold competency that has not expired for Silver Core, a gold one for Gold Core, co-sell ready
-- status for ISV Co-sell ready.
CREATE FUNCTION gtm_ineligibility(pid uuid, requirement text) RETURNS text[]
LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN requirement = 'silver_competency' AND NOT EXISTS (
                 SELECT 1 FROM partner_competencies c WHERE c.partner_id = pid
                 AND c.level IN ('silver', 'gold') AND (c.expires_at IS NULL OR c.expires_at > now()))
        THEN ARRAY['silver-competency-required']
        WHEN requirement = 'gold_competency' AND NOT EXISTS (
                 SELECT 1 FROM partner_competencies c WHERE c.partner_id = pid
                 AND c.level = 'gold' AND (c.expires_at IS NULL OR c.expires_at > now()))
        THEN ARRAY['gold-competency-required']
        WHEN requirement = 'co_sell_ready'
             AND NOT COALESCE((SELECT p.co_sell_ready FROM partners p WHERE p.id = pid), false)
        THEN ARRAY['co-sell-ready-required']
        ELSE '{}'::text[] END
$$;

-- A benefit's latest activation (requested last): its id, status and rejection reason.
CREATE INDEX activations_benefit_latest_idx ON activations (benefit_id, requested_at DESC, id DESC);
-- The partner's activations, newest id order as the other lists (by id).
CREATE INDEX activations_partner_idx ON activations (partner_id, id);
CREATE INDEX support_requests_partner_idx ON support_requests (partner_id, id);

-- The same columns as 005, the document with the fields of issue 13: `instructions` (every
-- category; null when the product has none), `unit` (technical), `offer_type` and
-- `eligibility` (Go-To-Market), and the latest activation.
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
           'expires_at', b.expires_at, 'term_end', pu.term_end,
           'instructions', NULLIF(r.instructions, ''),
           'unit', CASE WHEN b.category = 'technical' THEN p.unit END,
           'offer_type', CASE WHEN b.category = 'go_to_market'
                              THEN offer_type_of(p.offer_requirement) END,
           'eligibility', CASE WHEN b.category = 'go_to_market' THEN (
                              SELECT json_build_object('eligible', cardinality(w) = 0,
                                                       'reasons', to_json(w))
                              FROM gtm_ineligibility(b.partner_id, p.offer_requirement) w) END,
           'activation_id', la.id, 'activation_status', la.status,
           'rejection_reason', CASE WHEN la.status = 'rejected' THEN la.reason END) AS doc,
       LEAST(b.expires_at, pu.term_end) AS expires_on, b.quantity, b.used
FROM benefits b
JOIN products p ON p.id = b.product_id
JOIN product_revisions r ON r.id = b.product_rev
JOIN purchases pu ON pu.id = b.purchase_id
LEFT JOIN LATERAL (SELECT a.id, a.status, a.reason FROM activations a
                   WHERE a.benefit_id = b.id
                   ORDER BY a.requested_at DESC, a.id DESC LIMIT 1) la ON true;

-- A Go-To-Market offer is usable until its activation's expiry, never past the purchase's
-- term (src/routes/activation.c clamps new ones); offers activated before this migration too.
UPDATE activations a SET expires_at = pu.term_end
FROM benefits b JOIN purchases pu ON pu.id = b.purchase_id
WHERE b.id = a.benefit_id AND a.kind = 'go_to_market' AND a.expires_at > pu.term_end;
UPDATE benefits b SET expires_at = pu.term_end
FROM purchases pu
WHERE pu.id = b.purchase_id AND b.category = 'go_to_market' AND b.expires_at > pu.term_end;
