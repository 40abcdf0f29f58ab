-- Staging from production (docs/security.md, "Environments"): a database
-- restored from a production dump loses every personal value before anyone
-- uses it. Keep in step with the upgrade script's "Part 5" section: the
-- upgrade drill compares an updated catalog with a fresh install.

-- The personal columns, in one place: the anonymizer replaces these, in the
-- tables and inside audit_log's old_row/new_row. Restaurant and branch names
-- and addresses identify a business, and often its owner: they go too.
-- Products, prices, statuses and times are not personal and stay.
CREATE FUNCTION personal_columns()
    RETURNS TABLE (table_name text, column_name text)
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT v.t, v.c FROM (VALUES ('restaurants', 'name'),
                                 ('users', 'username'), ('users', 'full_name'), ('users', 'email'),
                                 ('users', 'password_hash'),
                                 ('branches', 'name'), ('branches', 'address'),
                                 ('clients', 'name'), ('clients', 'email'), ('clients', 'phone')) v(t, c);
END;

-- The fake value of one personal column of the row with this id: a function
-- of the id alone, so every copy anonymized from the same dump is the same
-- (tests and bug reports agree on "client 42"), a row keeps one fake in the
-- table and in every audit row that mentions it, deleted rows included, and
-- unique columns stay unique (users.username, users.email,
-- clients (restaurant_id, email)) because ids are. No input value is used:
-- nothing of the original can be recovered from a fake. The password hash
-- is one no password matches (a leading '!', as in /etc/shadow).
CREATE FUNCTION staging_fake(table_name text, column_name text, id bigint) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
RETURN CASE staging_fake.table_name || '.' || staging_fake.column_name
    WHEN 'restaurants.name' THEN 'Restaurant #' || staging_fake.id
    WHEN 'users.username' THEN 'staging_user_' || staging_fake.id
    WHEN 'users.full_name' THEN
        (ARRAY['Ana', 'Luis', 'Marta', 'Jorge', 'Sofía', 'Pedro', 'Lucía', 'Diego', 'Elena', 'Raúl'])[1 + staging_fake.id % 10]
        || ' ' || (ARRAY['García', 'Pérez', 'Rojas', 'Torres', 'Flores', 'Vargas', 'Castro'])[1 + staging_fake.id % 7]
        || ' #' || staging_fake.id
    WHEN 'users.email' THEN 'user' || staging_fake.id || '@staging.invalid'
    WHEN 'users.password_hash' THEN '!anonymized'
    WHEN 'branches.name' THEN 'Branch #' || staging_fake.id
    WHEN 'branches.address' THEN staging_fake.id || ' Example Street'
    WHEN 'clients.name' THEN
        (ARRAY['Carmen', 'José', 'Rosa', 'Miguel', 'Julia', 'Andrés', 'Paula', 'Hugo'])[1 + staging_fake.id % 8]
        || ' ' || (ARRAY['Ramos', 'Silva', 'Mendoza', 'Ortiz', 'Núñez'])[1 + staging_fake.id % 5]
        || ' #' || staging_fake.id
    WHEN 'clients.email' THEN 'client' || staging_fake.id || '@staging.invalid'
    WHEN 'clients.phone' THEN '+00 555 ' || lpad((staging_fake.id % 100000000)::text, 8, '0')
END;

-- A logged row (audit_log.old_row or new_row) of table_name with its
-- personal values replaced by the fakes of the row's own id; keys it doesn't
-- have stay absent and JSON nulls stay null.
CREATE FUNCTION staging_fake_row(table_name text, j jsonb) RETURNS jsonb
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
RETURN staging_fake_row.j || coalesce(
    (SELECT jsonb_object_agg(p.column_name,
                             CASE WHEN jsonb_typeof(staging_fake_row.j -> p.column_name) = 'null' THEN 'null'::jsonb
                                  ELSE to_jsonb(olaclick.staging_fake(p.table_name, p.column_name,
                                                                      (staging_fake_row.j ->> 'id')::bigint)) END)
     FROM olaclick.personal_columns() p
     WHERE p.table_name = staging_fake_row.table_name AND staging_fake_row.j ? p.column_name),
    '{}'::jsonb);

