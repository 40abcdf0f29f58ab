//! The application as a hostile caller: each test is a way around a guarantee
//! that a probe found in 0.2.0, tried through the application role with
//! row-level security where the application is the one trying.
#[pgrx::pg_schema]
mod tests {
    use crate::tests::{
        act_as, assert_fails, assert_ok, back_to_superuser, line_count, one, rows, set_status,
        tenant, total, Tenant,
    };
    use pgrx::prelude::*;

    /// A sent order of `t` with one line; returns its id.
    fn sent_order(t: &Tenant) -> i64 {
        let order = t.order();
        Spi::run(&format!(
            "INSERT INTO olaclick.order_details (order_id, product_id, quantity) VALUES ({order}, {}, 2);
             UPDATE olaclick.orders SET status = 'sent' WHERE id = {order}",
            t.product
        ))
        .unwrap();
        order
    }

    /// Unsetting the tenant part way through a statement hides the order from
    /// the caller; the guarantees still see it.
    #[pg_test]
    fn hiding_the_order_part_way_does_not_unfreeze_its_lines() {
        let a = tenant("a");
        let order = sent_order(&a);
        let more = |name: &str| -> i32 {
            one(&format!(
                "INSERT INTO olaclick.products (restaurant_id, name, price) VALUES ({}, '{name}', 3) RETURNING id",
                a.restaurant
            ))
        };
        let (second, third) = (more("q"), more("r"));
        act_as("olaclick_app", Some(a.restaurant));
        let message = assert_fails(
            &format!(
                "DELETE FROM olaclick.order_details WHERE order_id = {order}
                 AND set_config('olaclick.restaurant_id', '', false) IS NOT NULL"
            ),
            "23514",
        );
        assert!(message.contains("frozen"), "{message}");
        // The first row passes the policy before the second row's
        // set_config unsets the tenant.
        assert_fails(
            &format!(
                "INSERT INTO olaclick.order_details (order_id, product_id, quantity, price, restaurant_id)
                 SELECT {order}, p, 1, 1, {r} FROM (VALUES (1, {second}), (2, {p})) v (n, p)
                 WHERE v.n = 1 OR set_config('olaclick.restaurant_id', '', false) IS NOT NULL",
                r = a.restaurant,
                p = third,
            ),
            "23514",
        );
        back_to_superuser();
        assert_eq!(total(order), "25.00");
        assert_eq!(line_count(order), 1);
    }

    #[pg_test]
    fn hiding_the_restaurant_does_not_let_its_creator_be_deleted() {
        let a = tenant("a");
        Spi::run(&format!(
            "UPDATE olaclick.restaurants SET created_by_user_id = {} WHERE id = {}",
            a.user, a.restaurant
        ))
        .unwrap();
        act_as("olaclick_app", Some(a.restaurant));
        assert_fails(
            &format!(
                "DELETE FROM olaclick.users WHERE id = {}
                 AND set_config('olaclick.restaurant_id', '', false) IS NOT NULL",
                a.user
            ),
            "23503",
        );
        back_to_superuser();
        assert_eq!(
            one::<i64>("SELECT count(*) FROM olaclick.check_consistency()"),
            0
        );
    }

    #[pg_test]
    fn money_is_never_nan() {
        let a = tenant("a");
        let order = a.order();
        for role in ["olaclick_app", "postgres"] {
            if role != "postgres" {
                act_as(role, Some(a.restaurant));
            }
            // Each way of writing NaN money, and the constraint that refuses it.
            for (write, constraint) in [
                (
                    format!(
                        "INSERT INTO olaclick.products (restaurant_id, name, price) VALUES ({}, 'nan', 'NaN')",
                        a.restaurant
                    ),
                    "products_price_not_nan",
                ),
                (
                    format!(
                        "UPDATE olaclick.products SET price = 'NaN' WHERE id = {}",
                        a.product
                    ),
                    "products_price_not_nan",
                ),
                (
                    format!(
                        "INSERT INTO olaclick.order_details (order_id, product_id, quantity, price) VALUES ({order}, {}, 1, 'NaN')",
                        a.product
                    ),
                    "order_details_price_not_nan",
                ),
            ] {
                let message = assert_fails(&write, "23514");
                assert!(message.contains(constraint), "{role}: {message}");
            }
            back_to_superuser();
        }
        assert_eq!(total(order), "0.00");
    }

    /// What a superuser can still do around the guarantees (replica mode), and
    /// that check_consistency() finds it afterwards.
    #[pg_test]
    fn check_consistency_finds_what_replica_mode_let_through() {
        let a = tenant("a");
        let b = tenant("b");
        let order = a.order();
        Spi::run(&format!(
            "ALTER TABLE olaclick.orders DROP CONSTRAINT orders_total_not_nan;
             SET LOCAL session_replication_role = replica;
             UPDATE olaclick.orders SET total = 'NaN' WHERE id = {order};
             INSERT INTO olaclick.orders (restaurant_id, client_id, branch_id) VALUES ({ra}, {cb}, {bb});
             UPDATE olaclick.restaurants SET created_by_user_id = {ub} WHERE id = {ra};
             SET LOCAL session_replication_role = origin",
            ra = a.restaurant,
            cb = b.client,
            bb = b.branch,
            ub = b.user,
        ))
        .unwrap();
        let found: String = one(
            "SELECT string_agg(problem, ', ' ORDER BY problem) FROM olaclick.check_consistency()",
        );
        assert_eq!(
            found,
            "branch of another tenant, client of another tenant, creator of another tenant, \
             history does not lead to status, total differs from lines"
        );
    }

