//! The demo loader builds the seed's data set, consistent with every rule.
#[pgrx::pg_schema]
mod tests {
    use crate::tests::{assert_fails, one, rows};
    use pgrx::prelude::*;

    fn load() {
        Spi::run(
            "SELECT * FROM olaclick.load_demo(restaurants => 3, users_per_restaurant => 4,
               branches_per_restaurant => 2, clients_per_restaurant => 5,
               products_per_restaurant => 6, orders => 1500, batch_size => 400)",
        )
        .unwrap();
    }

    /// Asserts that the count `sql` returns is 0; `what` names what it counts.
    #[track_caller]
    fn none(what: &str, sql: &str) {
        assert_eq!(one::<i64>(sql), 0, "{what}");
    }

    #[pg_test]
    fn counts_follow_the_arguments() {
        load();
        for (table, expected) in [
            ("restaurants", 3i64),
            ("users", 12),
            ("branches", 6),
            ("clients", 15),
            ("products", 18),
            ("orders", 1500),
        ] {
            assert_eq!(
                one::<i64>(&format!("SELECT count(*) FROM olaclick.{table}")),
                expected,
                "{table}"
            );
        }
        let lines: i64 = one(
            "SELECT count(*) FROM (SELECT order_id, count(*) n FROM olaclick.order_details GROUP BY 1) l
             WHERE n BETWEEN 1 AND 5",
        );
        assert_eq!(lines, 1500, "every order has 1 to 5 lines");
    }

    #[pg_test]
    fn totals_are_quantity_times_price() {
        load();
        none("orders whose total is not the sum of quantity x price of their lines", "SELECT count(*) FROM olaclick.orders o
             WHERE o.total <> (SELECT sum(quantity * price) FROM olaclick.order_details d WHERE d.order_id = o.id)");
        let with_quantity: i64 =
            one("SELECT count(*) FROM olaclick.order_details WHERE quantity > 1");
        assert!(
            with_quantity > 0,
            "quantities vary, so the test above can tell quantity from no quantity"
        );
        none("lines whose price is not their product's", "SELECT count(*) FROM olaclick.order_details d JOIN olaclick.products p ON p.id = d.product_id
             WHERE d.price <> p.price");
    }

    #[pg_test]
    fn history_matches_status_and_is_ordered_in_time() {
        load();
        // initiated: 1 row, sent: 2 rows, delivered: 3 rows, in the machine's order.
        none("orders whose history is not initiated, sent, delivered up to their status, in time order", "SELECT count(*) FROM olaclick.orders o
             WHERE (SELECT array_agg(h.status::text ORDER BY h.changed_at, h.status)
                    FROM olaclick.order_status_history h WHERE h.order_id = o.id)
                <> (ARRAY['initiated', 'sent', 'delivered'])[1:array_position(enum_range(NULL::olaclick.order_status), o.status)]");
        let first_is_creation: i64 = one(
            "SELECT count(*) FROM olaclick.orders o JOIN olaclick.order_status_history h
               ON h.order_id = o.id AND h.status = 'initiated' AND h.changed_at = o.created_at",
        );
        assert_eq!(first_is_creation, 1500);
        none(
            "history rows in the future",
            "SELECT count(*) FROM olaclick.order_status_history WHERE changed_at > now()",
        );
        none("history rows more than 8 days after their order was created", "SELECT count(*) FROM olaclick.order_status_history h JOIN olaclick.orders o ON o.id = h.order_id
             WHERE h.changed_at > o.created_at + interval '8 days'");
    }

    #[pg_test]
    fn shares_follow_the_seed() {
        load();
        // 1,500 draws: each share is within 5 standard deviations of its target.
        let recent: f64 = one("SELECT avg((created_at >= now() - interval '7 days')::int)::float8 FROM olaclick.orders");
        assert!(
            (0.40 + 0.60 * 7.0 / 30.0 - recent).abs() < 0.07,
            "recent share {recent}"
        );
        none(
            "orders older than 30 days",
            "SELECT count(*) FROM olaclick.orders WHERE created_at < now() - interval '30 days'",
        );
        let sent_or_later: f64 =
            one("SELECT avg((status <> 'initiated')::int)::float8 FROM olaclick.orders");
        assert!(
            (0.6 - sent_or_later).abs() < 0.07,
            "sent share {sent_or_later}"
        );
        let delivered: f64 =
            one("SELECT avg((status = 'delivered')::int)::float8 FROM olaclick.orders");
        assert!(
            (0.3 - delivered).abs() < 0.07,
            "delivered share {delivered}"
        );
    }

    #[pg_test]
    fn every_reference_stays_in_its_restaurant() {
        load();
        // Keys are not checked during the load, so check them here.
        none("rows that reference another restaurant's client, branch, product or order", "SELECT (SELECT count(*) FROM olaclick.orders o JOIN olaclick.clients c ON c.id = o.client_id
                     WHERE c.restaurant_id <> o.restaurant_id)
                  + (SELECT count(*) FROM olaclick.orders o JOIN olaclick.branches b ON b.id = o.branch_id
                     WHERE b.restaurant_id <> o.restaurant_id)
                  + (SELECT count(*) FROM olaclick.order_details d JOIN olaclick.products p ON p.id = d.product_id
                     WHERE p.restaurant_id <> d.restaurant_id)
                  + (SELECT count(*) FROM olaclick.order_details d JOIN olaclick.orders o ON o.id = d.order_id
                     WHERE o.restaurant_id <> d.restaurant_id)
                  + (SELECT count(*) FROM olaclick.order_status_history h JOIN olaclick.orders o ON o.id = h.order_id
                     WHERE o.restaurant_id <> h.restaurant_id)");
        none("orders without their client, lines without their order", "SELECT (SELECT count(*) FROM olaclick.orders o WHERE NOT EXISTS (SELECT 1 FROM olaclick.clients c WHERE c.id = o.client_id))
                  + (SELECT count(*) FROM olaclick.order_details d WHERE NOT EXISTS (SELECT 1 FROM olaclick.orders o WHERE o.id = d.order_id))");
    }

    #[pg_test]
    fn bad_sizes_are_refused_and_nothing_is_written() {
        assert_fails(
            "SELECT * FROM olaclick.load_demo(restaurants => 0)",
            "22023",
        );
        assert_fails(
            "SELECT * FROM olaclick.load_demo(created_within => '1 day')",
            "22023",
        );
        assert_eq!(rows("restaurants"), 0);
    }

    #[pg_test]
    fn only_a_superuser_may_load() {
        Spi::run("CREATE ROLE olaclick_test_loader").unwrap();
        Spi::run("GRANT USAGE ON SCHEMA olaclick TO olaclick_test_loader").unwrap();
        Spi::run("SET LOCAL ROLE olaclick_test_loader").unwrap();
        assert_fails("SELECT * FROM olaclick.load_demo(orders => 1)", "42501");
        Spi::run("RESET ROLE").unwrap();
    }
}
