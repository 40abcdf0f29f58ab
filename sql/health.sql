-- Health checks for monitoring (docs/monitoring.md). Keep in step with the
-- upgrade scripts: the upgrade drill compares an updated catalog with a fresh
-- install.

-- One row per check: status ok, warning or critical, the measured value in
-- its unit and the thresholds (warning and critical: the value at or above
-- which that status is reached; NULL where the status follows from a fact, not
-- a number). Rows that don't apply are left out: the invalidator and archiving
-- on a standby (unless archive_mode = always), replay lag without standbys,
-- password expiry on a standby (roles are the primary's: one alert, not one
-- per server).
--
-- The thresholds are superuser-only settings (src/gucs.rs). A backend that has
-- not loaded the library yet only has them as placeholders if they were set
-- (postgresql.conf, ALTER DATABASE/ROLE ... SET), so each is read with
-- current_setting(.., true) and falls back to the same default as Rust's: no
-- need to load the library first, and tests/health/run checks that the two
-- defaults agree. Time settings read as intervals: '5min' once loaded, a bare
-- number of seconds as a placeholder, both cast the same way.
--
-- SECURITY DEFINER (the extension owner, a superuser): monitoring needs to see
-- every backend, the archive status directory and the whole audit log, and
-- gets only these aggregates. Granted to olaclick_auditor and pg_monitor.
-- No JIT: the planner's estimates for the consistency subqueries cross
-- jit_above_cost, and compiling took seconds where running takes milliseconds.
CREATE FUNCTION olaclick.health()
    RETURNS TABLE (name text, status text, value numeric, warning numeric, critical numeric,
                   unit text, detail text)
    LANGUAGE sql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET jit = off