    #[pg_test]
    fn the_drop_guard_has_no_side_doors() {
        tenant("a").order();
        Spi::run("SET LOCAL session_replication_role = replica").unwrap();
        assert_fails("DROP EXTENSION olaclick CASCADE", "2BP01");
        Spi::run("SET LOCAL session_replication_role = origin").unwrap();
        for side_door in [
            "DROP SCHEMA olaclick CASCADE",
            "ALTER EXTENSION olaclick DROP TABLE olaclick.orders",
            "ALTER EXTENSION olaclick DROP TABLE olaclick.order_details",
            "DROP OWNED BY CURRENT_USER",
        ] {
            let message = assert_fails(side_door, "2BP01");
            assert!(message.contains("olaclick holds orders"), "{message}");
            assert!(one::<bool>(
                "SELECT to_regclass('olaclick.orders') IS NOT NULL"
            ));
        }
        // A table detached with allow_drop on is still guarded once it is off.
        Spi::run(
            "SET LOCAL olaclick.allow_drop = on;
             ALTER EXTENSION olaclick DROP TABLE olaclick.audit_settings;
             SET LOCAL olaclick.allow_drop = off",
        )
        .unwrap();
        assert_fails("DROP TABLE olaclick.audit_settings", "2BP01");
        Spi::run("SET LOCAL search_path = olaclick").unwrap();
        assert_fails("DROP TABLE audit_settings", "2BP01");
        Spi::run("RESET search_path").unwrap();
        // Unrelated schemas and tables are not judged.
        Spi::run("CREATE SCHEMA olaclick_scratch; CREATE TABLE olaclick_scratch.t ()").unwrap();
        assert_ok("DROP TABLE olaclick_scratch.t");
        assert_ok("DROP SCHEMA olaclick_scratch");
        Spi::run("SET LOCAL olaclick.allow_drop = on").unwrap();
        assert_ok("DROP SCHEMA olaclick CASCADE");
    }

    #[pg_test]
    fn the_application_cannot_choose_ids_or_draw_sequences() {
        let a = tenant("a");
        let sequences: Vec<String> = one(
            "SELECT array_agg(sequencename::text ORDER BY 1) FROM pg_sequences WHERE schemaname = 'olaclick'",
        );
        // Each table's identity, and the count of skipped notifications.
        assert_eq!(sequences.len(), 9, "{sequences:?}");
        act_as("olaclick_app", Some(a.restaurant));
        let future = "2000000000";
        for insert in [
            format!("INSERT INTO olaclick.clients (id, restaurant_id, name, email) VALUES ({future}, {}, 'x', 'x@x')", a.restaurant),
            format!("INSERT INTO olaclick.clients (id, restaurant_id, name, email) OVERRIDING SYSTEM VALUE VALUES ({future}, {}, 'x', 'x@x')", a.restaurant),
            format!("INSERT INTO olaclick.orders (id, restaurant_id, client_id, branch_id) VALUES ({future}, {}, {}, {})", a.restaurant, a.client, a.branch),
            format!("INSERT INTO olaclick.users (id, restaurant_id, username, password_hash, status) VALUES ({future}, {}, 'x', 'h', 'A')", a.restaurant),
            format!("INSERT INTO olaclick.products (id, restaurant_id, name, price) VALUES ({future}, {}, 'x', 1)", a.restaurant),
            format!("INSERT INTO olaclick.branches (id, restaurant_id, name, address) VALUES ({future}, {}, 'x', 'y')", a.restaurant),
            format!("UPDATE olaclick.clients SET id = {future} WHERE id = {}", a.client),
            format!("UPDATE olaclick.restaurants SET id = {future} WHERE id = {}", a.restaurant),
        ] {
            assert_fails(&insert, "42501");
        }
        for sequence in &sequences {
            assert_fails(&format!("SELECT nextval('olaclick.{sequence}')"), "42501");
        }
        // Ids the database chooses still work, and so does every other column.
        assert_ok(&format!(
            "INSERT INTO olaclick.clients (restaurant_id, name, email) VALUES ({}, 'y', 'y@x')",
            a.restaurant
        ));
        assert_ok(&format!(
            "UPDATE olaclick.clients SET name = 'z', phone = '1' WHERE id = {}",
            a.client
        ));
        back_to_superuser();
    }

