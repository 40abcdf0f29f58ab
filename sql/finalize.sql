-- Wiring of the Rust functions into the data model; runs after pgrx has
-- created them. Each trigger names the file that holds its rule.

-- src/status.rs: the status machine, totals written only by olaclick, history.
CREATE TRIGGER orders_guard
    BEFORE INSERT OR UPDATE OR DELETE ON orders
    FOR EACH ROW EXECUTE FUNCTION orders_guard();
CREATE TRIGGER orders_history_insert
    AFTER INSERT ON orders REFERENCING NEW TABLE AS new_orders
    FOR EACH STATEMENT EXECUTE FUNCTION orders_history();
CREATE TRIGGER orders_history_update
    AFTER UPDATE ON orders REFERENCING OLD TABLE AS old_orders NEW TABLE AS new_orders
    FOR EACH STATEMENT EXECUTE FUNCTION orders_history();

-- src/notify.rs: a change of a column olaclick-cache's query reads, other
-- than the orders' own (orders_guard notes those), makes every cached list of
-- the row's restaurant stale. The lists are the columns the query reads of
-- each table; cache/tests/cache.rs derives them from the query and fails when
-- one is missing here.
CREATE TRIGGER clients_cache_notify
    BEFORE UPDATE OF id, name ON clients
    FOR EACH ROW EXECUTE FUNCTION cache_columns_notify('restaurant_id');
CREATE TRIGGER restaurants_cache_notify
    BEFORE UPDATE OF id, name ON restaurants
    FOR EACH ROW EXECUTE FUNCTION cache_columns_notify('id');

-- src/lines.rs: a line's tenant and price default from its order and product.
CREATE TRIGGER order_details_defaults
    BEFORE INSERT ON order_details
    FOR EACH ROW EXECUTE FUNCTION order_details_defaults();

-- src/totals.rs: totals follow the lines; lines of sent orders are frozen.
-- (A trigger with transition tables serves one event, hence three.)
CREATE TRIGGER order_details_totals_insert
    AFTER INSERT ON order_details REFERENCING NEW TABLE AS new_lines
    FOR EACH STATEMENT EXECUTE FUNCTION order_details_totals();
CREATE TRIGGER order_details_totals_update
    AFTER UPDATE ON order_details REFERENCING OLD TABLE AS old_lines NEW TABLE AS new_lines
    FOR EACH STATEMENT EXECUTE FUNCTION order_details_totals();
CREATE TRIGGER order_details_totals_delete
    AFTER DELETE ON order_details REFERENCING OLD TABLE AS old_lines
    FOR EACH STATEMENT EXECUTE FUNCTION order_details_totals();

CREATE TRIGGER order_details_no_truncate
    BEFORE TRUNCATE ON order_details
    FOR EACH STATEMENT EXECUTE FUNCTION order_details_no_truncate();

-- src/immutable.rs: history and audit are append-only, written by olaclick only.
CREATE TRIGGER order_status_history_insert_guard
    BEFORE INSERT ON order_status_history
    FOR EACH STATEMENT EXECUTE FUNCTION insert_guard();
CREATE TRIGGER audit_log_insert_guard
    BEFORE INSERT ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION insert_guard();
CREATE TRIGGER order_status_history_append_only
    BEFORE UPDATE OR TRUNCATE ON order_status_history
    FOR EACH STATEMENT EXECUTE FUNCTION append_only_guard();
CREATE TRIGGER order_status_history_delete_guard
    AFTER DELETE ON order_status_history REFERENCING OLD TABLE AS old_history
    FOR EACH STATEMENT EXECUTE FUNCTION history_delete_guard();
CREATE TRIGGER audit_log_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION append_only_guard();
-- The same on each partition (sql/partitions.sql): here the default one.
SELECT audit_log_guard_partition('olaclick.audit_log_default');

-- src/audit.rs: every row change of every business table (and of the audit
-- settings) is logged, one statement at a time. A trigger with transition
-- tables serves one event, hence one per event.
DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY olaclick.business_tables() || 'audit_settings'::text LOOP
        EXECUTE format('CREATE TRIGGER %1$s_audit_insert AFTER INSERT ON olaclick.%1$I
                          REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION olaclick.audit()', t);
        EXECUTE format('CREATE TRIGGER %1$s_audit_update AFTER UPDATE ON olaclick.%1$I
                          REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION olaclick.audit()', t);
        EXECUTE format('CREATE TRIGGER %1$s_audit_delete AFTER DELETE ON olaclick.%1$I
                          REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION olaclick.audit()', t);
        EXECUTE format('CREATE TRIGGER %1$s_audit_truncate AFTER TRUNCATE ON olaclick.%1$I
                          FOR EACH STATEMENT EXECUTE FUNCTION olaclick.audit()', t);
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION audit_purge(timestamptz, text), maintain(timestamptz) FROM PUBLIC;

-- src/tenancy.rs: a restaurant's creator is one of its users.
CREATE TRIGGER restaurants_creator_check
    BEFORE INSERT OR UPDATE OF created_by_user_id ON restaurants
    FOR EACH ROW EXECUTE FUNCTION restaurants_creator_check();
CREATE TRIGGER users_creator_guard
    BEFORE DELETE OR UPDATE OF id, restaurant_id ON users
    FOR EACH ROW EXECUTE FUNCTION users_creator_guard();

-- src/drop_guard.rs: dropping the extension, its schema or its tables is
-- refused while orders exist; detaching or dropping a partition of the audit
-- log (also by its schema or owner) and making a foreign table one, always;
-- ALWAYS, so replica mode doesn't switch it off.
CREATE FUNCTION drop_guard() RETURNS event_trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'olaclick_drop_guard';
REVOKE ALL ON FUNCTION drop_guard() FROM PUBLIC;
CREATE EVENT TRIGGER olaclick_drop_guard ON ddl_command_start
    WHEN TAG IN ('DROP EXTENSION', 'DROP SCHEMA', 'DROP TABLE', 'ALTER EXTENSION', 'DROP OWNED', 'ALTER TABLE',
                 'DROP FOREIGN TABLE', 'CREATE FOREIGN TABLE')
    EXECUTE FUNCTION drop_guard();
ALTER EVENT TRIGGER olaclick_drop_guard ENABLE ALWAYS;
