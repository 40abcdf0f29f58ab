-- The audit log's months (docs/audit.md "Months and retention"): what
-- partitions there are, what every partition gets, and the upkeep that
-- olaclick.maintain() and olaclick.audit_purge() (src/retention.rs) run as
-- the log's owner. Months are UTC months, whatever the session's TimeZone:
-- the functions that compute bounds set TimeZone = UTC.

-- Every partition of the log, with its range: from_at NULL for one with no
-- lower bound (the log kept from before 0.4.0), to_at infinity for one with
-- no upper bound (a DBA's), both NULL for the default.
CREATE VIEW audit_partitions AS
SELECT p.partition, p.from_at, p.to_at, p.is_default
FROM (SELECT c.oid::pg_catalog.regclass AS partition,
             pg_catalog.substring(b.bound, $re$FROM \('([^']*)'\)$re$)::timestamptz AS from_at,
             CASE WHEN b.bound LIKE '%TO (MAXVALUE)' THEN 'infinity'::timestamptz
                  ELSE pg_catalog.substring(b.bound, $re$TO \('([^']*)'\)$re$)::timestamptz END AS to_at,
             b.bound = 'DEFAULT' AS is_default
      FROM pg_catalog.pg_inherits i
      JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
      CROSS JOIN LATERAL (SELECT pg_catalog.pg_get_expr(c.relpartbound, c.oid) AS bound) b
      WHERE i.inhparent = 'olaclick.audit_log'::pg_catalog.regclass) p
ORDER BY p.is_default, p.to_at;
COMMENT ON VIEW audit_partitions IS
    'The audit log''s partitions and their ranges (UTC months; made by olaclick.maintain(), removed by olaclick.audit_purge()).';

-- What every partition of the log gets, the default included: the log's
-- statement-level guards (row triggers are cloned from the parent, statement
-- triggers are not, and a statement naming a partition fires only the
-- partition's), and row-level security forced with no policy and no grant
-- but its owner's (default privileges a DBA set would grant some), so nobody
-- reads or writes a partition except through the log.
CREATE FUNCTION audit_log_guard_partition(part regclass) RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE grantee oid;
BEGIN
    EXECUTE format('CREATE OR REPLACE TRIGGER audit_log_insert_guard BEFORE INSERT ON %s
                      FOR EACH STATEMENT EXECUTE FUNCTION olaclick.insert_guard()', part);
    EXECUTE format('CREATE OR REPLACE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON %s
                      FOR EACH STATEMENT EXECUTE FUNCTION olaclick.append_only_guard()', part);
    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY', part);
    FOR grantee IN SELECT DISTINCT a.grantee FROM pg_class c, aclexplode(c.relacl) a
                   WHERE c.oid = part AND a.grantee <> c.relowner LOOP
        EXECUTE format('REVOKE ALL ON %s FROM %s', part,
                       CASE WHEN grantee = 0 THEN 'PUBLIC' ELSE grantee::regrole::text END);
    END LOOP;
END
$$;

-- The upkeep: attaches the log kept from before 0.4.0, if any; then makes
-- the partition of every month that has rows waiting in the default
-- partition, of every month from `since` (if given), and of this month and
-- the next three, moving the waiting rows into it. Returns one line per
-- thing done; nothing when there was nothing to do (then it costs a look at
-- the catalog and at the empty default partition). Run by maintain() as the
-- log's owner, with the purge scope open (the guards then let rows move).
CREATE FUNCTION audit_log_upkeep(since timestamptz) RETURNS SETOF text
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    SET TimeZone = 'UTC'
    SET DateStyle = 'ISO'
    -- Fails loudly rather than moving nothing if row-level security binds
    -- the log's owner.
    SET row_security = off
    -- Waits this long at most for a lock (another transaction reading the
    -- default partition): then fails, and the next run tries again, rather
    -- than queueing the application's writes behind it longer.
    SET lock_timeout = '2s'
AS $$
DECLARE
    kept  regclass := to_regclass('olaclick.audit_log_0_3');
    month timestamptz;
    lo    timestamptz;
    hi    timestamptz;
    part  text;
    moved bigint;
BEGIN
    -- One upkeep at a time.
    PERFORM pg_advisory_xact_lock('olaclick.audit_log'::regclass::oid::bigint);
    IF kept IS NOT NULL AND NOT EXISTS (SELECT FROM pg_inherits WHERE inhrelid = kept) THEN
        -- The 0.3.0 log, left detached by the upgrade with the moment it
        -- ended as a NOT VALID check: validated now (a scan that blocks no
        -- writer: nobody writes it), the attach then needs no scan. Writers
        -- wait for the attach only (see the months below for why).
        SELECT substring(pg_get_constraintdef(c.oid) FROM $re$'([^']*)'$re$)::timestamptz INTO hi
        FROM pg_constraint c WHERE c.conrelid = kept AND c.conname = 'audit_log_0_3_before';
        ALTER TABLE olaclick.audit_log_0_3 VALIDATE CONSTRAINT audit_log_0_3_before;
        LOCK TABLE ONLY olaclick.audit_log IN SHARE ROW EXCLUSIVE MODE;
        WITH m AS (DELETE FROM ONLY olaclick.audit_log_default WHERE at < hi RETURNING *)
        INSERT INTO olaclick.audit_log_0_3 SELECT * FROM m;
        GET DIAGNOSTICS moved = ROW_COUNT;
        EXECUTE format('ALTER TABLE olaclick.audit_log ATTACH PARTITION olaclick.audit_log_0_3 FOR VALUES FROM (MINVALUE) TO (%L)', hi);
        PERFORM olaclick.audit_log_guard_partition(kept);
        RETURN NEXT format('attached olaclick.audit_log_0_3 (the log before 0.4.0) for rows before %s%s', hi,
                           CASE WHEN moved > 0 THEN format(', moving %s rows into it from olaclick.audit_log_default', moved) ELSE '' END);
    END IF;
    -- A partition a DBA attached gets the guards every partition has.
    FOR part IN SELECT p.partition::text FROM olaclick.audit_partitions p
                WHERE NOT EXISTS (SELECT FROM pg_trigger t WHERE t.tgrelid = p.partition
                                  AND t.tgname = 'audit_log_append_only' AND NOT t.tgisinternal)
    LOOP
        PERFORM olaclick.audit_log_guard_partition(part::regclass);
        RETURN NEXT format('guarded %s as a partition of the audit log', part);
    END LOOP;
    FOR month IN
        SELECT date_trunc('month', d.at) FROM ONLY olaclick.audit_log_default d
        UNION
        SELECT generate_series(date_trunc('month', least(coalesce(since, now()), now())),
                               date_trunc('month', now()) + interval '3 months', interval '1 month')
        ORDER BY 1
    LOOP
        hi := month + interval '1 month';
        -- A partition that ends inside this month (the log before 0.4.0)
        -- leaves the rest of it.
        lo := greatest(month, (SELECT max(p.to_at) FROM olaclick.audit_partitions p
                               WHERE p.to_at > month AND p.to_at < hi));
        CONTINUE WHEN EXISTS (SELECT FROM olaclick.audit_partitions p
                              WHERE NOT p.is_default AND (p.from_at IS NULL OR p.from_at < hi) AND p.to_at > lo);
        part := 'audit_log_' || to_char(month, 'YYYY_MM');
        IF to_regclass(format('olaclick.%I', part)) IS NOT NULL THEN
            RAISE WARNING 'olaclick.maintain: olaclick.% exists but is not a partition of the audit log', part
                USING HINT = 'Rows of that month stay in olaclick.audit_log_default until it is renamed or dropped.';
            CONTINUE;
        END IF;
        -- The default partition's indexes and constraints are the template.
        EXECUTE format('CREATE TABLE olaclick.%I (LIKE olaclick.audit_log_default
                          INCLUDING CONSTRAINTS INCLUDING INDEXES INCLUDING STORAGE INCLUDING COMPRESSION INCLUDING STATISTICS)', part);
        -- A month that can get rows now (this one, or one before; a row is
        -- dated by its transaction's start, never after now): no
        -- writer may hold a partition descriptor without it while it is
        -- attached. A writer that routed a row of the month to the default
        -- partition before the attach would have it refused after (23514,
        -- the default's constraint rechecked, as for any INSERT), so the
        -- log is locked against writers until this commits: they wait,
        -- then route to the new partition. Later months get no rows yet and
        -- are made without blocking anyone.
        IF lo <= clock_timestamp() THEN
            LOCK TABLE ONLY olaclick.audit_log IN SHARE ROW EXCLUSIVE MODE;
        END IF;
        -- No row may reach the default partition between the move and the
        -- attach, which checks that it holds none of the month.
        LOCK TABLE olaclick.audit_log_default IN SHARE ROW EXCLUSIVE MODE;
        EXECUTE format('WITH m AS (DELETE FROM ONLY olaclick.audit_log_default WHERE at >= %L AND at < %L RETURNING *)
                        INSERT INTO olaclick.%I SELECT * FROM m', lo, hi, part);
        GET DIAGNOSTICS moved = ROW_COUNT;
        EXECUTE format('ALTER TABLE olaclick.audit_log ATTACH PARTITION olaclick.%I FOR VALUES FROM (%L) TO (%L)', part, lo, hi);
        PERFORM olaclick.audit_log_guard_partition(format('olaclick.%I', part)::regclass);
        RETURN NEXT format('created olaclick.%I for [%s, %s)%s', part, lo, hi,
                           CASE WHEN moved > 0 THEN format(', moving %s rows into it from olaclick.audit_log_default', moved) ELSE '' END);
    END LOOP;
END
$$;

-- The moment before which audit_purge(older_than) removes rows: older_than,
-- or the start of the month partition it falls in (a month leaves whole).
CREATE FUNCTION audit_purge_bound(older_than timestamptz) RETURNS timestamptz
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
    -- The partitions' bounds are read back from their text (audit_partitions).
    SET TimeZone = 'UTC'
    SET DateStyle = 'ISO'
BEGIN ATOMIC
    SELECT coalesce((SELECT p.from_at FROM olaclick.audit_partitions p
                     WHERE p.from_at < audit_purge_bound.older_than AND p.to_at > audit_purge_bound.older_than),
                    audit_purge_bound.older_than);
END;

-- Removes every partition that ends at or before `bound` (audit_purge_bound)
-- and returns how many rows they held: dropped, or, with an archive schema,
-- detached and moved there, owned by `archive_owner`, no longer guarded.
-- Rows are counted first, then every partition is detached and dropped or
-- moved: the log's ACCESS EXCLUSIVE lock, which the detach takes and keeps
-- to the end of the transaction, is held for catalog work only.
CREATE FUNCTION audit_log_remove(bound timestamptz, archive_schema name, archive_owner regrole) RETURNS bigint
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    SET TimeZone = 'UTC'
    SET DateStyle = 'ISO'
    SET row_security = off
    SET lock_timeout = '2s'
AS $$
DECLARE
    parts regclass[];
    part  regclass;
    n     bigint;
    total bigint := 0;
BEGIN
    -- Not beside maintain(): each would wait for the other's locks.
    PERFORM pg_advisory_xact_lock('olaclick.audit_log'::regclass::oid::bigint);
    SELECT coalesce(array_agg(p.partition ORDER BY p.to_at), '{}') INTO parts
    FROM olaclick.audit_partitions p WHERE NOT p.is_default AND p.to_at <= bound;
    FOREACH part IN ARRAY parts LOOP
        EXECUTE format('SELECT count(*) FROM ONLY %s', part) INTO n;
        total := total + n;
    END LOOP;
    FOREACH part IN ARRAY parts LOOP
        EXECUTE format('ALTER TABLE olaclick.audit_log DETACH PARTITION %s', part);
        IF archive_schema IS NULL THEN
            EXECUTE format('DROP TABLE %s', part);
        ELSE
            EXECUTE format('DROP TRIGGER IF EXISTS audit_log_insert_guard ON %1$s;
                            DROP TRIGGER IF EXISTS audit_log_append_only ON %1$s;
                            ALTER TABLE %1$s NO FORCE ROW LEVEL SECURITY, DISABLE ROW LEVEL SECURITY;
                            ALTER TABLE %1$s OWNER TO %2$s;
                            ALTER TABLE %1$s SET SCHEMA %3$I', part, archive_owner, archive_schema);
        END IF;
    END LOOP;
    RETURN total;
END
$$;

REVOKE ALL ON FUNCTION audit_log_guard_partition(regclass), audit_log_upkeep(timestamptz),
                       audit_log_remove(timestamptz, name, regrole) FROM PUBLIC;
