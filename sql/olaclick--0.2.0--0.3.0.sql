-- olaclick 0.2.0 -> 0.3.0. Released upgrade scripts are never edited.

\echo Use "ALTER EXTENSION olaclick UPDATE" to load this file. \quit

-- Money is a number. 0.2.0 let 'NaN' into prices (and so totals); such rows
-- can't be judged by any rule, so the upgrade stops and says where they are.
DO $nan$
DECLARE products bigint; lines bigint; orders bigint;
BEGIN
    SELECT count(*) INTO products FROM olaclick.products WHERE price = 'NaN';
    SELECT count(*) INTO lines FROM olaclick.order_details WHERE price = 'NaN';
    SELECT count(*) INTO orders FROM olaclick.orders WHERE total = 'NaN';
    IF products + lines + orders > 0 THEN
        RAISE EXCEPTION 'olaclick 0.3.0 refuses NaN money, and this database has some'
            USING ERRCODE = 'check_violation',
                  DETAIL = pg_catalog.format('%s products, %s order lines and %s orders have a NaN price or total.',
                                             products, lines, orders),
                  HINT = 'Repair them as the README''s "Repairing NaN money" shows, then run ALTER EXTENSION olaclick UPDATE again.';
    END IF;
END
$nan$;
ALTER TABLE olaclick.products ADD CONSTRAINT products_price_not_nan CHECK (price <> 'NaN');
ALTER TABLE olaclick.orders ADD CONSTRAINT orders_total_not_nan CHECK (total <> 'NaN');
ALTER TABLE olaclick.order_details ADD CONSTRAINT order_details_price_not_nan CHECK (price <> 'NaN');

-- The tenant setting is validated like olaclick.user_id (22023), in Rust.
CREATE OR REPLACE FUNCTION olaclick."current_restaurant"() RETURNS INT
    STABLE PARALLEL SAFE STRICT
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'current_restaurant_wrapper';

-- Ids are the database's to choose; the application holds no sequence
-- privileges (identity columns don't need them).
REVOKE INSERT, UPDATE ON olaclick.restaurants, olaclick.users, olaclick.branches, olaclick.clients,
                         olaclick.products, olaclick.orders FROM olaclick_app;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA olaclick FROM olaclick_app;
DO $app$
DECLARE t text; cols text;
BEGIN
    FOREACH t IN ARRAY ARRAY['restaurants', 'users', 'branches', 'clients', 'products', 'orders'] LOOP
        SELECT pg_catalog.string_agg(pg_catalog.quote_ident(attname), ', ' ORDER BY attnum) INTO cols
        FROM pg_catalog.pg_attribute
        WHERE attrelid = pg_catalog.format('olaclick.%I', t)::regclass AND attnum > 0 AND NOT attisdropped
          AND attname <> 'id';
        EXECUTE pg_catalog.format('GRANT UPDATE (%s) ON olaclick.%I TO olaclick_app', cols, t);
        IF t <> 'restaurants' THEN
            EXECUTE pg_catalog.format('GRANT INSERT (%s), DELETE ON olaclick.%I TO olaclick_app', cols, t);
        END IF;
    END LOOP;
END
$app$;

-- audit_purge() can be delegated: it deletes through this function, with the
-- log owner's rights, and archives with the caller's.
CREATE FUNCTION olaclick.audit_purge_rows(older_than timestamptz) RETURNS SETOF olaclick.audit_log
    LANGUAGE sql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    DELETE FROM olaclick.audit_log WHERE at < audit_purge_rows.older_than RETURNING *;
END;

-- The drop guard also covers DROP SCHEMA, detaching or dropping tables and
-- DROP OWNED, and fires in replica mode too.
DROP EVENT TRIGGER olaclick_drop_guard;
CREATE EVENT TRIGGER olaclick_drop_guard ON ddl_command_start
    WHEN TAG IN ('DROP EXTENSION', 'DROP SCHEMA', 'DROP TABLE', 'ALTER EXTENSION', 'DROP OWNED')
    EXECUTE FUNCTION olaclick.drop_guard();
ALTER EVENT TRIGGER olaclick_drop_guard ENABLE ALWAYS;

-- check_consistency() also checks NaN totals, client, branch and creator tenancy,
-- and judges history in the order it was written.
CREATE OR REPLACE FUNCTION olaclick.check_consistency()
    RETURNS TABLE (problem text, restaurant_id integer, order_id bigint, detail text)
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT 'total differs from lines', o.restaurant_id, o.id,
           format('total %s, lines %s', o.total, coalesce(l.amount, 0))
    FROM olaclick.orders o
    LEFT JOIN (SELECT d.order_id, sum(d.quantity * d.price) AS amount
               FROM olaclick.order_details d GROUP BY d.order_id) l ON l.order_id = o.id
    WHERE o.total <> coalesce(l.amount, 0) OR o.total = 'NaN'
    UNION ALL
    SELECT 'history does not lead to status', o.restaurant_id, o.id,
           format('status %s, history %s', o.status, h.statuses)
    FROM olaclick.orders o
    LEFT JOIN (SELECT s.order_id, array_agg(s.status ORDER BY s.id) AS statuses
               FROM olaclick.order_status_history s GROUP BY s.order_id) h ON h.order_id = o.id
    WHERE h.statuses IS DISTINCT FROM
          (enum_range(NULL::olaclick.order_status))[1:array_position(enum_range(NULL::olaclick.order_status), o.status)]
    UNION ALL
    SELECT 'line of another tenant', d.restaurant_id, d.order_id, format('order of restaurant %s', o.restaurant_id)
    FROM olaclick.order_details d JOIN olaclick.orders o ON o.id = d.order_id
    WHERE o.restaurant_id <> d.restaurant_id
    UNION ALL
    SELECT 'client of another tenant', o.restaurant_id, o.id,
           format('client %s is %s', o.client_id,
                  coalesce('of restaurant ' || c.restaurant_id, 'missing'))
    FROM olaclick.orders o LEFT JOIN olaclick.clients c ON c.id = o.client_id
    WHERE c.restaurant_id IS DISTINCT FROM o.restaurant_id
    UNION ALL
    SELECT 'branch of another tenant', o.restaurant_id, o.id,
           format('branch %s is %s', o.branch_id,
                  coalesce('of restaurant ' || b.restaurant_id, 'missing'))
    FROM olaclick.orders o LEFT JOIN olaclick.branches b ON b.id = o.branch_id
    WHERE b.restaurant_id IS DISTINCT FROM o.restaurant_id
    UNION ALL
    SELECT 'creator of another tenant', r.id, NULL::bigint,
           format('created_by_user_id %s is %s', r.created_by_user_id,
                  coalesce('of restaurant ' || u.restaurant_id, 'missing'))
    FROM olaclick.restaurants r LEFT JOIN olaclick.users u ON u.id = r.created_by_user_id
    WHERE r.created_by_user_id IS NOT NULL AND u.restaurant_id IS DISTINCT FROM r.id
    ORDER BY 1, 2, 3;
END;