BEGIN ATOMIC
    WITH settings AS (
        SELECT coalesce(nullif(current_setting('olaclick.health_notify_queue_warning', true), ''), '0.5')::numeric
                   AS queue_warning,
               coalesce(nullif(current_setting('olaclick.health_notify_queue_critical', true), ''), '0.9')::numeric
                   AS queue_critical,
               trim_scale(extract(epoch FROM coalesce(nullif(current_setting('olaclick.health_audit_retention', true), ''),
                                           '395d')::interval)) AS retention,
               trim_scale(extract(epoch FROM coalesce(nullif(current_setting('olaclick.health_archive_lag_warning', true), ''),
                                           '5min')::interval)) AS archive_warning,
               trim_scale(extract(epoch FROM coalesce(nullif(current_setting('olaclick.health_archive_lag_critical', true), ''),
                                           '15min')::interval)) AS archive_critical,
               trim_scale(extract(epoch FROM coalesce(nullif(current_setting('olaclick.health_replay_lag_warning', true), ''),
                                           '1min')::interval)) AS replay_warning,
               trim_scale(extract(epoch FROM coalesce(nullif(current_setting('olaclick.health_replay_lag_critical', true), ''),
                                           '5min')::interval)) AS replay_critical,
               coalesce(nullif(current_setting('olaclick.health_consistency_orders', true), ''), '1000')::integer
                   AS consistency_orders,
               coalesce(nullif(current_setting('olaclick.notify_channel', true), ''), 'olaclick_cache') AS channel,
               trim_scale(extract(epoch FROM coalesce(nullif(current_setting('olaclick.health_password_expiry_warning', true), ''),
                                           '14d')::interval)) AS password_window,
               coalesce(nullif(current_setting('olaclick.notify_queue_skip_threshold', true), ''), '0.75')::numeric
                   AS skip_threshold,
               pg_is_in_recovery() AS in_recovery,
               current_setting('archive_mode') AS archive_mode
    ),
    -- The invalidator names itself (olaclick-cache's APPLICATION_NAME plus
    -- its role). PostgreSQL shows no backend's LISTEN channels but its own, so
    -- this is "an invalidator is connected to this database", and any client
    -- may claim the name: the invalidator's own metrics tell what it hears.
    invalidators AS (
        SELECT count(*) AS n,
               string_agg(format('pid %s from %s since %s', a.pid, coalesce(host(a.client_addr), 'local socket'),
                                 date_trunc('second', a.backend_start)), ', ' ORDER BY a.pid) AS who
        FROM pg_stat_activity a
        WHERE a.datname = current_database() AND a.backend_type = 'client backend'
          AND a.application_name = 'olaclick-cache-invalidate'
    ),
    -- Its row count from the statistics (kept as rows are written, unlike
    -- reltuples, which waits for ANALYZE). The oldest row by id: one probe
    -- of the primary key, where min(at) would read the whole log (its BRIN
    -- index can't answer min()). Rows are numbered as they are written, and
    -- audit_purge removes the oldest.
    -- The log is partitioned by month: its size and rows are its partitions'.
    audit AS (
        SELECT (SELECT l.at FROM olaclick.audit_log l ORDER BY l.id LIMIT 1) AS oldest,
               (SELECT coalesce(sum(pg_total_relation_size(t.relid)), 0)
                FROM pg_partition_tree('olaclick.audit_log'::regclass) t WHERE t.isleaf) AS bytes,
               (SELECT coalesce(sum(pg_stat_get_live_tuples(t.relid)), 0)
                FROM pg_partition_tree('olaclick.audit_log'::regclass) t WHERE t.isleaf) AS rows
    ),
    -- Whether next month's rows have a partition to go to (UTC months, as
    -- olaclick.maintain() makes them) and how many rows wait in the default
    -- partition for theirs (counted up to 100,000).
    partitions AS (
        SELECT EXISTS (SELECT FROM olaclick.audit_partitions p, (SELECT (date_trunc('month', now() AT TIME ZONE 'UTC')
                                                                          + interval '1 month') AT TIME ZONE 'UTC' AS m) n
                       WHERE NOT p.is_default AND (p.from_at IS NULL OR p.from_at <= n.m) AND p.to_at > n.m) AS next_month,
               (SELECT max(p.to_at) FROM olaclick.audit_partitions p) AS until,
               (SELECT count(*) FROM (SELECT FROM ONLY olaclick.audit_log_default LIMIT 100000) d) AS waiting
    ),
    -- Archiving lag is how long the oldest completed WAL segment has waited
    -- (its .ready file's age), not the time since the last archived one: an
    -- idle server archives nothing for hours and is not behind.
    archive AS (
        SELECT r.n_ready, r.oldest_ready, s.archived_count, s.last_archived_wal, s.last_archived_time,
               s.failed_count, s.last_failed_wal, s.last_failed_time
        FROM pg_stat_archiver s,
             (SELECT count(*) AS n_ready, min(f.modification) AS oldest_ready
              FROM pg_ls_archive_statusdir() f WHERE f.name LIKE '%.ready') r
    ),
    standbys AS (
        SELECT count(*) AS n,
               max(extract(epoch FROM coalesce(r.replay_lag, interval '0'))) AS worst,
               string_agg(format('%s (%s): %s, replay lag %s, %s behind', r.application_name,
                                 coalesce(host(r.client_addr), 'local socket'), r.state,
                                 coalesce(date_trunc('second', r.replay_lag)::text, '0'),
                                 coalesce(pg_size_pretty(pg_wal_lsn_diff(
                                     CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn()
                                          ELSE pg_current_wal_lsn() END, r.replay_lsn)), 'unknown')),
                          '; ' ORDER BY r.application_name, r.pid) AS who
        FROM pg_stat_replication r
    ),
    -- The newest orders and the orders of the newest status changes, judged
    -- by check_consistency()'s order rules: the cost is bounded whatever the
    -- database's size; check_consistency() itself is the deep check.
    recent AS (
        SELECT n.id FROM (SELECT o.id FROM olaclick.orders o ORDER BY o.id DESC
                          LIMIT (SELECT s.consistency_orders FROM settings s)) n
        UNION
        SELECT c.order_id FROM (SELECT h.order_id FROM olaclick.order_status_history h ORDER BY h.id DESC
                                LIMIT (SELECT s.consistency_orders FROM settings s)) c
    ),
    broken AS (
        SELECT o.id
        FROM recent r JOIN olaclick.orders o ON o.id = r.id
        WHERE o.total <> coalesce((SELECT sum(d.quantity * d.price) FROM olaclick.order_details d
                                   WHERE d.order_id = o.id), 0)
           OR o.total = 'NaN'
           OR (SELECT array_agg(h.status ORDER BY h.id) FROM olaclick.order_status_history h
               WHERE h.order_id = o.id) IS DISTINCT FROM
              (enum_range(NULL::olaclick.order_status))[1:array_position(enum_range(NULL::olaclick.order_status), o.status)]
           OR EXISTS (SELECT 1 FROM olaclick.order_details d
                      WHERE d.order_id = o.id AND d.restaurant_id <> o.restaurant_id)
           OR (SELECT c.restaurant_id FROM olaclick.clients c WHERE c.id = o.client_id) IS DISTINCT FROM o.restaurant_id
           OR (SELECT b.restaurant_id FROM olaclick.branches b WHERE b.id = o.branch_id) IS DISTINCT FROM o.restaurant_id
    ),
    -- Login roles of olaclick's groups that have a password (a certificate
    -- or peer login has nothing to expire), with the environment each
    -- belongs to: olaclick.environment set for the role in this database, for
    -- the role, for this database, in that order (pg_db_role_setting, never
    -- the session: a session can't make production look like staging).
    -- Unset, or anything but staging or development, is production.
    -- Superusers are members of every role and are not the application's.
    logins AS (
        SELECT r.rolname,
               CASE WHEN r.rolvaliduntil IS NULL OR r.rolvaliduntil = 'infinity' THEN 'no VALID UNTIL'
                    WHEN r.rolvaliduntil <= now() THEN 'expired ' || date_trunc('second', r.rolvaliduntil)
                    WHEN r.rolvaliduntil < now() + make_interval(secs => s.password_window)
                        THEN format('expires in %s (%s)', justify_hours(date_trunc('hour', r.rolvaliduntil - now())),
                                    date_trunc('second', r.rolvaliduntil))
               END AS problem,
               r.rolvaliduntil IS NULL OR r.rolvaliduntil = 'infinity' OR r.rolvaliduntil <= now() AS lapsed,
               coalesce((SELECT substr(c.c, length('olaclick.environment=') + 1)
                         FROM pg_db_role_setting d, unnest(d.setconfig) c(c)
                         WHERE c.c LIKE 'olaclick.environment=%'
                           AND ((d.setrole = r.oid AND d.setdatabase IN (0, db.oid))
                                OR (d.setrole = 0 AND d.setdatabase = db.oid))
                         ORDER BY d.setrole = 0, d.setdatabase = 0
                         LIMIT 1), 'production') AS environment,
               r.rolvaliduntil
        FROM pg_authid r, settings s, pg_database db
        WHERE db.datname = current_database() AND r.rolcanlogin AND NOT r.rolsuper AND r.rolpassword IS NOT NULL
          AND EXISTS (SELECT 1 FROM pg_roles g
                      WHERE g.rolname IN ('olaclick_app', 'olaclick_readonly', 'olaclick_auditor', 'olaclick_pgaudit')
                        AND pg_has_role(r.oid, g.oid, 'MEMBER'))
    ),
    checks (ord, name, value, warning, critical, unit, fact, detail) AS (
        SELECT 1, 'notify_queue', trim_scale(round(pg_notification_queue_usage()::numeric, 6)), s.queue_warning,
               s.queue_critical, 'ratio', NULL::text,
               format('%s%% of the NOTIFY queue in use; when full, every commit that notifies fails',
                      round(pg_notification_queue_usage()::numeric * 100, 2))
        FROM settings s
        UNION ALL
        SELECT 2, 'invalidator', i.n, NULL, NULL, 'connections',
               CASE WHEN i.n = 0 THEN 'warning' ELSE 'ok' END,
               CASE WHEN i.n = 0
                    THEN format('no olaclick-cache-invalidate connection to database %s: nobody clears the cache '
                                'on %s, so it serves lists up to its TTL old', current_database(), s.channel)
                    ELSE format('olaclick-cache-invalidate connected (%s); channel %s', i.who, s.channel) END
        FROM invalidators i, settings s
        WHERE NOT s.in_recovery
        UNION ALL
        SELECT 3, 'audit_log_size', a.bytes, NULL, NULL, 'bytes', 'ok',
               format('%s, about %s rows', pg_size_pretty(a.bytes), a.rows)
        FROM audit a
        UNION ALL
        SELECT 4, 'audit_log_age', trim_scale(round(coalesce(extract(epoch FROM now() - a.oldest), 0), 1)), s.retention, NULL,
               'seconds', NULL,
               CASE WHEN a.oldest IS NULL THEN 'the audit log is empty'
                    ELSE format('oldest row written %s; retention %s (olaclick.health_audit_retention): '
                                'older rows mean olaclick.audit_purge is not running',
                                date_trunc('second', a.oldest), trim_scale(round(s.retention / 86400, 1)) || ' days') END
        FROM audit a, settings s
        UNION ALL
        SELECT 5, 'archive_lag', trim_scale(round(coalesce(extract(epoch FROM now() - ar.oldest_ready), 0), 1)),
               s.archive_warning, s.archive_critical, 'seconds', NULL,
               format('%s WAL segments waiting%s; last archived %s at %s', ar.n_ready,
                      ', the oldest since ' || date_trunc('second', ar.oldest_ready),
                      coalesce(ar.last_archived_wal, 'none'), coalesce(date_trunc('second', ar.last_archived_time)::text, 'never'))
        FROM archive ar, settings s
        WHERE s.archive_mode = 'always' OR (s.archive_mode = 'on' AND NOT s.in_recovery)
        UNION ALL
        SELECT 6, 'archive_failing', ar.failed_count, NULL, NULL, 'failures',
               CASE WHEN ar.last_failed_time > coalesce(ar.last_archived_time, '-infinity') THEN 'critical' ELSE 'ok' END,
               CASE WHEN ar.last_failed_time > coalesce(ar.last_archived_time, '-infinity')
                    THEN format('archive_command is failing: %s failed at %s, last success %s; WAL piles up in pg_wal '
                                'and point-in-time recovery stops at the last archived segment', ar.last_failed_wal,
                                date_trunc('second', ar.last_failed_time),
                                coalesce(date_trunc('second', ar.last_archived_time)::text, 'never'))
                    ELSE format('%s failures since statistics were reset, none since the last success', ar.failed_count) END
        FROM archive ar, settings s
        WHERE s.archive_mode = 'always' OR (s.archive_mode = 'on' AND NOT s.in_recovery)
        UNION ALL
        SELECT 7, 'standby_replay_lag', trim_scale(round(st.worst, 1)), s.replay_warning, s.replay_critical, 'seconds', NULL,
               format('%s standby(s): %s', st.n, st.who)
        FROM standbys st, settings s
        WHERE st.n > 0
        UNION ALL
        SELECT 8, 'consistency', (SELECT count(*) FROM broken), NULL, 1, 'orders', NULL,
               CASE WHEN s.consistency_orders = 0 THEN 'skipped: olaclick.health_consistency_orders = 0'
                    ELSE format('%s broken of the newest %s orders and the orders of the newest %s status changes%s; '
                                'olaclick.check_consistency() checks everything', (SELECT count(*) FROM broken),
                                s.consistency_orders, s.consistency_orders,
                                ' (orders ' || (SELECT string_agg(x.id::text, ', ' ORDER BY x.id)
                                                FROM (SELECT b.id FROM broken b ORDER BY b.id LIMIT 10) x) || ')') END
        FROM settings s
        UNION ALL
        SELECT 9, 'password_expiry', (SELECT count(*) FROM logins l WHERE l.problem IS NOT NULL), NULL, NULL, 'roles',
               CASE WHEN EXISTS (SELECT 1 FROM logins l WHERE l.lapsed AND l.environment NOT IN ('staging', 'development'))
                        THEN 'critical'
                    WHEN EXISTS (SELECT 1 FROM logins l WHERE l.problem IS NOT NULL) THEN 'warning'
                    ELSE 'ok' END,
               coalesce((SELECT string_agg(format('%s (%s): %s', l.rolname, l.environment, l.problem), '; '
                                           ORDER BY l.lapsed DESC, l.rolvaliduntil NULLS FIRST, l.rolname)
                         FROM logins l WHERE l.problem IS NOT NULL) || '; ', '')
               || format('%s login roles of olaclick''s groups with a password, warned %s before expiry '
                         '(olaclick.health_password_expiry_warning); rotate with scripts/rotate-password',
                         (SELECT count(*) FROM logins), trim_scale(round(s.password_window / 86400, 1)) || ' days')
        FROM settings s
        WHERE NOT s.in_recovery
        UNION ALL
        -- Critical while commits skip their cache notifications (the queue at
        -- or above the skip threshold): the cache is kept right only by
        -- olaclick-cache's flushes. The value is a counter of every skip.
        SELECT 10, 'notify_skipped', olaclick.notify_skipped(), NULL, NULL, 'notifications',
               CASE WHEN pg_notification_queue_usage() >= s.skip_threshold THEN 'critical' ELSE 'ok' END,
               CASE WHEN pg_notification_queue_usage() >= s.skip_threshold
                    THEN format('the NOTIFY queue is %s%% full, at or above olaclick.notify_queue_skip_threshold (%s): '
                                'commits go through without their cache notifications (%s skipped so far) and '
                                'olaclick-cache flushes the whole cache instead; end the session that holds the queue '
                                '(a LISTEN in a transaction left open: see pg_stat_activity)',
                                round(pg_notification_queue_usage()::numeric * 100, 2), s.skip_threshold,
                                olaclick.notify_skipped())
                    ELSE format('%s cache notifications skipped in all (a counter); none now: the queue is below '
                                'olaclick.notify_queue_skip_threshold (%s)', olaclick.notify_skipped(), s.skip_threshold) END
        FROM settings s
        WHERE NOT s.in_recovery
        UNION ALL
        -- Months of the audit log made ahead (olaclick.maintain()).
        SELECT 11, 'audit_partitions', p.waiting, NULL, NULL, 'rows',
               CASE WHEN p.waiting > 0 OR NOT p.next_month THEN 'warning' ELSE 'ok' END,
               CASE WHEN NOT p.next_month
                    THEN 'next month''s audit rows have no partition to go to: olaclick.maintain() is not running'
                    WHEN p.waiting > 0
                    THEN format('%s audit rows wait in olaclick.audit_log_default for their month''s partition: '
                                'run olaclick.maintain()', p.waiting)
                    ELSE format('partitions up to %s', p.until) END
        FROM partitions p, settings s
        WHERE NOT s.in_recovery
    )
    SELECT c.name,
           coalesce(c.fact, CASE WHEN c.value >= c.critical THEN 'critical'
                                 WHEN c.value >= c.warning THEN 'warning'
                                 ELSE 'ok' END),
           c.value, c.warning, c.critical, c.unit, c.detail
    FROM checks c
    ORDER BY c.ord;
END;

REVOKE ALL ON FUNCTION olaclick.health() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION olaclick.health() TO olaclick_auditor, pg_monitor;
-- Monitoring roles find the function through the schema; they can read no
-- table with it (the application and reporting roles already hold USAGE).
GRANT USAGE ON SCHEMA olaclick TO pg_monitor;
