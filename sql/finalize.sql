-- Wiring of the Rust functions into the data model; runs after pgrx has
-- created them.

CREATE TRIGGER order_details_before_insert
    BEFORE INSERT ON order_details
    FOR EACH ROW EXECUTE FUNCTION order_details_before_insert();

CREATE FUNCTION drop_guard() RETURNS event_trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'olaclick_drop_guard';
REVOKE ALL ON FUNCTION drop_guard() FROM PUBLIC;

CREATE EVENT TRIGGER olaclick_drop_guard ON ddl_command_start
    WHEN TAG IN ('DROP EXTENSION')
    EXECUTE FUNCTION drop_guard();
