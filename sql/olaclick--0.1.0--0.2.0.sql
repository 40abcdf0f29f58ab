-- olaclick 0.1.0 -> 0.2.0. Released upgrade scripts are never edited.

\echo Use "ALTER EXTENSION olaclick UPDATE" to load this file. \quit

-- Index-only joins from orders to their client's name (see sql/schema.sql).
CREATE INDEX clients_id_name_idx ON olaclick.clients (id) INCLUDE (name);

-- Every broken invariant olaclick guarantees, one row per problem: run it
-- after a restore, a point-in-time recovery or a failover; no rows is healthy.
-- Invoker's rights: the application and read-only roles see their tenant.
CREATE FUNCTION olaclick.check_consistency()
    RETURNS TABLE (problem text, restaurant_id integer, order_id bigint, detail text)
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT 'total differs from lines', o.restaurant_id, o.id,
           format('total %s, lines %s', o.total, coalesce(l.amount, 0))
    FROM olaclick.orders o
    LEFT JOIN (SELECT d.order_id, sum(d.quantity * d.price) AS amount
               FROM olaclick.order_details d GROUP BY d.order_id) l ON l.order_id = o.id
    WHERE o.total <> coalesce(l.amount, 0)
    UNION ALL
    SELECT 'history does not lead to status', o.restaurant_id, o.id,
           format('status %s, history %s', o.status, h.statuses)
    FROM olaclick.orders o
    LEFT JOIN (SELECT s.order_id, array_agg(s.status ORDER BY s.changed_at, s.id) AS statuses
               FROM olaclick.order_status_history s GROUP BY s.order_id) h ON h.order_id = o.id
    WHERE h.statuses IS DISTINCT FROM
          (enum_range(NULL::olaclick.order_status))[1:array_position(enum_range(NULL::olaclick.order_status), o.status)]
    UNION ALL
    SELECT 'line of another tenant', d.restaurant_id, d.order_id, format('order of restaurant %s', o.restaurant_id)
    FROM olaclick.order_details d JOIN olaclick.orders o ON o.id = d.order_id
    WHERE o.restaurant_id <> d.restaurant_id
    ORDER BY 1, 2, 3;
END;

REVOKE ALL ON FUNCTION olaclick.check_consistency() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION olaclick.check_consistency() TO olaclick_app, olaclick_readonly;