-- olaclick.anonymize_for_staging(database): replaces every personal value of
-- this database (personal_columns(), in the tables and in the audit log) with
-- its fake, and returns how many rows of each table it rewrote.
--
-- It never runs on production by mistake: the database must be marked
--   ALTER DATABASE shop_staging SET olaclick.environment = 'staging';  -- or 'development'
-- in the catalog (a session's SET doesn't count, and an unmarked database is
-- production), and its name must be given, so a session connected to the
-- wrong server or database is refused (55000, 22023). Superusers only (42501):
-- its statements run in replica mode (session_replication_role), so no
-- trigger fires for them: the audit trigger would log every original value
-- again in old_row, and the append-only guard of audit_log would refuse the
-- rewrite of the log. Only personal columns are written, never a key, total,
-- status or time, so no guarantee depends on a trigger skipped here; the mode
-- is put back before it returns (an error aborts the transaction with it).
--
-- The replaced values stay in the tables' dead row versions until VACUUM
-- FULL, and in WAL: scripts/anonymize runs VACUUM FULL and ANALYZE after it
-- (ANALYZE replaces the column statistics, which sample values too).
CREATE FUNCTION anonymize_for_staging(database name)
    RETURNS TABLE (table_name text, rows_rewritten bigint)
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    marked text;
    mode text := pg_catalog.current_setting('session_replication_role');
    t text;
    n bigint;
BEGIN
    IF NOT (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = current_user) THEN
        RAISE EXCEPTION 'olaclick.anonymize_for_staging must be run by a superuser'
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = pg_catalog.format('%s is not a superuser.', current_user),
                  HINT = 'Run it as the superuser that restored the staging copy.';
    END IF;
    IF anonymize_for_staging.database IS DISTINCT FROM pg_catalog.current_database() THEN
        RAISE EXCEPTION 'olaclick.anonymize_for_staging: this session is connected to database %, not %',
                        pg_catalog.current_database(), anonymize_for_staging.database
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'The database to anonymize is named as a confirmation and must be the one connected to.',
                  HINT = 'Connect to the staging copy and give its name, e.g. SELECT * FROM olaclick.anonymize_for_staging(''shop_staging'').';
    END IF;
    SELECT pg_catalog.substr(c.c, pg_catalog.length('olaclick.environment=') + 1) INTO marked
    FROM pg_catalog.pg_db_role_setting d JOIN pg_catalog.pg_database db ON db.oid = d.setdatabase,
         pg_catalog.unnest(d.setconfig) c(c)
    WHERE db.datname = pg_catalog.current_database() AND d.setrole = 0 AND c.c LIKE 'olaclick.environment=%';
    IF marked IS NULL OR marked NOT IN ('staging', 'development') THEN
        RAISE EXCEPTION 'olaclick.anonymize_for_staging runs only on a database marked staging or development'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = pg_catalog.format('Database %s is %s.', pg_catalog.current_database(),
                                             coalesce('marked olaclick.environment = ' || marked,
                                                      'not marked, which counts as production')),
                  HINT = pg_catalog.format('On the restored copy, never on production: ALTER DATABASE %I SET olaclick.environment = ''staging'';',
                                           pg_catalog.current_database());
    END IF;
    IF pg_catalog.pg_is_in_recovery() THEN
        RAISE EXCEPTION 'olaclick.anonymize_for_staging can''t run on a standby'
            USING ERRCODE = 'read_only_sql_transaction',
                  HINT = 'Run it on the restored copy''s primary.';
    END IF;

    PERFORM pg_catalog.set_config('session_replication_role', 'replica', true);
    FOR t IN SELECT DISTINCT p.table_name FROM olaclick.personal_columns() p ORDER BY 1 LOOP
        EXECUTE (SELECT pg_catalog.format('UPDATE olaclick.%I SET %s', t,
                                          pg_catalog.string_agg(pg_catalog.format(
                                              '%1$I = CASE WHEN %1$I IS NULL THEN NULL ELSE olaclick.staging_fake(%2$L, %1$L, id) END',
                                              p.column_name, t), ', ' ORDER BY p.column_name))
                 FROM olaclick.personal_columns() p WHERE p.table_name = t);
        GET DIAGNOSTICS n = ROW_COUNT;
        table_name := t; rows_rewritten := n;
        RETURN NEXT;
    END LOOP;
    UPDATE olaclick.audit_log l
    SET old_row = olaclick.staging_fake_row(l.table_name, l.old_row),
        new_row = olaclick.staging_fake_row(l.table_name, l.new_row)
    WHERE l.table_name IN (SELECT p.table_name FROM olaclick.personal_columns() p);
    GET DIAGNOSTICS n = ROW_COUNT;
    table_name := 'audit_log'; rows_rewritten := n;
    RETURN NEXT;
    PERFORM pg_catalog.set_config('session_replication_role', mode, true);
END
$$;

REVOKE ALL ON FUNCTION anonymize_for_staging(name) FROM PUBLIC;
