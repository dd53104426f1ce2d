-- Issue 13: every language x OS pair a product offers has at least one
-- download (DESIGN §4b "Partner workflows"), as a database rule.
--
-- A deferred constraint trigger: a product and its downloads are written in
-- several statements (the product row, then its downloads; a PATCH that adds a
-- language, then the download of the new pairs), so the rule is checked once,
-- at COMMIT, whoever writes (the admin catalog routes, the demo seed, SQL by
-- hand). A transaction that leaves a product with a pair and no download fails
-- with check_violation (23514), constraint product_downloads_complete, the
-- missing pairs in DETAIL as JSON. The catalog routes switch the constraint to
-- IMMEDIATE before answering, so they can answer 422 naming the pairs.
--
-- Products already stored are not re-checked here; the next change of such a
-- product must complete it. Depends on 001 only.

-- The pairs of a product without a download: [{language, os}] in order, [] when
-- complete (or when the product does not exist).
CREATE FUNCTION product_missing_downloads(pid uuid) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT COALESCE(jsonb_agg(jsonb_build_object('language', l.language, 'os', o.os)
                              ORDER BY l.ord, o.ord), '[]'::jsonb)
    FROM products p
    CROSS JOIN LATERAL unnest(p.languages) WITH ORDINALITY AS l (language, ord)
    CROSS JOIN LATERAL unnest(p.os_types) WITH ORDINALITY AS o (os, ord)
    WHERE p.id = pid
      AND NOT EXISTS (SELECT 1 FROM product_downloads d
                      WHERE d.product_id = p.id AND d.language = l.language AND d.os = o.os)
$$;

CREATE FUNCTION product_downloads_complete_trg() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    ids     uuid[];
    pid     uuid;
    missing jsonb;
    pcode   text;
BEGIN
    IF TG_TABLE_NAME = 'products' THEN
        ids := ARRAY[NEW.id];
    ELSIF TG_OP = 'DELETE' THEN
        ids := ARRAY[OLD.product_id];
    ELSIF TG_OP = 'UPDATE' THEN
        ids := ARRAY[OLD.product_id, NEW.product_id];
    ELSE
        RETURN NULL;
    END IF;
    FOREACH pid IN ARRAY ids LOOP
        missing := product_missing_downloads(pid);
        IF jsonb_array_length(missing) > 0 THEN
            SELECT code INTO pcode FROM products WHERE id = pid;
            RAISE EXCEPTION 'product % offers % language and OS pair(s) without a download',
                            pcode, jsonb_array_length(missing)
                USING ERRCODE = 'check_violation',
                      CONSTRAINT = 'product_downloads_complete',
                      DETAIL = missing::text,
                      HINT = 'Give every language x OS pair of the product a download in the same '
                             || 'transaction (PUT /v1/admin/products/{productId}/downloads).';
        END IF;
    END LOOP;
    RETURN NULL;
END $$;

-- A product that gains pairs (a new row, new languages or OS types).
CREATE CONSTRAINT TRIGGER product_downloads_complete
    AFTER INSERT OR UPDATE OF languages, os_types ON products
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION product_downloads_complete_trg();

-- A download that goes away or moves to another pair. (ON DELETE CASCADE of a
-- product removes its downloads too: the product is gone, nothing is missing.)
CREATE CONSTRAINT TRIGGER product_downloads_complete
    AFTER DELETE OR UPDATE ON product_downloads
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION product_downloads_complete_trg();
