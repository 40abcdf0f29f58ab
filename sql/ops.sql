-- Operations helpers. Keep in step with the upgrade scripts: the upgrade
-- drill compares an updated catalog with a fresh install.

-- Every broken invariant olaclick guarantees, one row per problem: run it
-- after a restore, a point-in-time recovery, a failover, or anything a
-- superuser did around the guarantees (session_replication_role = replica,
-- restore-style COPY); no rows is healthy. Invoker's rights: the application
-- and read-only roles see their tenant.
--
-- History is judged in the order it was written (its ids), which is the order
-- the changes committed for one order: changed_at is a clock, ids are not.
CREATE FUNCTION check_consistency()
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

REVOKE ALL ON FUNCTION check_consistency() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION check_consistency() TO olaclick_app, olaclick_readonly;
