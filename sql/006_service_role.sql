-- The role the service runs as: data only. It reads and writes the tables' rows, never their
-- definitions (no DDL: PostgreSQL 15 gives PUBLIC no CREATE on schema public), is no superuser
-- (pg_authid and the server's files stay out of reach), and cannot rewrite the audit trail.
-- Migrations run as the schema owner (the role that runs `mpn-benefits migrate`); tables that
-- later migrations create get the same grants (ALTER DEFAULT PRIVILEGES of that owner).
-- The role is created without a password: give it one (or a certificate, or peer
-- authentication) where the service logs in: ALTER ROLE mpn_service PASSWORD '...'.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'mpn_service') THEN
        CREATE ROLE mpn_service LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION;
    END IF;
END
$$;

DO $$
BEGIN
    EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO mpn_service', current_database());
END
$$;
GRANT USAGE ON SCHEMA public TO mpn_service;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO mpn_service;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO mpn_service;
ALTER DEFAULT PRIVILEGES IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO mpn_service;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO mpn_service;
-- The audit trail is append-only for the service; the migrations' bookkeeping is not its own.
REVOKE UPDATE, DELETE ON audit_events FROM mpn_service;
REVOKE INSERT, UPDATE, DELETE ON schema_migrations FROM mpn_service;

-- Bind values (the key-encryption key, license keys, tokens' subjects) never reach
-- PostgreSQL's log, whatever log_statement or log_min_duration_statement say. Setting it needs
-- a superuser: a migration run by a plain schema owner leaves it to the DBA (notice).
DO $$
BEGIN
    IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        ALTER ROLE mpn_service SET log_parameter_max_length = 0;
        ALTER ROLE mpn_service SET log_parameter_max_length_on_error = 0;
    ELSE
        RAISE NOTICE 'run as a superuser: ALTER ROLE mpn_service SET log_parameter_max_length = 0';
    END IF;
END
$$;
