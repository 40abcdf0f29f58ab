-- Behind a connection pooler (docs/operations.md, "Behind a connection
-- pooler"): the password lookup PgBouncer's auth_query calls.
--
-- PgBouncer checks a client's SCRAM proof against the secret this returns and
-- then logs in to PostgreSQL with the same proof, so it never holds a
-- password of its own for application roles. Its lookup role (a login role of
-- the group olaclick_pooler, made per environment) may call this and nothing
-- else: no table, no pg_authid.
--
-- It answers only for roles an application should use through the pooler:
-- login roles in one of olaclick's groups (app, readonly, auditor), with a
-- SCRAM secret that has not expired, that are not superuser, replication,
-- BYPASSRLS or CREATEROLE roles, and whose olaclick.tenant_scope is
-- transaction in this database (ALTER ROLE .. SET, or ALTER ROLE .. IN
-- DATABASE, or ALTER DATABASE, or postgresql.conf; src/tenant_scope.rs): a
-- role that would keep a session tenant on a shared server connection can't
-- log in through the pooler. Any other name gets no row, which PgBouncer
-- treats as an unknown user.

DO $roles$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'olaclick_pooler') THEN
        CREATE ROLE olaclick_pooler NOLOGIN;
    END IF;
END
$roles$;

-- SECURITY DEFINER (the extension owner, a superuser): only it can read
-- pg_authid. search_path pinned, every name qualified.
CREATE FUNCTION olaclick.pooler_auth(login text)
    RETURNS TABLE (usename name, passwd text)
    LANGUAGE sql STABLE STRICT SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $pooler_auth$
    SELECT a.rolname, a.rolpassword
    FROM pg_catalog.pg_authid a
    WHERE a.rolname = login
      AND a.rolcanlogin
      AND NOT (a.rolsuper OR a.rolreplication OR a.rolbypassrls OR a.rolcreaterole)
      AND a.rolpassword LIKE 'SCRAM-SHA-256$%'
      AND (a.rolvaliduntil IS NULL OR a.rolvaliduntil > pg_catalog.now())
      AND (pg_catalog.pg_has_role(a.oid, 'olaclick_app', 'MEMBER')
           OR pg_catalog.pg_has_role(a.oid, 'olaclick_readonly', 'MEMBER')
           OR pg_catalog.pg_has_role(a.oid, 'olaclick_auditor', 'MEMBER'))
      -- The role's olaclick.tenant_scope in this database, most specific
      -- first as PostgreSQL applies them: role in database, role, database,
      -- then the server's own value.
      AND pg_catalog.lower(coalesce(
            (SELECT pg_catalog.substr(c, pg_catalog.length('olaclick.tenant_scope=') + 1)
             FROM pg_catalog.pg_db_role_setting s, pg_catalog.unnest(s.setconfig) c
             WHERE s.setrole IN (0, a.oid)
               AND s.setdatabase IN (0, (SELECT d.oid FROM pg_catalog.pg_database d
                                         WHERE d.datname = pg_catalog.current_database()))
               AND c LIKE 'olaclick.tenant\_scope=%'
             ORDER BY s.setrole = 0, s.setdatabase = 0
             LIMIT 1),
            pg_catalog.current_setting('olaclick.tenant_scope', true),
            'session')) = 'transaction'
$pooler_auth$;

REVOKE ALL ON FUNCTION olaclick.pooler_auth(text) FROM PUBLIC;
GRANT USAGE ON SCHEMA olaclick TO olaclick_pooler;
GRANT EXECUTE ON FUNCTION olaclick.pooler_auth(text) TO olaclick_pooler;
