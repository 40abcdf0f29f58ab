-- olaclick.load_demo(): the seed's demo data set, set-based and sized by its
-- arguments.
--
-- It writes finished orders directly (lines, totals, status and history at the
-- seed's time offsets), the way a restore does, so it runs with
-- session_replication_role = replica: the per-row guarantees would otherwise
-- stamp history with now(). That setting needs a superuser, so only a
-- superuser can load demo data, and nothing but demo data can be written this
-- way. Keys are not checked in that mode either; every id it writes is picked
-- from the rows it created for the same restaurant, and the tests check the
-- result (tenancy, totals, history).
--
-- Differences from the seed script, on purpose:
--   * a total is sum(quantity * price); the seed's forgot the quantity;
--   * an order may be delivered at most 8 days after creation, as in the
--     seed, but no history row is ever dated in the future;
--   * orders pick a random client of their restaurant, so more orders than
--     clients can be loaded (the seed gave each client at most one order);
--   * it is reproducible: the random values come from setseed(seed) (pass
--     seed => NULL for unseeded ones), and every INSERT is ORDER BY'd, with
--     the random values drawn after the sort, so into a fresh database the
--     same arguments load the same ids, prices, quantities, statuses and
--     tenants whatever plan PostgreSQL picks (the README's session relies on
--     it, tests/readme/run checks it). Timestamps are relative to now().
--     setseed() also seeds the calling session's random() for what follows.
CREATE FUNCTION load_demo(
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

COMMENT ON FUNCTION load_demo IS
    'Loads the seed''s demo data set (defaults: 50 restaurants, 10,000 orders), reproducibly (seed => NULL: unseeded). Superuser only. Run VACUUM ANALYZE afterwards.';
REVOKE ALL ON FUNCTION load_demo FROM PUBLIC;
