-- The PL/pgSQL peer: olaclick's guarantees (status rules, history, totals,
-- frozen lines, append-only history and audit, audit log, cache notification)
-- written as the ordinary row-level PL/pgSQL triggers a DBA writes today.
-- Loaded by bench/run onto olaclick's tables and indexes (sql/schema.sql), so
-- the only difference measured is how the guarantees are implemented.
SET search_path = olaclick, pg_catalog;

CREATE FUNCTION peer_orders_guard() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    nxt olaclick.order_status;
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.status <> 'initiated' THEN
            RAISE EXCEPTION 'a new order must start as initiated, not %', NEW.status USING ERRCODE = 'check_violation';
        END IF;
        IF NEW.total <> 0 THEN
            RAISE EXCEPTION 'orders.total can''t be written directly' USING ERRCODE = 'check_violation';
        END IF;
    ELSE
        IF NEW.status <> OLD.status THEN
            nxt := CASE OLD.status WHEN 'initiated' THEN 'sent' WHEN 'sent' THEN 'delivered' END;
            IF nxt IS DISTINCT FROM NEW.status THEN
                RAISE EXCEPTION 'order status cannot move from % to %', OLD.status, NEW.status USING ERRCODE = 'check_violation';
            END IF;
        END IF;
        IF NEW.total <> OLD.total AND coalesce(current_setting('peer.totals', true), '') <> 'on' THEN
            RAISE EXCEPTION 'orders.total can''t be written directly' USING ERRCODE = 'check_violation';
        END IF;
    END IF;
    PERFORM pg_notify('olaclick_cache', json_build_object('restaurant_id', NEW.restaurant_id,
        'statuses', CASE WHEN TG_OP = 'INSERT' OR OLD.status = NEW.status THEN json_build_array(NEW.status)
                         ELSE json_build_array(OLD.status, NEW.status) END,
        'orders', json_build_array(NEW.id))::text);
    RETURN NEW;
END $$;
CREATE TRIGGER peer_orders_guard BEFORE INSERT OR UPDATE ON orders FOR EACH ROW EXECUTE FUNCTION peer_orders_guard();

CREATE FUNCTION peer_orders_history() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' OR NEW.status <> OLD.status THEN
        INSERT INTO olaclick.order_status_history (order_id, restaurant_id, status, changed_at, created_by_user_id)
        VALUES (NEW.id, NEW.restaurant_id, NEW.status, statement_timestamp(),
                nullif(current_setting('olaclick.user_id', true), '')::integer);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER peer_orders_history AFTER INSERT OR UPDATE ON orders FOR EACH ROW EXECUTE FUNCTION peer_orders_history();

CREATE FUNCTION peer_lines_defaults() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.restaurant_id IS NULL THEN
        SELECT restaurant_id INTO NEW.restaurant_id FROM olaclick.orders WHERE id = NEW.order_id;
    END IF;
    IF NEW.price IS NULL THEN
        SELECT price INTO NEW.price FROM olaclick.products WHERE id = NEW.product_id AND restaurant_id = NEW.restaurant_id;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER peer_lines_defaults BEFORE INSERT ON order_details FOR EACH ROW EXECUTE FUNCTION peer_lines_defaults();

CREATE FUNCTION peer_lines_totals() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    oid_ bigint;
    delta numeric;
BEGIN
    PERFORM set_config('peer.totals', 'on', true);
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        UPDATE olaclick.orders SET total = total - OLD.quantity * OLD.price
        WHERE id = OLD.order_id AND status = 'initiated' RETURNING id INTO oid_;
        IF oid_ IS NULL AND EXISTS (SELECT 1 FROM olaclick.orders WHERE id = OLD.order_id) THEN
            RAISE EXCEPTION 'the lines of order % are frozen', OLD.order_id USING ERRCODE = 'check_violation';
        END IF;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        UPDATE olaclick.orders SET total = total + NEW.quantity * NEW.price
        WHERE id = NEW.order_id AND status = 'initiated' RETURNING id INTO oid_;
        IF oid_ IS NULL THEN
            RAISE EXCEPTION 'the lines of order % are frozen', NEW.order_id USING ERRCODE = 'check_violation';
        END IF;
    END IF;
    PERFORM set_config('peer.totals', 'off', true);
    RETURN NULL;
END $$;
CREATE TRIGGER peer_lines_totals AFTER INSERT OR UPDATE OR DELETE ON order_details FOR EACH ROW EXECUTE FUNCTION peer_lines_totals();

CREATE FUNCTION peer_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER peer_history_append_only BEFORE UPDATE ON order_status_history
    FOR EACH STATEMENT EXECUTE FUNCTION peer_append_only();
CREATE TRIGGER peer_audit_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION peer_append_only();

CREATE FUNCTION peer_audit() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    o jsonb := CASE WHEN TG_OP <> 'INSERT' THEN to_jsonb(OLD) - 'password_hash' END;
    n jsonb := CASE WHEN TG_OP <> 'DELETE' THEN to_jsonb(NEW) - 'password_hash' END;
BEGIN
    IF TG_OP = 'UPDATE' AND o = n THEN
        RETURN NULL;
    END IF;
    INSERT INTO olaclick.audit_log (restaurant_id, table_name, op, old_row, new_row, actor_user_id, db_role)
    VALUES (coalesce(coalesce(n, o)->>'restaurant_id',
                     CASE WHEN TG_TABLE_NAME = 'restaurants' THEN coalesce(n, o)->>'id' END)::integer,
            TG_TABLE_NAME, TG_OP, o, n,
            nullif(current_setting('olaclick.user_id', true), '')::integer, current_user);
    RETURN NULL;
END $$;
DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY olaclick.business_tables() LOOP
        EXECUTE format('CREATE TRIGGER peer_audit AFTER INSERT OR UPDATE OR DELETE ON olaclick.%I
                        FOR EACH ROW EXECUTE FUNCTION olaclick.peer_audit()', t);
    END LOOP;
END $$;
