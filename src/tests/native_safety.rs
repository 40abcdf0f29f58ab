//! The native write path (src/native/) is as safe as INSERT and UPDATE:
//! statements ORMs send that write one order twice in one command, totals a
//! column can't hold, a hidden order, settings and tenants kept per backend.
//! Each runs with native writes on and off (the SQL path) and must give the
//! same result both ways.
#[pgrx::pg_schema]
mod tests {
    use crate::tests::{
        act_as, assert_fails, assert_ok, back_to_superuser, line_count, native_writes, one, rows,
        tenant, Tenant,
    };
    use pgrx::prelude::*;

    /// `total` and the sum of the lines of `order`.
    fn total_and_lines(order: i64) -> (AnyNumeric, AnyNumeric) {
        (
            one(&format!("SELECT total FROM olaclick.orders WHERE id = {order}")),
            one(&format!(
                "SELECT coalesce(sum(quantity * price), 0) FROM olaclick.order_details WHERE order_id = {order}"
            )),
        )
    }

    /// Runs `check` with native writes on, then off (the SQL path), each
    /// time with a fresh tenant (`name` and the path) and a new order of it;
    /// afterwards the order's total must be the sum of its lines. `check`
    /// gets whether native writes are on, for its messages.
    fn on_both_paths(name: &str, check: impl Fn(&Tenant, i64, bool)) {
        for on in [true, false] {
            native_writes(on);
            let t = tenant(&format!("{name}{on}"));
            let order = t.order();
            check(&t, order, on);
            let (total, lines) = total_and_lines(order);
            assert_eq!(total, lines, "native writes {on}");
        }
    }

