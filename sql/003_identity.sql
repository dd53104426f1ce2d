-- Issue 11: token revocation. A row refuses the tokens of one user (user_id = the token's sub)
-- or of a whole partner (user_id = '') whose iat is at or before revoked_at (whole seconds).
-- Every service process holds the rows in memory and LISTENs on mb_token_revocations
-- (src/identity/revocation.c), so a revocation reaches every replica at commit.
CREATE TABLE token_revocations (
    partner_id uuid NOT NULL REFERENCES partners (id) ON DELETE CASCADE,
    user_id    text NOT NULL DEFAULT '' CHECK (length(user_id) <= 128),
    revoked_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (partner_id, user_id)
);

-- Revokes now (the moment of the change, not of the transaction's start); a later revocation
-- only moves the moment forward. Returns the moment in force.
CREATE FUNCTION mb_revoke_tokens(p_partner uuid, p_user text) RETURNS timestamptz
LANGUAGE sql AS $$
    INSERT INTO token_revocations (partner_id, user_id, revoked_at)
    VALUES (p_partner, p_user, clock_timestamp())
    ON CONFLICT (partner_id, user_id)
    DO UPDATE SET revoked_at = GREATEST(token_revocations.revoked_at, EXCLUDED.revoked_at)
    RETURNING revoked_at
$$;

CREATE FUNCTION token_revocations_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('mb_token_revocations',
                      NEW.partner_id::text || '/' || NEW.user_id || '/' ||
                      floor(extract(epoch FROM NEW.revoked_at))::bigint::text);
    RETURN NULL;
END $$;

CREATE TRIGGER token_revocations_notify AFTER INSERT OR UPDATE ON token_revocations
    FOR EACH ROW EXECUTE FUNCTION token_revocations_notify();

-- Deleting a user, or taking a role from them, refuses every token they hold: a token carries
-- its roles, so one issued before the change would keep the role until it expires.
CREATE FUNCTION users_revoke_tokens() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM mb_revoke_tokens(OLD.partner_id, OLD.id::text);
    ELSIF NOT (NEW.roles @> OLD.roles) THEN
        PERFORM mb_revoke_tokens(NEW.partner_id, NEW.id::text);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER users_revoke_tokens_delete AFTER DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION users_revoke_tokens();
CREATE TRIGGER users_revoke_tokens_roles AFTER UPDATE OF roles ON users
    FOR EACH ROW EXECUTE FUNCTION users_revoke_tokens();
