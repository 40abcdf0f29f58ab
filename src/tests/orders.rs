//! The order guarantees of the contract, rule by rule, with their SQLSTATEs.
#[pgrx::pg_schema]
mod tests {
    use crate::tests::{
        assert_fails, assert_ok, history, line_count, one, rows, set_status, status, tenant, total,
    };
    use pgrx::prelude::*;

    fn sum_of_lines(order: i64) -> String {
        one::<String>(&format!(
            "SELECT coalesce(sum(quantity * price), 0)::numeric(14,2)::text FROM olaclick.order_details WHERE order_id = {order}"
        ))
    }

    // Rule 1
    #[pg_test]
    fn a_new_order_starts_as_initiated() {
        let a = tenant("a");
        let message = assert_fails(
            &format!(
                "INSERT INTO olaclick.orders (restaurant_id, client_id, branch_id, status) VALUES ({}, {}, {}, 'sent')",
                a.restaurant, a.client, a.branch
            ),
            "23514",
        );
        assert!(
            message.contains("must start as initiated, not sent"),
            "{message}"
        );
        let order = a.order();
        assert_eq!(status(order), "initiated");
    }

    // Rule 2
    #[pg_test]
    fn status_moves_only_forward_one_step() {
        let a = tenant("a");
        let order = a.order();
        let message = assert_fails(&set_status(order, "delivered"), "23514");
        assert!(message.contains("from initiated to delivered"), "{message}");
        assert_ok(&set_status(order, "initiated")); // same status: a no-op
        assert_ok(&set_status(order, "sent"));
        assert_fails(&set_status(order, "initiated"), "23514");
        assert_ok(&set_status(order, "delivered"));
        let message = assert_fails(&set_status(order, "sent"), "23514");
        assert!(message.contains("from delivered to sent"), "{message}");
        assert_ok(&set_status(order, "delivered"));
        assert_eq!(history(order), "initiated,sent,delivered");
    }

    #[pg_test]
    fn a_refusal_says_what_is_allowed() {
        let a = tenant("a");
        let order = a.order();
        Spi::run(
            "CREATE FUNCTION pg_temp.refusal(sql text) RETURNS text LANGUAGE plpgsql AS $$
             DECLARE d text; h text;
             BEGIN EXECUTE sql; RETURN NULL;
             EXCEPTION WHEN OTHERS THEN GET STACKED DIAGNOSTICS d = PG_EXCEPTION_DETAIL, h = PG_EXCEPTION_HINT;
               RETURN d || ' | ' || h;
             END $$",
        )
        .unwrap();
        let said: String = one(&format!(
            "SELECT pg_temp.refusal($q${}$q$)",
            set_status(order, "delivered")
        ));
        assert!(
            said.contains(&format!("Order {order} of restaurant {}", a.restaurant)),
            "{said}"
        );
        assert!(said.contains("the only next status is sent"), "{said}");
    }

    // Rule 3
    #[pg_test]
    fn history_has_one_row_per_insert_and_change_with_the_actor() {
        let a = tenant("a");
        Spi::run(&format!("SET LOCAL olaclick.user_id = '{}'", a.user)).unwrap();
        let order = a.order();
        assert_ok(&format!(
            "UPDATE olaclick.orders SET branch_id = branch_id WHERE id = {order}"
        ));
        assert_ok(&set_status(order, "sent"));
        assert_eq!(history(order), "initiated,sent");
        let actors: i64 = one(&format!(
            "SELECT count(*) FROM olaclick.order_status_history
             WHERE order_id = {order} AND created_by_user_id = {} AND changed_at IS NOT NULL",
            a.user
        ));
        assert_eq!(actors, 2);
        let creator: i32 = one(&format!(
            "SELECT created_by_user_id FROM olaclick.orders WHERE id = {order}"
        ));
        assert_eq!(
            creator, a.user,
            "created_by_user_id defaults to olaclick.user_id"
        );
    }

    #[pg_test]
    fn nothing_else_writes_history() {
        let a = tenant("a");
        let order = a.order();
        assert_fails(
            &format!("INSERT INTO olaclick.order_status_history (order_id, restaurant_id, status) VALUES ({order}, {}, 'sent')", a.restaurant),
            "42501",
        );
        assert_eq!(history(order), "initiated");
    }

