-- Wiring of the Rust functions into the data model; runs after pgrx has
-- created them.

CREATE TRIGGER order_details_before_insert
    BEFORE INSERT ON order_details
    FOR EACH ROW EXECUTE FUNCTION order_details_before_insert();

CREATE TRIGGER restaurants_creator_check
    BEFORE INSERT OR UPDATE OF created_by_user_id ON restaurants
    FOR EACH ROW EXECUTE FUNCTION restaurants_creator_check();

CREATE TRIGGER users_creator_guard
    BEFORE DELETE OR UPDATE OF id, restaurant_id ON users
    FOR EACH ROW EXECUTE FUNCTION users_creator_guard();

CREATE FUNCTION drop_guard() RETURNS event_trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'olaclick_drop_guard';
REVOKE ALL ON FUNCTION drop_guard() FROM PUBLIC;

CREATE EVENT TRIGGER olaclick_drop_guard ON ddl_command_start
    WHEN TAG IN ('DROP EXTENSION')
    EXECUTE FUNCTION drop_guard();
