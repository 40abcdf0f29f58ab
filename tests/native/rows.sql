-- Every row the workload can have written, without what differs between
-- two runs by nature (clocks, transaction ids), one line each.
SELECT * FROM (SELECT 'orders ' || (to_jsonb(o) - 'created_at')::text FROM olaclick.orders o ORDER BY id) o
UNION ALL SELECT * FROM (SELECT 'line ' || (to_jsonb(d))::text FROM olaclick.order_details d ORDER BY order_id, product_id) d
UNION ALL SELECT * FROM (SELECT 'history ' || (to_jsonb(h) - 'changed_at')::text FROM olaclick.order_status_history h ORDER BY id) h
UNION ALL SELECT * FROM (SELECT 'audit ' || jsonb_build_array(a.id, a.restaurant_id, a.table_name, a.op,
                                  a.old_row - '{created_at,changed_at}'::text[], a.new_row - '{created_at,changed_at}'::text[],
                                  a.changed_cols, a.actor_user_id, a.db_role)::text
                         FROM olaclick.audit_log a ORDER BY id) a
UNION ALL SELECT * FROM (SELECT 'client ' || (to_jsonb(c) - 'created_at')::text FROM olaclick.clients c ORDER BY id) c
UNION ALL SELECT * FROM (SELECT 'restaurant ' || (to_jsonb(r) - 'created_at')::text FROM olaclick.restaurants r ORDER BY id) r;
