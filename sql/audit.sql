-- Audit settings. The log itself is olaclick.audit_log (sql/schema.sql); the
-- trigger that writes it is src/audit.rs.
--
-- A table with no row here is audited in full. Settings are data, so pg_dump
-- carries them with the rest; their changes are audited too, always.

CREATE TABLE audit_settings (
    table_name       text PRIMARY KEY,
    enabled          boolean NOT NULL DEFAULT true,
    excluded_columns text[] NOT NULL DEFAULT '{}'
);
SELECT pg_catalog.pg_extension_config_dump('olaclick.audit_settings', '');

COMMENT ON TABLE audit_settings IS
    'Per-table audit switches and excluded columns; change them with audit_enable/audit_disable/audit_exclude/audit_include.';
COMMENT ON TABLE audit_log IS
    'One row per inserted, updated or deleted row of every business table, and per TRUNCATE. Append-only; see audit_purge().';

-- The rows audit_purge(older_than) (src/retention.rs) removes by DELETE,
-- deleted with the log owner's rights and handed to the caller's statement
-- (which may archive them with the caller's rights): every row before
-- audit_purge_bound(older_than) when archiving into a table, otherwise only
-- those left once whole months are gone (in the default partition or the
-- log kept from before 0.4.0). Callable by anyone, usable by no one else:
-- the log's append-only guard refuses this DELETE unless audit_purge(),
-- which only roles granted EXECUTE can run, is running it.
CREATE FUNCTION audit_purge_rows(older_than timestamptz) RETURNS SETOF audit_log
    LANGUAGE sql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    DELETE FROM olaclick.audit_log
    WHERE at < (SELECT olaclick.audit_purge_bound(audit_purge_rows.older_than))
    RETURNING *;
END;

-- A business table's name, or 22023 (the audit triggers are on these,
-- sql/finalize.sql).
CREATE FUNCTION audited_table(table_name text) RETURNS text
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF table_name IS NULL OR table_name <> ALL (olaclick.business_tables()) THEN
        RAISE EXCEPTION 'olaclick does not audit a table named "%"', table_name
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Name one of olaclick''s business tables, without schema: '
                         || array_to_string(olaclick.business_tables(), ', ') || '.';
    END IF;
    RETURN table_name;
END
$$;

-- Each function is idempotent: calling it twice leaves the same settings.
CREATE FUNCTION audit_enable(table_name text) RETURNS void
    LANGUAGE sql
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    INSERT INTO olaclick.audit_settings (table_name, enabled)
    VALUES (olaclick.audited_table(audit_enable.table_name), true)
    ON CONFLICT (table_name) DO UPDATE SET enabled = true WHERE NOT audit_settings.enabled;
END;

CREATE FUNCTION audit_disable(table_name text) RETURNS void
    LANGUAGE sql
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    INSERT INTO olaclick.audit_settings (table_name, enabled)
    VALUES (olaclick.audited_table(audit_disable.table_name), false)
    ON CONFLICT (table_name) DO UPDATE SET enabled = false WHERE audit_settings.enabled;
END;

CREATE FUNCTION audit_exclude(table_name text, columns text[]) RETURNS void
    LANGUAGE sql
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    INSERT INTO olaclick.audit_settings (table_name, excluded_columns)
    VALUES (olaclick.audited_table(audit_exclude.table_name),
            ARRAY(SELECT DISTINCT c FROM unnest(audit_exclude.columns) c ORDER BY c))
    ON CONFLICT (table_name) DO UPDATE
        SET excluded_columns = ARRAY(SELECT DISTINCT c FROM unnest(audit_settings.excluded_columns || excluded.excluded_columns) c ORDER BY c)
        WHERE NOT audit_settings.excluded_columns @> excluded.excluded_columns;
END;

CREATE FUNCTION audit_include(table_name text, columns text[]) RETURNS void
    LANGUAGE sql
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    UPDATE olaclick.audit_settings
        SET excluded_columns = ARRAY(SELECT c FROM unnest(excluded_columns) c WHERE c <> ALL (audit_include.columns) ORDER BY c)
        WHERE audit_settings.table_name = olaclick.audited_table(audit_include.table_name)
          AND excluded_columns && audit_include.columns;
END;

REVOKE ALL ON FUNCTION audit_enable(text), audit_disable(text), audit_exclude(text, text[]),
                       audit_include(text, text[]) FROM PUBLIC;
