-- olaclick 0.3.0 -> 0.4.0. Released upgrade scripts are never edited; this one
-- is not released yet. Each change of the install SQL (sql/*.sql) made for
-- 0.4.0 is made here too, in the section of the work it belongs to; the
-- upgrade drill (tests/ops/run) compares the result with a fresh install.

\echo Use "ALTER EXTENSION olaclick UPDATE" to load this file. \quit

-- == The native write path as correct as SQL ==================================
--
--
--

-- == Fail safe: cache invalidation, NOTIFY queue, old SQL ========================
--
-- Renames invalidate: a change of a client's or restaurant's id or name (the
-- columns olaclick-cache's query reads besides the orders') is noted for the
-- restaurant's notification (src/notify.rs, sql/finalize.sql).
CREATE FUNCTION olaclick."cache_columns_notify"() RETURNS TRIGGER
    LANGUAGE c AS 'MODULE_PATHNAME', 'cache_columns_notify_wrapper';
CREATE TRIGGER clients_cache_notify
    BEFORE UPDATE OF id, name ON olaclick.clients
    FOR EACH ROW EXECUTE FUNCTION olaclick.cache_columns_notify('restaurant_id');
CREATE TRIGGER restaurants_cache_notify
    BEFORE UPDATE OF id, name ON olaclick.restaurants
    FOR EACH ROW EXECUTE FUNCTION olaclick.cache_columns_notify('id');

-- A nearly full NOTIFY queue skips notifications and counts them (sql/notify.sql).
CREATE SEQUENCE olaclick.notify_skipped_seq AS bigint;
REVOKE ALL ON SEQUENCE olaclick.notify_skipped_seq FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('olaclick.notify_skipped_seq', '');
CREATE FUNCTION olaclick.notify_skipped() RETURNS bigint
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT coalesce(pg_catalog.pg_sequence_last_value('olaclick.notify_skipped_seq'::pg_catalog.regclass), 0);
END;

-- health() reports the skips as notify_skipped: it is replaced once, whole, at
-- the end, with password_expiry and audit_partitions too (sql/health.sql).
--

-- == Behind a connection pooler ===================================================
-- sql/pooler.sql as installed (src/tenant_scope.rs adds olaclick.tenant_scope,
-- a setting of the library, not of the catalog).

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


-- == Part 5: passwords, staging, access audit =====================================
-- health() gains the password_expiry check (sql/health.sql); the staging
-- anonymizer (sql/staging.sql); pgaudit's audit role reads personal columns,
-- not whole tables (sql/security.sql). Its grants and revokes stay as they were.

REVOKE SELECT ON olaclick.users, olaclick.clients FROM olaclick_pgaudit;
GRANT SELECT (username, full_name, email, password_hash) ON olaclick.users TO olaclick_pgaudit;
GRANT SELECT (name, email, phone) ON olaclick.clients TO olaclick_pgaudit;

-- health() itself is replaced once, whole, at the end (sql/health.sql).

-- The personal columns, in one place: the anonymizer replaces these, in the
-- tables and inside audit_log's old_row/new_row. Restaurant and branch names
-- and addresses identify a business, and often its owner: they go too.
-- Products, prices, statuses and times are not personal and stay.
CREATE FUNCTION olaclick.personal_columns()
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
CREATE FUNCTION olaclick.staging_fake(table_name text, column_name text, id bigint) RETURNS text
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
CREATE FUNCTION olaclick.staging_fake_row(table_name text, j jsonb) RETURNS jsonb
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
CREATE FUNCTION olaclick.anonymize_for_staging(database name)
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

REVOKE ALL ON FUNCTION olaclick.anonymize_for_staging(name) FROM PUBLIC;
-- == end of Part 5 ==


-- == Docs that can't drift (load_demo deterministic) ==
-- load_demo takes a seed for its random values (setseed) and orders every
-- INSERT, so the README's session, run by tests/readme/run against a fresh
-- demo, shows ids and totals a reader gets too. A new argument changes the
-- signature: drop the old function, create the new one as sql/demo.sql does
-- (same body, comment and grants as a fresh install).
DROP FUNCTION olaclick.load_demo(integer, integer, integer, integer, integer, bigint, interval, integer);

CREATE FUNCTION olaclick.load_demo(
    restaurants             integer  DEFAULT 50,
    users_per_restaurant    integer  DEFAULT 50,
    branches_per_restaurant integer  DEFAULT 10,
    clients_per_restaurant  integer  DEFAULT 200,
    products_per_restaurant integer  DEFAULT 100,
    orders                  bigint   DEFAULT 10000,
    created_within          interval DEFAULT '30 days',
    batch_size              integer  DEFAULT 100000,
    seed                    double precision DEFAULT 0
) RETURNS TABLE (table_name text, rows_loaded bigint)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET session_replication_role = replica
AS $load_demo$
DECLARE
    n_rest     constant integer  := load_demo.restaurants;
    n_users    constant integer  := load_demo.users_per_restaurant;
    n_branches constant integer  := load_demo.branches_per_restaurant;
    n_clients  constant integer  := load_demo.clients_per_restaurant;
    n_products constant integer  := load_demo.products_per_restaurant;
    n_orders   constant bigint   := load_demo.orders;
    span       constant interval := load_demo.created_within;
    order_seq  constant regclass := pg_get_serial_sequence('olaclick.orders', 'id')::regclass;
    started    constant timestamptz := clock_timestamp();
    r_ids      integer[];
    done       bigint := 0;
    this_batch bigint;
    lines_loaded   bigint := 0;
    history_loaded bigint := 0;
    added      bigint;
BEGIN
    IF n_rest < 1 OR n_users < 1 OR n_branches < 1 OR n_clients < 1 OR n_products < 1
       OR n_orders < 0 OR load_demo.batch_size < 1 THEN
        RAISE EXCEPTION 'olaclick.load_demo: sizes must be positive (orders may be 0)'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF load_demo.seed NOT BETWEEN -1 AND 1 THEN
        RAISE EXCEPTION 'olaclick.load_demo: seed must be between -1 and 1, got %', load_demo.seed
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'It is passed to setseed(); NULL leaves random() unseeded.';
    END IF;
    IF span < interval '7 days' THEN
        RAISE EXCEPTION 'olaclick.load_demo: created_within must be at least 7 days, got %', span
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = '40% of the orders are created in the last 7 days, the rest within created_within.';
    END IF;

    IF load_demo.seed IS NOT NULL THEN
        PERFORM pg_catalog.setseed(load_demo.seed);
    END IF;

    -- ORDER BY in every INSERT below: ids follow it, and PostgreSQL computes
    -- the volatile expressions of a sorted SELECT (random(), nextval()) after
    -- the sort, so each row draws the same random values on any plan.
    WITH ins AS (
        INSERT INTO olaclick.restaurants (name, created_at)
        SELECT 'Restaurant ' || i, now() - random() * interval '30 days'
        FROM generate_series(1, n_rest) AS i
        ORDER BY i
        RETURNING id
    )
    SELECT array_agg(id ORDER BY id) INTO r_ids FROM ins;

    -- Usernames and e-mails are unique across tenants: the restaurant id in
    -- them keeps a second load from colliding with the first.
    INSERT INTO olaclick.users (restaurant_id, username, full_name, role, email, password_hash, status, created_at)
    SELECT r, 'user_' || r || '_' || i, 'User ' || i || ' R' || r,
           CASE WHEN i % 10 = 0 THEN 'admin' ELSE 'staff' END,
           'user' || i || '_r' || r || '@mail.com',
           md5(random()::text),
           (ARRAY['A','A','A','A','A','A','A','A','I','B'])[1 + floor(random() * 10)::int]::olaclick.user_status,
           now() - random() * interval '30 days'
    FROM unnest(r_ids) AS r, generate_series(1, n_users) AS i
    ORDER BY r, i;

    INSERT INTO olaclick.branches (restaurant_id, name, address, created_at)
    SELECT r, 'Sucursal ' || i || ' R' || r, 'Avenida Principal #' || (100 + i),
           now() - random() * interval '30 days'
    FROM unnest(r_ids) AS r, generate_series(1, n_branches) AS i
    ORDER BY r, i;

    INSERT INTO olaclick.clients (restaurant_id, name, email, phone, created_at)
    SELECT r, 'Cliente ' || i || ' R' || r, 'cliente' || i || '_r' || r || '@mail.com',
           '9' || lpad(trunc(random() * 100000000)::text, 8, '0'),
           now() - random() * interval '30 days'
    FROM unnest(r_ids) AS r, generate_series(1, n_clients) AS i
    ORDER BY r, i;

    INSERT INTO olaclick.products (restaurant_id, name, description, price, created_at)
    SELECT r, 'Producto ' || i || ' R' || r, 'Descripción del producto ' || i,
           round((random() * 90 + 10)::numeric, 2),
           now() - random() * interval '30 days'
    FROM unnest(r_ids) AS r, generate_series(1, n_products) AS i
    ORDER BY r, i;

    -- Per restaurant, its clients, branches and products numbered 1..n, so an
    -- order can pick one of its own restaurant's rows with a random number.
    CREATE TEMP TABLE demo_clients ON COMMIT DROP AS
        SELECT restaurant_id, row_number() OVER (PARTITION BY restaurant_id ORDER BY id) AS n, id
        FROM olaclick.clients WHERE restaurant_id = ANY (r_ids);
    CREATE TEMP TABLE demo_branches ON COMMIT DROP AS
        SELECT restaurant_id, row_number() OVER (PARTITION BY restaurant_id ORDER BY id) AS n, id
        FROM olaclick.branches WHERE restaurant_id = ANY (r_ids);
    CREATE TEMP TABLE demo_products ON COMMIT DROP AS
        SELECT restaurant_id, row_number() OVER (PARTITION BY restaurant_id ORDER BY id) AS n, id, price
        FROM olaclick.products WHERE restaurant_id = ANY (r_ids);
    ANALYZE pg_temp.demo_clients, pg_temp.demo_branches, pg_temp.demo_products;

    CREATE TEMP TABLE demo_orders (
        id bigint, restaurant_id integer, client_n integer, branch_n integer,
        created_at timestamptz, fate double precision, n_lines integer, first_product integer,
        sent_at timestamptz, delivered_at timestamptz
    ) ON COMMIT DROP;
    CREATE TEMP TABLE demo_lines (
        order_id bigint, restaurant_id integer, product_id integer, quantity integer, price numeric
    ) ON COMMIT DROP;

    WHILE done < n_orders LOOP
        this_batch := least(load_demo.batch_size, n_orders - done);
        TRUNCATE pg_temp.demo_orders, pg_temp.demo_lines;

        -- fate decides the status: 60% reach sent, half of those delivered.
        -- Offsets as in the seed (sent 0-3 days after creation, delivered 3-8
        -- days after), capped at now().
        INSERT INTO demo_orders
        SELECT id, restaurant_id, client_n, branch_n, created_at, fate, n_lines, first_product,
               least(now(), created_at + random() * interval '3 days'),
               least(now(), created_at + (3 + random() * 5) * interval '1 day')
        FROM (
            SELECT nextval(order_seq) AS id,
                   r_ids[1 + floor(random() * n_rest)::int] AS restaurant_id,
                   1 + floor(random() * n_clients)::int AS client_n,
                   1 + floor(random() * n_branches)::int AS branch_n,
                   CASE WHEN random() < 0.4 THEN now() - random() * interval '7 days'
                        ELSE now() - random() * span END AS created_at,
                   random() AS fate,
                   1 + floor(random() * least(5, n_products))::int AS n_lines,
                   floor(random() * n_products)::int AS first_product
            FROM generate_series(1, this_batch) AS g
            ORDER BY g
        ) AS o
        ORDER BY o.id;
        ANALYZE pg_temp.demo_orders;

        -- 1 to 5 distinct products: consecutive numbers from a random start.
        INSERT INTO demo_lines
        SELECT o.id, o.restaurant_id, p.id, 1 + floor(random() * 3)::int, p.price
        FROM demo_orders AS o
        CROSS JOIN LATERAL generate_series(0, o.n_lines - 1) AS j
        JOIN demo_products AS p
          ON p.restaurant_id = o.restaurant_id AND p.n = 1 + (o.first_product + j) % n_products
        ORDER BY o.id, j;
        ANALYZE pg_temp.demo_lines;

        INSERT INTO olaclick.orders (id, restaurant_id, client_id, branch_id, total, status, created_at)
        SELECT o.id, o.restaurant_id, c.id, b.id, coalesce(t.total, 0),
               CASE WHEN o.fate < 0.3 THEN 'delivered' WHEN o.fate < 0.6 THEN 'sent'
                    ELSE 'initiated' END::olaclick.order_status,
               o.created_at
        FROM demo_orders AS o
        JOIN demo_clients AS c ON c.restaurant_id = o.restaurant_id AND c.n = o.client_n
        JOIN demo_branches AS b ON b.restaurant_id = o.restaurant_id AND b.n = o.branch_n
        LEFT JOIN (SELECT order_id, sum(quantity * price) AS total FROM demo_lines GROUP BY order_id) AS t
          ON t.order_id = o.id
        ORDER BY o.id;

        INSERT INTO olaclick.order_details (order_id, product_id, quantity, price, restaurant_id)
        SELECT order_id, product_id, quantity, price, restaurant_id FROM demo_lines
        ORDER BY order_id, product_id;
        GET DIAGNOSTICS added = ROW_COUNT;
        lines_loaded := lines_loaded + added;

        INSERT INTO olaclick.order_status_history (order_id, restaurant_id, status, changed_at)
        SELECT o.id, o.restaurant_id, s.status, s.at
        FROM demo_orders AS o
        CROSS JOIN LATERAL (VALUES ('initiated'::olaclick.order_status, o.created_at, true),
                                   ('sent',      o.sent_at,      o.fate < 0.6),
                                   ('delivered', o.delivered_at, o.fate < 0.3)) AS s (status, at, reached)
        WHERE s.reached
        ORDER BY o.id, s.status;
        GET DIAGNOSTICS added = ROW_COUNT;
        history_loaded := history_loaded + added;

        done := done + this_batch;
        IF n_orders > load_demo.batch_size THEN
            RAISE NOTICE 'olaclick.load_demo: % of % orders loaded (% s)',
                done, n_orders, round(extract(epoch FROM clock_timestamp() - started)::numeric, 1);
        END IF;
    END LOOP;

    DROP TABLE pg_temp.demo_clients, pg_temp.demo_branches, pg_temp.demo_products,
               pg_temp.demo_orders, pg_temp.demo_lines;

    RETURN QUERY VALUES
        ('restaurants', n_rest::bigint),
        ('users', n_rest::bigint * n_users),
        ('branches', n_rest::bigint * n_branches),
        ('clients', n_rest::bigint * n_clients),
        ('products', n_rest::bigint * n_products),
        ('orders', n_orders),
        ('order_details', lines_loaded),
        ('order_status_history', history_loaded);
END
$load_demo$;

COMMENT ON FUNCTION olaclick.load_demo IS
    'Loads the seed''s demo data set (defaults: 50 restaurants, 10,000 orders), reproducibly (seed => NULL: unseeded). Superuser only. Run VACUUM ANALYZE afterwards.';
REVOKE ALL ON FUNCTION olaclick.load_demo FROM PUBLIC;


-- == Years of data: the audit log by month =========================================
-- The log becomes partitioned by month (sql/schema.sql, sql/partitions.sql).
-- 0.3.0's log is not copied: it becomes olaclick.audit_log_0_3, a table of
-- its own again (no longer a member of the extension, so pg_dump dumps it
-- with its rows as the partition it will be), with the moment it ended
-- recorded as a NOT VALID check. Writes are blocked only while this script
-- runs, for catalog work; the first olaclick.maintain() validates the check
-- (a scan nobody waits for: no one writes the old log any more) and attaches
-- it as the partition of everything before that moment. Until then the old
-- rows are not in olaclick.audit_log (docs/operations.md, "Upgrading").
ALTER TABLE audit_log RENAME TO audit_log_0_3;
ALTER INDEX audit_log_pkey RENAME TO audit_log_0_3_pkey;
ALTER INDEX audit_log_at_brin RENAME TO audit_log_0_3_at_brin;
ALTER INDEX audit_log_restaurant_table_idx RENAME TO audit_log_0_3_restaurant_table_idx;
DROP POLICY tenant ON audit_log_0_3;
DROP POLICY auditor ON audit_log_0_3;
REVOKE ALL ON audit_log_0_3 FROM olaclick_auditor;
-- The check's own scan is left to maintain(): NOT VALID. The moment is
-- written in UTC and ISO, whatever the session's TimeZone and DateStyle.
DO $$
BEGIN
    EXECUTE pg_catalog.format('ALTER TABLE olaclick.audit_log_0_3 ADD CONSTRAINT audit_log_0_3_before CHECK (at < %L) NOT VALID',
                              pg_catalog.to_char(pg_catalog.clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00');
END
$$;
-- What a DBA added to the old log stays with it (PostgreSQL binds these to
-- the table, not its name): said here, to be made again on the new log.
DO $$
DECLARE what text;
BEGIN
    SELECT pg_catalog.string_agg(w, '; ') INTO what FROM (
        SELECT 'trigger ' || t.tgname AS w FROM pg_catalog.pg_trigger t
        WHERE t.tgrelid = 'olaclick.audit_log_0_3'::pg_catalog.regclass AND NOT t.tgisinternal
          AND t.tgname NOT IN ('audit_log_insert_guard', 'audit_log_append_only')
        UNION ALL
        SELECT 'publication ' || p.pubname FROM pg_catalog.pg_publication_rel r
        JOIN pg_catalog.pg_publication p ON p.oid = r.prpubid
        WHERE r.prrelid = 'olaclick.audit_log_0_3'::pg_catalog.regclass
        UNION ALL
        SELECT 'index ' || i.indexrelid::pg_catalog.regclass::text FROM pg_catalog.pg_index i
        WHERE i.indrelid = 'olaclick.audit_log_0_3'::pg_catalog.regclass
          AND i.indexrelid NOT IN ('olaclick.audit_log_0_3_pkey'::pg_catalog.regclass,
                                   'olaclick.audit_log_0_3_at_brin'::pg_catalog.regclass,
                                   'olaclick.audit_log_0_3_restaurant_table_idx'::pg_catalog.regclass)
        UNION ALL
        SELECT 'view or function ' || pg_catalog.pg_describe_object(d.classid, d.objid, 0) FROM pg_catalog.pg_depend d
        WHERE d.refobjid = 'olaclick.audit_log_0_3'::pg_catalog.regclass AND d.deptype = 'n'
          AND d.classid IN ('pg_catalog.pg_rewrite'::pg_catalog.regclass, 'pg_catalog.pg_proc'::pg_catalog.regclass)
          AND NOT EXISTS (SELECT FROM pg_catalog.pg_depend e WHERE e.classid = d.classid AND e.objid = d.objid AND e.deptype = 'e')
    ) x;
    IF what IS NOT NULL THEN
        RAISE WARNING 'olaclick 0.4.0: objects of yours on the audit log stay with the 0.3.0 log, now olaclick.audit_log_0_3: %', what
            USING HINT = 'Make them again on olaclick.audit_log (a publication: ALTER PUBLICATION ... ADD TABLE olaclick.audit_log; see docs/operations.md, "Upgrading the extension").';
    END IF;
END
$$;

ALTER SEQUENCE audit_log_id_seq RENAME TO audit_log_0_3_id_seq;
-- Out of the way while the new log names its check after itself; named
-- back below: attaching needs the parent's check under the same name.
ALTER TABLE audit_log_0_3 RENAME CONSTRAINT audit_log_op_check TO audit_log_0_3_op_check;
-- From PostgreSQL 18 NOT NULL constraints have names too: out of the new
-- log's way as well (none to rename before 18).
DO $$
DECLARE c name;
BEGIN
    FOR c IN SELECT conname FROM pg_catalog.pg_constraint
             WHERE conrelid = 'olaclick.audit_log_0_3'::pg_catalog.regclass AND contype = 'n'
    LOOP
        EXECUTE pg_catalog.format('ALTER TABLE olaclick.audit_log_0_3 RENAME CONSTRAINT %I TO %I',
                                  c, pg_catalog.replace(c, 'audit_log_', 'audit_log_0_3_'));
    END LOOP;
END
$$;

CREATE TABLE audit_log (
    id            bigint GENERATED BY DEFAULT AS IDENTITY,
    restaurant_id integer,
    table_name    text NOT NULL,
    op            text NOT NULL CHECK (op IN ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE')),
    old_row       jsonb,
    new_row       jsonb,
    changed_cols  text[],
    actor_user_id integer,
    db_role       text NOT NULL DEFAULT current_user,
    txid          bigint NOT NULL DEFAULT txid_current(),
    at            timestamptz NOT NULL DEFAULT now()
) PARTITION BY RANGE (at);

-- The template of every month's partition (maintain() copies its indexes
-- and constraints with CREATE TABLE ... LIKE): the indexes live here.
CREATE TABLE audit_log_default PARTITION OF audit_log DEFAULT;
ALTER TABLE audit_log_default ADD CONSTRAINT audit_log_default_pkey PRIMARY KEY (id);
CREATE INDEX audit_log_default_at_brin ON audit_log_default USING brin (at);
CREATE INDEX audit_log_default_restaurant_table_idx ON audit_log_default (restaurant_id, table_name, at);
SELECT pg_catalog.pg_extension_config_dump('olaclick.audit_log', '');
SELECT pg_catalog.pg_extension_config_dump('olaclick.audit_log_default', '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('olaclick.audit_log', 'id'), '');
-- The new log numbers its rows on from the old one's last id; the old one
-- keeps its ids and leaves the extension (with its sequence).
SELECT pg_catalog.setval(pg_catalog.pg_get_serial_sequence('olaclick.audit_log', 'id'), s.last_value, s.is_called)
FROM olaclick.audit_log_0_3_id_seq s;
ALTER EXTENSION olaclick DROP SEQUENCE audit_log_0_3_id_seq;
ALTER TABLE audit_log_0_3 ALTER COLUMN id DROP IDENTITY;
ALTER EXTENSION olaclick DROP TABLE audit_log_0_3;
ALTER TABLE audit_log_0_3 RENAME CONSTRAINT audit_log_0_3_op_check TO audit_log_op_check;
COMMENT ON TABLE audit_log IS
    'One row per inserted, updated or deleted row of every business table, and per TRUNCATE. Append-only; see audit_purge().';
-- As sql/security.sql sets up the log.
ALTER TABLE audit_log ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_log FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON audit_log TO olaclick_app, olaclick_readonly
    USING (restaurant_id = (SELECT olaclick.current_restaurant()))
    WITH CHECK (restaurant_id = (SELECT olaclick.current_restaurant()));
CREATE POLICY auditor ON audit_log TO olaclick_auditor USING (true);
GRANT SELECT ON audit_log TO olaclick_auditor;
REVOKE ALL ON audit_log_default FROM PUBLIC;
REVOKE ALL ON SEQUENCE audit_log_id_seq FROM PUBLIC;

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
GRANT SELECT ON audit_partitions TO olaclick_auditor;

-- audit_purge_rows returns the new log's rows and deletes up to the bound.
DROP FUNCTION audit_purge_rows(timestamptz);
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

-- As sql/finalize.sql guards the log, and the default partition.
CREATE TRIGGER audit_log_insert_guard
    BEFORE INSERT ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION insert_guard();
CREATE TRIGGER audit_log_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION append_only_guard();
SELECT audit_log_guard_partition('olaclick.audit_log_default');

-- maintain() (src/retention.rs).
CREATE FUNCTION olaclick."maintain"("since" timestamp with time zone DEFAULT NULL) RETURNS SETOF TEXT
    LANGUAGE c AS 'MODULE_PATHNAME', 'maintain_wrapper';
REVOKE ALL ON FUNCTION maintain(timestamptz) FROM PUBLIC;

-- The drop guard also judges ALTER TABLE (DETACH PARTITION of the log) and
-- foreign tables (dropped, or made a partition of the log).
DROP EVENT TRIGGER olaclick_drop_guard;
CREATE EVENT TRIGGER olaclick_drop_guard ON ddl_command_start
    WHEN TAG IN ('DROP EXTENSION', 'DROP SCHEMA', 'DROP TABLE', 'ALTER EXTENSION', 'DROP OWNED', 'ALTER TABLE',
                 'DROP FOREIGN TABLE', 'CREATE FOREIGN TABLE')
    EXECUTE FUNCTION drop_guard();
ALTER EVENT TRIGGER olaclick_drop_guard ENABLE ALWAYS;

-- health() as sql/health.sql has it (audit_log_size and audit_log_age over
-- the partitions; audit_partitions; from earlier sections, notify_skipped and
-- password_expiry).
CREATE OR REPLACE FUNCTION olaclick.health()
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
-- == end of Years of data ==
