-- bench/audit_year.sql: the audit rows the orders already in a database would
-- have left behind had they been lived one by one, dated when each change
-- happened, so that olaclick.load_demo(orders => N, created_within => '365
-- days') followed by this script is a year of orders AND a year of audit log.
--
--   psql -X -v ON_ERROR_STOP=1 -d DB -f bench/audit_year.sql
--   psql ... -v derived=on -v db_role=app_user -f bench/audit_year.sql
--
-- Variables (psql -v NAME=VALUE), all optional:
--   derived   off (default) or on: also write the rows olaclick logs only
--             with olaclick.audit_derived = on: one order_status_history
--             INSERT per history row and one orders total UPDATE per line
--             (as an ORM that inserts one line per statement makes them).
--   db_role   the role recorded in audit_log.db_role (default: the role
--             running the script; the live log records the application's).
--
-- load_demo writes with triggers off (session_replication_role = replica),
-- so it leaves no audit rows. For each order this writes what a live order's
-- life logs with olaclick's default settings (measured with bench/life.sql
-- and bench/life_lines.sql; bench/RESULTS.md, "A year of data"):
--   * the orders INSERT (status initiated, total 0.00), at created_at;
--   * one order_details INSERT per line, at created_at (same transaction);
--   * one orders UPDATE per status change (changed_cols {status}, old and new
--     row with the final total), at the change's order_status_history
--     changed_at.
-- Row contents are to_jsonb() of the rows themselves (with the status and
-- total of that moment), so their sizes are the live ones whatever columns
-- the installed version has. What it does not reproduce: audit_settings
-- (every column is logged, as with no settings row, the default), the
-- actor (orders.created_by_user_id, NULL for demo orders), and txid (one per
-- statement of this script instead of one per live transaction: the same
-- 8 bytes).
--
-- How it writes: one INSERT ... SELECT per calendar month of the rows' `at`,
-- each sorted by `at`, so the log's heap is in time order as a live one is
-- (what its BRIN index and a purge by DELETE see) and no statement sorts more
-- than a month. On the monthly-partitioned layout (0.4.0) it first calls
-- olaclick.maintain(since => the oldest order's time), so every row goes
-- straight into its month's partition, none into the default partition.
--
-- It runs as a superuser with session_replication_role = replica: the log's
-- insert guard (a trigger that refuses rows not written by olaclick itself)
-- is then off. That is acceptable here and nowhere else: this is a
-- benchmark and test loader run by the DBA on a database made for it, it
-- writes exactly the rows the triggers would have written for data that is
-- already there (as load_demo and a restore do), and only a superuser can set
-- it. It refuses to run twice on the same orders (their rows would double).
\set ON_ERROR_STOP on
\if :{?derived}
\else
\set derived off
\endif
\if :{?db_role}
\else
SELECT current_user AS db_role \gset
\endif

DO $guard$
BEGIN
    IF NOT (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
        RAISE EXCEPTION 'bench/audit_year.sql must run as a superuser'
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'It sets session_replication_role = replica to write the log directly.';
    END IF;
    IF EXISTS (SELECT 1 FROM olaclick.audit_log WHERE table_name IN ('orders', 'order_details')) THEN
        RAISE EXCEPTION 'olaclick.audit_log already has rows of orders'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'This script writes the audit rows of every order in olaclick.orders; run a second time it would double them.',
                  HINT = 'Run it once, right after olaclick.load_demo() into a fresh database.';
    END IF;
END
$guard$;

-- The monthly layout: partitions from the oldest order's month on.
SELECT pg_catalog.to_regprocedure('olaclick.maintain(timestamp with time zone)') IS NOT NULL AS monthly \gset
\if :monthly
SELECT pg_catalog.count(*) AS maintained FROM olaclick.maintain(since => (SELECT pg_catalog.min(created_at) FROM olaclick.orders)) \gset
\endif

SET session_replication_role = replica;
-- A month's rows are sorted in memory where they fit (a month of 1M orders a
-- year: about 400,000 rows).
SET work_mem = '256MB';
-- Every event of every order: (at, order, rank within the order's life at
-- that time, table, op, old row, new row, changed columns). A temporary view
-- keeps the per-month statement short; each month filters it on `at`.
CREATE TEMP VIEW audit_year_events AS
    -- The order as inserted.
    SELECT o.created_at AS at, o.id AS order_id, 0 AS step, o.restaurant_id,
           'orders'::text AS table_name, 'INSERT'::text AS op,
           NULL::jsonb AS old_row,
           pg_catalog.to_jsonb(o) || '{"status": "initiated", "total": 0.00}'::jsonb AS new_row,
           NULL::text[] AS changed_cols, o.created_by_user_id AS actor
    FROM olaclick.orders o
    UNION ALL
    -- Its lines (and, derived, the total after each): steps 2k and 2k + 1.
    SELECT o.created_at, o.id, 2 * l.n, o.restaurant_id, 'order_details', 'INSERT',
           NULL, pg_catalog.to_jsonb(l.d), NULL, (l.d).created_by_user_id
    FROM olaclick.orders o
    CROSS JOIN LATERAL (
        SELECT d, pg_catalog.row_number() OVER (ORDER BY d.product_id) AS n
        FROM olaclick.order_details d WHERE d.order_id = o.id) AS l
    UNION ALL
    SELECT o.created_at, o.id, 2 * t.n + 1, o.restaurant_id, 'orders', 'UPDATE',
           pg_catalog.to_jsonb(o) || pg_catalog.jsonb_build_object('status', 'initiated', 'total', t.before),
           pg_catalog.to_jsonb(o) || pg_catalog.jsonb_build_object('status', 'initiated', 'total', t.after),
           '{total}', o.created_by_user_id
    FROM olaclick.orders o
    CROSS JOIN LATERAL (
        SELECT n, after - amount AS before, after
        FROM (SELECT pg_catalog.row_number() OVER w AS n, d.quantity * d.price AS amount,
                     pg_catalog.sum(d.quantity * d.price) OVER w AS after
              FROM olaclick.order_details d WHERE d.order_id = o.id
              WINDOW w AS (ORDER BY d.product_id)) AS s
        WHERE amount <> 0) AS t
    WHERE :'derived'::boolean
    UNION ALL
    -- Each status change (and, derived, the history row it wrote; the
    -- initiated one, step 1, is written right after the order's INSERT).
    SELECT h.changed_at, o.id, x.k,
           o.restaurant_id, x.table_name, x.op, x.old_row, x.new_row, x.changed_cols, h.created_by_user_id
    FROM olaclick.order_status_history h
    JOIN olaclick.orders o ON o.id = h.order_id
    CROSS JOIN LATERAL (VALUES
        (0, 'orders', 'UPDATE',
         pg_catalog.to_jsonb(o) || pg_catalog.jsonb_build_object(
             'status', CASE h.status WHEN 'sent' THEN 'initiated' ELSE 'sent' END),
         pg_catalog.to_jsonb(o) || pg_catalog.jsonb_build_object('status', h.status),
         '{status}'::text[], h.status <> 'initiated'),
        (1, 'order_status_history', 'INSERT', NULL, pg_catalog.to_jsonb(h), NULL, :'derived'::boolean)
    ) AS x (k, table_name, op, old_row, new_row, changed_cols, wanted)
    WHERE x.wanted;

-- One statement per month, oldest first: ids (the log's identity) follow time.
SELECT pg_catalog.format(
           $sql$INSERT INTO olaclick.audit_log (restaurant_id, table_name, op, old_row, new_row, changed_cols,
                                             actor_user_id, db_role, at)
                SELECT restaurant_id, table_name, op, old_row, new_row, changed_cols, actor, %L, at
                FROM pg_temp.audit_year_events
                WHERE at >= %L AND at < %L
                ORDER BY at, order_id, step$sql$,
           :'db_role', m, m + interval '1 month')
FROM pg_catalog.generate_series(
         pg_catalog.date_trunc('month', (SELECT pg_catalog.min(created_at) FROM olaclick.orders)),
         (SELECT pg_catalog.max(changed_at) FROM olaclick.order_status_history),
         interval '1 month') AS m
ORDER BY m
\gexec

DROP VIEW pg_temp.audit_year_events;
RESET work_mem;
RESET session_replication_role;