    #[pg_test]
    fn the_actor_must_be_a_user_of_the_order_restaurant() {
        let a = tenant("a");
        let b = tenant("b");
        let order = a.order();
        Spi::run(&format!("SET LOCAL olaclick.user_id = '{}'", b.user)).unwrap();
        assert_fails(&set_status(order, "sent"), "23503");
        Spi::run("SET LOCAL olaclick.user_id = 'bob'").unwrap();
        let message = assert_fails(&set_status(order, "sent"), "22023");
        assert!(
            message.contains("olaclick.user_id must be a positive integer id"),
            "{message}"
        );
        Spi::run("RESET olaclick.user_id").unwrap();
        assert_ok(&set_status(order, "sent"));
        assert_eq!(history(order), "initiated,sent");
    }

    // Rule 4
    #[pg_test]
    fn totals_follow_every_line_change() {
        let a = tenant("a");
        let order = a.order();
        let other = a.order();
        let p2 = a.new_product("3.25");
        let lines = "olaclick.order_details";
        assert_ok(&format!("INSERT INTO {lines} (order_id, product_id, quantity, price) VALUES ({order}, {}, 2, 10), ({order}, {p2}, 3, 1.5)", a.product));
        assert_eq!(total(order), "24.50");
        assert_ok(&format!(
            "UPDATE {lines} SET quantity = 5 WHERE order_id = {order} AND product_id = {p2}"
        ));
        assert_eq!(total(order), "27.50");
        assert_ok(&format!(
            "UPDATE {lines} SET order_id = {other} WHERE order_id = {order} AND product_id = {p2}"
        ));
        assert_eq!(
            (total(order), total(other)),
            ("20.00".into(), "7.50".into())
        );
        assert_ok(&format!("DELETE FROM {lines} WHERE order_id = {order}"));
        assert_eq!(total(order), "0.00");
        for o in [order, other] {
            assert_eq!(total(o), sum_of_lines(o));
        }
    }

    #[pg_test]
    fn a_different_total_cannot_be_written() {
        let a = tenant("a");
        let order = a.order();
        assert_ok(&a.line_sql(order, 2));
        let message = assert_fails(
            &format!("UPDATE olaclick.orders SET total = 1 WHERE id = {order}"),
            "23514",
        );
        assert!(message.contains("sum of the order's lines"), "{message}");
        assert_ok(&format!(
            "UPDATE olaclick.orders SET total = 25.00 WHERE id = {order}"
        ));
        assert_fails(
            &format!("INSERT INTO olaclick.orders (restaurant_id, client_id, branch_id, total) VALUES ({}, {}, {}, 9)", a.restaurant, a.client, a.branch),
            "23514",
        );
        assert_eq!(total(order), "25.00");
    }

    // Rule 5
    #[pg_test]
    fn a_line_without_price_takes_the_product_price() {
        let a = tenant("a");
        let b = tenant("b");
        let order = a.order();
        assert_ok(&a.line_sql(order, 4));
        let price: String = one(&format!(
            "SELECT price::text FROM olaclick.order_details WHERE order_id = {order}"
        ));
        assert_eq!(price, "12.50");
        assert_eq!(total(order), "50.00");
        let message = assert_fails(&b.line_sql(order, 1), "23503");
        assert!(
            message.contains("is not a product of restaurant"),
            "{message}"
        );
    }

    // Rule 6
    #[pg_test]
    fn lines_of_a_sent_order_are_frozen() {
        let a = tenant("a");
        let order = a.order();
        let p2 = a.new_product("1");
        assert_ok(&a.line_sql(order, 1));
        assert_ok(&set_status(order, "sent"));
        let message = assert_fails(
            &format!("INSERT INTO olaclick.order_details (order_id, product_id, quantity) VALUES ({order}, {p2}, 1)"),
            "23514",
        );
        assert!(
            message.contains(&format!(
                "the lines of order {order} are frozen: the order is sent"
            )),
            "{message}"
        );
        assert_fails(
            &format!("UPDATE olaclick.order_details SET quantity = 9 WHERE order_id = {order}"),
            "23514",
        );
        assert_fails(
            &format!("DELETE FROM olaclick.order_details WHERE order_id = {order}"),
            "23514",
        );
        assert_eq!(total(order), "12.50");
        // The whole order may still go, taking its lines and history along.
        assert_ok(&set_status(order, "delivered"));
        assert_ok(&format!("DELETE FROM olaclick.orders WHERE id = {order}"));
        assert_eq!(history(order), "");
        assert_eq!(line_count(order), 0);
    }