    /// An upsert over an order's lines (some new, some existing), a MERGE
    /// with matched and not-matched rows, and writable CTEs touching one
    /// order twice: each writes the order's total twice in one command
    /// (XX000 "attempted to lock invisible tuple" before 0.4.0).
    #[pg_test]
    fn upserts_merges_and_writable_ctes_keep_totals() {
        on_both_paths("upsert", |t, o, on| {
            let p1 = t.product;
            let p2 = t.new_product("2.00");
            let p3 = t.new_product("3.00");
            assert_ok(&t.line_sql(o, 1));
            assert_ok(&format!(
                "INSERT INTO olaclick.order_details AS d (order_id, product_id, quantity)
                 VALUES ({o}, {p1}, 2), ({o}, {p2}, 1)
                 ON CONFLICT (order_id, product_id) DO UPDATE SET quantity = d.quantity + excluded.quantity"
            ));
            assert_ok(&format!(
                "MERGE INTO olaclick.order_details d
                 USING (VALUES ({o}::bigint, {p2}, 5), ({o}::bigint, {p3}, 1)) v (o, p, q)
                   ON d.order_id = v.o AND d.product_id = v.p
                 WHEN MATCHED THEN UPDATE SET quantity = v.q
                 WHEN NOT MATCHED THEN INSERT (order_id, product_id, quantity) VALUES (v.o, v.p, v.q)"
            ));
            assert_ok(&format!(
                "WITH a AS (UPDATE olaclick.order_details SET quantity = quantity + 1
                            WHERE order_id = {o} AND product_id = {p1} RETURNING 1),
                      b AS (DELETE FROM olaclick.order_details
                            WHERE order_id = {o} AND product_id = {p3} RETURNING 1)
                 SELECT count(*) FROM a, b"
            ));
            // 4 x 12.50 + 5 x 2.00
            assert_eq!(
                total_and_lines(o).0,
                AnyNumeric::try_from("60.00").unwrap(),
                "native writes {on}"
            );
            let broken: i64 = one("SELECT count(*) FROM olaclick.check_consistency()");
            assert_eq!(broken, 0);
        });
    }

    /// A line whose amount takes the total past numeric(14,2) fails with
    /// 22003 as the SQL UPDATE does, and leaves nothing behind (0.3.0 stored
    /// the total, and a dump of it could not be restored).
    #[pg_test]
    fn a_total_the_column_cannot_hold_is_refused() {
        on_both_paths("big", |t, o, on| {
            let dear = t.new_product("9999999999.99");
            let dearer = t.new_product("9999999999.99");
            // 599,999,999,999.40: numeric(14,2) holds it.
            assert_ok(&format!(
                "INSERT INTO olaclick.order_details (order_id, product_id, quantity) VALUES ({o}, {dear}, 60)"
            ));
            // Another 499,999,999,999.50 would not fit.
            let message = assert_fails(
                &format!(
                    "INSERT INTO olaclick.order_details (order_id, product_id, quantity) VALUES ({o}, {dearer}, 50)"
                ),
                "22003",
            );
            assert!(
                message.contains("numeric field overflow"),
                "native writes {on}: {message}"
            );
            let lines = line_count(o);
            assert_eq!(lines, 1, "native writes {on}");
        });
    }

    /// A line for another tenant's order, hidden by row-level security, is
    /// refused exactly as one for a missing order: same SQLSTATE, same
    /// message (0.3.0 named the hidden order's restaurant).
    #[pg_test]
    fn a_hidden_order_is_refused_like_a_missing_one() {
        let a = tenant("hidden_a");
        let b = tenant("hidden_b");
        // Inserted by this backend: it remembers the order's tenant.
        let hidden = a.order();
        let missing: i64 = one("SELECT max(id) + 1000000 FROM olaclick.orders");
        act_as("olaclick_app", Some(b.restaurant));
        for price in ["", ", price"] {
            let value = if price.is_empty() { "" } else { ", 1.00" };
            let refused = |order: i64| {
                assert_fails(
                    &format!(
                        "INSERT INTO olaclick.order_details (order_id, product_id, quantity{price})
                         VALUES ({order}, {}, 1{value})",
                        b.product
                    ),
                    "23503",
                )
                .replace(&order.to_string(), "N")
            };
            assert_eq!(
                refused(hidden),
                refused(missing),
                "price given: {}",
                !price.is_empty()
            );
            assert!(refused(hidden).contains("order N does not exist"));
        }
        back_to_superuser();
    }

    /// The tenant a backend remembers for an order is forgotten when the
    /// orders table is replaced (DROP and CREATE EXTENSION, a restore): a
    /// valid line for an order with a reused id is accepted (0.3.0 filled in
    /// the old tenant and failed with 23503).
    #[pg_test]
    fn a_remembered_tenant_does_not_outlive_its_table() {
        let old = tenant("before").order();
        Spi::run("SET LOCAL olaclick.allow_drop = on").unwrap();
        assert_ok("DROP EXTENSION olaclick CASCADE");
        assert_ok("CREATE EXTENSION olaclick");
        let t = tenant("after");
        // Restored rows: the order comes back with its id, no trigger fires.
        Spi::run("SET LOCAL session_replication_role = replica").unwrap();
        assert_ok(&format!(
            "INSERT INTO olaclick.orders (id, restaurant_id, client_id, branch_id) VALUES ({old}, {}, {}, {})",
            t.restaurant, t.client, t.branch
        ));
        Spi::run("SET LOCAL session_replication_role = origin").unwrap();
        assert_ok(&format!(
            "INSERT INTO olaclick.order_details (order_id, product_id, quantity, price) VALUES ({old}, {}, 2, 1.50)",
            t.product
        ));
        let tenant_of_line: i32 = one(&format!(
            "SELECT restaurant_id FROM olaclick.order_details WHERE order_id = {old}"
        ));
        assert_eq!(tenant_of_line, t.restaurant);
    }

    /// A `json` column rewritten with the same value is no change for the
    /// audit, natively (one row) as for the set-based path (many rows).
    #[pg_test]
    fn a_json_column_rewritten_unchanged_is_not_logged() {
        let t = tenant("json");
        assert_ok("ALTER TABLE olaclick.clients ADD COLUMN prefs json");
        assert_ok(&format!(
            "INSERT INTO olaclick.clients (restaurant_id, name, email, prefs)
             SELECT {}, 'c' || i, 'c' || i || '@x.test', '{{\"a\": 1}}' FROM generate_series(1, 40) i",
            t.restaurant
        ));
        let before = rows("audit_log");
        let one_client: i32 = one(&format!(
            "SELECT min(id) FROM olaclick.clients WHERE restaurant_id = {} AND prefs IS NOT NULL",
            t.restaurant
        ));
        assert_ok(&format!(
            "UPDATE olaclick.clients SET prefs = prefs WHERE id = {one_client}"
        ));
        assert_ok(&format!(
            "UPDATE olaclick.clients SET prefs = prefs WHERE restaurant_id = {}",
            t.restaurant
        ));
        let after = rows("audit_log");
        assert_eq!(after, before);
        // A real change is logged by both paths.
        assert_ok(&format!(
            "UPDATE olaclick.clients SET prefs = '{{\"a\": 2}}' WHERE id = {one_client}"
        ));
        let logged = rows("audit_log");
        assert_eq!(logged, before + 1);
    }

    /// A column olaclick's triggers read, renamed by a DBA, is refused with
    /// 42703 naming it, never XX000 or a crash (0.3.0's native path crashed
    /// the server).
    #[pg_test]
    fn a_renamed_total_is_refused_with_its_name() {
        let t = tenant("renamed");
        let o = t.order();
        assert_ok("ALTER TABLE olaclick.orders RENAME COLUMN total TO amount");
        let message = assert_fails(&t.line_sql(o, 1), "42703");
        assert!(message.contains("total"), "{message}");
        let message = assert_fails(&t.order_sql(), "42703");
        assert!(
            message.contains("olaclick.orders has no column total"),
            "{message}"
        );
    }
}