    #[pg_test]
    fn the_application_cannot_redirect_invalidations() {
        let a = tenant("a");
        act_as("olaclick_app", Some(a.restaurant));
        assert_fails("SET olaclick.notify_channel = 'elsewhere'", "42501");
        assert_fails(
            "SELECT set_config('olaclick.notify_channel', 'elsewhere', true)",
            "42501",
        );
        back_to_superuser();
        assert_ok("SET LOCAL olaclick.notify_channel = 'elsewhere'");
    }

    #[pg_test]
    fn audit_purge_is_delegated_by_grant_and_only_by_grant() {
        let a = tenant("a");
        a.order();
        Spi::run(
            "CREATE ROLE olaclick_test_retention NOLOGIN;
             CREATE ROLE olaclick_test_other NOLOGIN;
             GRANT USAGE ON SCHEMA olaclick TO olaclick_test_retention, olaclick_test_other;
             GRANT EXECUTE ON FUNCTION olaclick.audit_purge(timestamptz, text) TO olaclick_test_retention;
             CREATE TABLE public.audit_archive (LIKE olaclick.audit_log);
             CREATE TABLE public.not_yours (LIKE olaclick.audit_log);
             GRANT INSERT ON public.audit_archive TO olaclick_test_retention",
        )
        .unwrap();
        let logged = rows("audit_log");
        assert!(logged > 0);

        Spi::run("SET LOCAL ROLE olaclick_test_other").unwrap();
        assert_fails(
            "SELECT olaclick.audit_purge(now() + interval '1 day')",
            "42501",
        );
        assert_fails(
            "SELECT count(*) FROM olaclick.audit_purge_rows(now() + interval '1 day')",
            "42501",
        );
        Spi::run("RESET ROLE").unwrap();

        Spi::run("SET LOCAL ROLE olaclick_test_retention").unwrap();
        // It can't archive where it can't write.
        assert_fails(
            "SELECT olaclick.audit_purge(now() + interval '1 day', 'public.not_yours')",
            "42501",
        );
        let message = assert_fails("SELECT olaclick.audit_purge(NULL)", "22004");
        assert!(message.contains("older_than"), "{message}");
        assert_fails(
            "SELECT olaclick.audit_purge(now(), 'olaclick.audit_log')",
            "22023",
        );
        let purged: i64 =
            one("SELECT olaclick.audit_purge(now() + interval '1 day', 'public.audit_archive')");
        Spi::run("RESET ROLE").unwrap();
        assert_eq!(purged, logged);
        assert_eq!(
            one::<i64>("SELECT count(*) FROM public.audit_archive"),
            logged
        );
        assert_eq!(rows("audit_log"), 0);

        act_as("olaclick_app", Some(a.restaurant));
        assert_fails(
            "SELECT count(*) FROM olaclick.audit_purge_rows(now() + interval '1 day')",
            "42501",
        );
        back_to_superuser();
    }

    #[pg_test]
    fn bad_values_get_their_sqlstate_not_an_internal_error() {
        let a = tenant("a");
        let order = a.order();
        let message = assert_fails(
            &format!("UPDATE olaclick.orders SET status = NULL WHERE id = {order}"),
            "23502",
        );
        assert!(message.contains("status"), "{message}");
        assert_fails(
            &format!(
                "INSERT INTO olaclick.orders (restaurant_id, client_id, branch_id, status) VALUES ({}, {}, {}, NULL)",
                a.restaurant, a.client, a.branch
            ),
            "23502",
        );
        for bad in ["abc", "0", "-1", "1.5", "99999999999"] {
            Spi::run("SET LOCAL ROLE olaclick_app").unwrap();
            Spi::run(&format!("SET LOCAL olaclick.restaurant_id = '{bad}'")).unwrap();
            let message = assert_fails("SELECT count(*) FROM olaclick.orders", "22023");
            assert!(message.contains("olaclick.restaurant_id"), "{message}");
            back_to_superuser();
        }
    }

    /// Rows olaclick writes because of the application's change (history,
    /// totals) are audited, when olaclick.audit_derived is on, under the
    /// application's role, not the owner's.
    #[pg_test]
    fn derived_rows_are_audited_under_the_role_that_caused_them() {
        let a = tenant("a");
        Spi::run("SET LOCAL olaclick.audit_derived = on").unwrap();
        act_as("olaclick_app", Some(a.restaurant));
        assert_ok(&format!(
            "INSERT INTO olaclick.orders (restaurant_id, client_id, branch_id) VALUES ({}, {}, {})",
            a.restaurant, a.client, a.branch
        ));
        let order: i64 = one("SELECT max(id) FROM olaclick.orders");
        assert_ok(&a.line_sql(order, 1));
        assert_ok(&set_status(order, "sent"));
        back_to_superuser();
        let roles: String = one(&format!(
            "SELECT string_agg(DISTINCT table_name || ':' || db_role, ', ')
             FROM olaclick.audit_log
             WHERE coalesce(new_row, old_row)->>'order_id' = '{order}' OR (table_name = 'orders' AND new_row->>'id' = '{order}')"
        ));
        assert_eq!(
            roles,
            "order_details:olaclick_app, order_status_history:olaclick_app, orders:olaclick_app"
        );
    }
}