    // Rule 7
    #[pg_test]
    fn history_and_audit_are_never_changed_by_hand() {
        let a = tenant("a");
        let order = a.order();
        let is_superuser: bool = one("SELECT rolsuper FROM pg_roles WHERE rolname = current_user");
        assert!(is_superuser, "these refusals hold for a superuser");
        let h = "olaclick.order_status_history";
        assert_fails(
            &format!("UPDATE {h} SET changed_at = now() WHERE order_id = {order}"),
            "42501",
        );
        assert_fails(
            &format!("DELETE FROM {h} WHERE order_id = {order}"),
            "42501",
        );
        assert_fails(&format!("TRUNCATE {h}"), "42501");
        assert_fails(
            "INSERT INTO olaclick.audit_log (table_name, op) VALUES ('t', 'TRUNCATE')",
            "42501",
        );
        let logged = rows("audit_log");
        assert!(logged > 0, "the tenant and order above were logged");
        assert_fails("UPDATE olaclick.audit_log SET op = 'INSERT'", "42501");
        assert_fails("DELETE FROM olaclick.audit_log", "42501");
        assert_fails("TRUNCATE olaclick.audit_log", "42501");
        assert_eq!(history(order), "initiated");
    }

    // Bulk: one statement, many rows, same guarantees.
    #[pg_test]
    fn bulk_status_update_writes_one_history_row_per_order() {
        let a = tenant("a");
        let n: i64 = 100_000;
        Spi::run(&format!(
            "INSERT INTO olaclick.orders (restaurant_id, client_id, branch_id)
             SELECT {}, {}, {} FROM generate_series(1, {n})",
            a.restaurant, a.client, a.branch
        ))
        .unwrap();
        Spi::run(&format!(
            "INSERT INTO olaclick.order_details (order_id, product_id, quantity)
             SELECT id, {}, 2 FROM olaclick.orders WHERE restaurant_id = {}",
            a.product, a.restaurant
        ))
        .unwrap();
        Spi::run(&format!(
            "UPDATE olaclick.orders SET status = 'sent' WHERE restaurant_id = {} AND status = 'initiated'",
            a.restaurant
        ))
        .unwrap();
        let rows: i64 = one(&format!(
            "SELECT count(*) FROM olaclick.order_status_history WHERE restaurant_id = {} AND status = 'sent'",
            a.restaurant
        ));
        assert_eq!(rows, n);
        let wrong: i64 = one(&format!(
            "SELECT count(*) FROM olaclick.orders WHERE restaurant_id = {} AND total <> 25.00",
            a.restaurant
        ));
        assert_eq!(wrong, 0);
    }

    // Item 7 of the issue: a rolled-back savepoint leaves nothing behind.
    #[pg_test]
    fn a_rolled_back_savepoint_leaves_no_trace() {
        let a = tenant("a");
        let order = a.order();
        // try_sql runs its statement in a subtransaction that errors at the end.
        let failed = crate::tests::try_sql(&format!(
            "DO $$ BEGIN
               INSERT INTO olaclick.order_details (order_id, product_id, quantity) VALUES ({order}, {}, 3);
               UPDATE olaclick.orders SET status = 'sent' WHERE id = {order};
               RAISE EXCEPTION 'roll it back';
             END $$",
            a.product
        ));
        assert!(failed.is_some_and(|e| e.contains("roll it back")));
        assert_eq!(history(order), "initiated");
        assert_eq!(total(order), "0.00");
        assert_ok(&a.line_sql(order, 1));
        assert_eq!(total(order), "12.50");
    }
}
