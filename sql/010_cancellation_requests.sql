-- Cancellation as a service request (issue 13, DESIGN §4b "Partner workflows", R10): a partner
-- asks to cancel a purchase, or a single benefit/offer of it; the refund is decided by the R10
-- rules at the moment of the request and kept here; an operator completes (the cancellation
-- happens, the refund is recorded as decided) or rejects it (with a reason).
CREATE TABLE cancellation_requests (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    partner_id       uuid NOT NULL REFERENCES partners (id),
    purchase_id      uuid NOT NULL REFERENCES purchases (id),
    benefit_id       uuid REFERENCES benefits (id), -- NULL: the whole purchase
    reason           text NOT NULL CHECK (length(reason) BETWEEN 1 AND 2000),
    accept_no_refund boolean NOT NULL DEFAULT false,
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'completed', 'rejected')),
    -- decided at request time: an amount when refunded, and why not otherwise
    refund_amount    numeric(12, 2) CHECK (refund_amount >= 0),
    refund_currency  char(3),
    refund_reasons   text[] NOT NULL DEFAULT '{}',
    rejection_reason text CHECK (length(rejection_reason) BETWEEN 1 AND 500),
    requested_by     text NOT NULL,
    requested_at     timestamptz NOT NULL DEFAULT now(),
    processed_by     text,
    processed_at     timestamptz,
    CHECK ((refund_amount IS NULL) = (refund_currency IS NULL)),
    CHECK ((refund_amount IS NULL) = (cardinality(refund_reasons) > 0)),
    CHECK ((status = 'pending') = (processed_at IS NULL)),
    CHECK ((status = 'rejected') = (rejection_reason IS NOT NULL))
);
-- One pending request per purchase, whatever races: the service locks the purchase first and
-- answers 409 cancellation-pending; this index holds even if a path forgets.
CREATE UNIQUE INDEX cancellation_requests_one_pending_uq ON cancellation_requests (purchase_id)
    WHERE status = 'pending';
CREATE INDEX cancellation_requests_partner_idx ON cancellation_requests (partner_id, id);
CREATE INDEX cancellation_requests_queue_idx ON cancellation_requests (status, id);

-- What GET .../cancellation-requests/{requestId} shows.
CREATE VIEW cancellation_request_docs AS
SELECT cr.id, cr.partner_id, cr.status,
       json_build_object(
           'id', cr.id, 'partner_id', cr.partner_id, 'purchase_id', cr.purchase_id,
           'benefit_id', cr.benefit_id, 'reason', cr.reason,
           'accept_no_refund', cr.accept_no_refund, 'status', cr.status,
           'refund', CASE WHEN cr.refund_amount IS NULL THEN NULL
                          ELSE json_build_object('amount', cr.refund_amount,
                                                 'currency', cr.refund_currency) END,
           'refund_reasons', to_json(cr.refund_reasons),
           'rejection_reason', cr.rejection_reason,
           'requested_by', cr.requested_by, 'requested_at', cr.requested_at,
           'processed_at', cr.processed_at) AS doc
FROM cancellation_requests cr;

-- A partner's reads change with its requests (sql/007_data_versions.sql).
CREATE CONSTRAINT TRIGGER cancellation_requests_bump_version
    AFTER INSERT OR UPDATE OR DELETE ON cancellation_requests
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION bump_partner_of_row();
