-- Least-privilege group roles and tenant isolation (row-level security).
--
-- Roles are cluster-wide, so they are created only if missing (another
-- database may have installed olaclick) and DROP EXTENSION leaves them. They
-- are NOLOGIN groups: per-environment login roles are granted them (docs/security.md).
--
--   olaclick_app       DML on the business tables, nothing else: no DDL,
--                      no writes to history or audit (olaclick writes those),
--                      no reading the audit log.
--   olaclick_readonly  reads the business tables (reporting, read replicas).
--   olaclick_auditor   reads audit_log and order_status_history, all tenants.
--   olaclick_pgaudit   holds nothing but pgaudit's object-audit grants:
--                      with pgaudit.role = 'olaclick_pgaudit', every
--                      statement reading a personal column of users or
--                      clients is logged (docs/security.md).
--
-- app and readonly see and write one tenant: olaclick.restaurant_id. Unset,
-- they see no rows and can write none. RLS is ENABLEd and FORCEd on every
-- tenant table; superusers (and so the extension's own triggers writing as the
-- table owner, and pg_dump) bypass it as PostgreSQL always lets them.

DO $roles$
DECLARE r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['olaclick_app', 'olaclick_readonly', 'olaclick_auditor', 'olaclick_pgaudit'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = r) THEN
            EXECUTE pg_catalog.format('CREATE ROLE %I NOLOGIN', r);
        END IF;
    END LOOP;
END
$roles$;

-- The tenant of this session is olaclick.current_restaurant() (src/gucs.rs).
-- Policies call it in a scalar subquery, which the planner runs once (an
-- InitPlan) and feeds to index scans on restaurant_id.

REVOKE ALL ON SCHEMA olaclick FROM PUBLIC;
GRANT USAGE ON SCHEMA olaclick TO olaclick_app, olaclick_readonly, olaclick_auditor, olaclick_pgaudit;
REVOKE ALL ON ALL TABLES IN SCHEMA olaclick FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA olaclick FROM PUBLIC;

-- Ids are the database's to choose: the application may insert and update
-- every column but `id` (a chosen future id would make another tenant's next
-- INSERT fail with 23505). Identity columns draw from their sequences without
-- privileges on them, so the application holds none (nextval() by hand would
-- burn ids too). Column privileges follow the catalog: a column added later is
-- granted by running this block's statements for it in the upgrade script.
-- The application reads every business table and writes all but history;
-- order lines have no id.
DO $app$
DECLARE t text; cols text;
BEGIN
    FOREACH t IN ARRAY olaclick.business_tables() LOOP
        EXECUTE pg_catalog.format('GRANT SELECT ON olaclick.%I TO olaclick_app', t);
    END LOOP;
    GRANT INSERT, UPDATE, DELETE ON olaclick.order_details TO olaclick_app;
    FOREACH t IN ARRAY olaclick.business_tables() LOOP
        CONTINUE WHEN t IN ('order_details', 'order_status_history');
        SELECT pg_catalog.string_agg(pg_catalog.quote_ident(attname), ', ' ORDER BY attnum) INTO cols
        FROM pg_catalog.pg_attribute
        WHERE attrelid = pg_catalog.format('olaclick.%I', t)::regclass AND attnum > 0 AND NOT attisdropped
          AND attname <> 'id';
        EXECUTE pg_catalog.format('GRANT UPDATE (%s) ON olaclick.%I TO olaclick_app', cols, t);
        IF t <> 'restaurants' THEN
            EXECUTE pg_catalog.format('GRANT INSERT (%s), DELETE ON olaclick.%I TO olaclick_app', cols, t);
        END IF;
    END LOOP;
    FOREACH t IN ARRAY olaclick.business_tables() LOOP
        EXECUTE pg_catalog.format('GRANT SELECT ON olaclick.%I TO olaclick_readonly', t);
    END LOOP;
END
$app$;

GRANT SELECT ON audit_log, order_status_history, audit_partitions TO olaclick_auditor;

-- Column grants: pgaudit logs a statement that reads a column this role
-- may read, so reads of people's personal data are logged and a count(*) or
-- a join on ids is not (personal_columns(), sql/staging.sql, minus the
-- businesses' names and addresses, which every dashboard reads).
GRANT SELECT (username, full_name, email, password_hash) ON users TO olaclick_pgaudit;
GRANT SELECT (name, email, phone) ON clients TO olaclick_pgaudit;

GRANT EXECUTE ON FUNCTION current_restaurant(), current_actor() TO olaclick_app, olaclick_readonly;

DO $rls$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY olaclick.business_tables() || 'audit_log'::text LOOP
        EXECUTE pg_catalog.format('ALTER TABLE olaclick.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE pg_catalog.format('ALTER TABLE olaclick.%I FORCE ROW LEVEL SECURITY', t);
        EXECUTE pg_catalog.format(
            'CREATE POLICY tenant ON olaclick.%I TO olaclick_app, olaclick_readonly
               USING (%I = (SELECT olaclick.current_restaurant()))
               WITH CHECK (%I = (SELECT olaclick.current_restaurant()))',
            t, CASE t WHEN 'restaurants' THEN 'id' ELSE 'restaurant_id' END,
               CASE t WHEN 'restaurants' THEN 'id' ELSE 'restaurant_id' END);
    END LOOP;
END
$rls$;

CREATE POLICY auditor ON audit_log TO olaclick_auditor USING (true);
CREATE POLICY auditor ON order_status_history TO olaclick_auditor USING (true);
CREATE POLICY pgaudit ON users TO olaclick_pgaudit USING (true);
CREATE POLICY pgaudit ON clients TO olaclick_pgaudit USING (true);
