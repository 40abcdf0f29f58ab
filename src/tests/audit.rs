//! The audit log: one row per row change of every business table, actor and
//! tenant included, nothing for no-op updates, never a password hash.
#[pgrx::pg_schema]
mod tests {
    use crate::tests::{assert_fails, assert_ok, one, set_status, tenant};
    use pgrx::prelude::*;

    fn logged(filter: &str) -> i64 {
        one(&format!(
            "SELECT count(*) FROM olaclick.audit_log WHERE {filter}"
        ))
    }

    #[pg_test]
    fn every_row_change_of_every_table_is_logged_with_actor_and_tenant() {
        let a = tenant("a");
        Spi::run(&format!("SET LOCAL olaclick.user_id = '{}'", a.user)).unwrap();
        let order = a.order();
        assert_ok(&a.line_sql(order, 1));
        assert_ok(&set_status(order, "sent"));
        for (table, op, expected) in [
            ("restaurants", "INSERT", 1),
            ("users", "INSERT", 1),
            ("branches", "INSERT", 1),
            ("clients", "INSERT", 1),
            ("products", "INSERT", 1),
            ("orders", "INSERT", 1),
            ("order_details", "INSERT", 1),
            // The status; not the total olaclick derived from the line, nor
            // the history rows it derived (olaclick.audit_derived is off).
            ("orders", "UPDATE", 1),
            ("order_status_history", "INSERT", 0),
        ] {
            let n = logged(&format!(
                "table_name = '{table}' AND op = '{op}' AND restaurant_id = {}",
                a.restaurant
            ));
            assert_eq!(n, expected, "{table} {op}");
        }
        let by_actor = logged(&format!(
            "table_name IN ('orders', 'order_details', 'order_status_history') AND actor_user_id = {}
             AND db_role = current_user AND txid = txid_current() AND at = now()",
            a.user
        ));
        assert_eq!(
            by_actor, 3,
            "rows written while olaclick.user_id was set carry it"
        );
        assert_ok(&format!("DELETE FROM olaclick.products WHERE id = {}", one::<i32>(&format!(
            "INSERT INTO olaclick.products (restaurant_id, name, price) VALUES ({}, 'gone', 1) RETURNING id",
            a.restaurant
        ))));
        assert_eq!(logged("table_name = 'products' AND op = 'DELETE' AND old_row->>'name' = 'gone' AND new_row IS NULL"), 1);
    }

    /// With olaclick.audit_derived on, the rows olaclick derives are logged
    /// too, as the application's (one per history row and total update).
    /// What a single-row change logs (built natively, src/row_jsonb.rs) is
    /// exactly `to_jsonb(row) - excluded` (same text, equal), for every business
    /// table and awkward values (quotes, escapes, unicode, infinity, an
    /// empty string, NULLs, numbers with trailing zeros); a column kind it
    /// doesn't build (jsonb, arrays) and a type given a cast to json after
    /// the backend first logged it go through to_jsonb itself.
    #[pg_test]
    fn logged_rows_are_exactly_to_jsonb_of_the_row() {
        let a = tenant("a\"q\\b\n\u{e9}");
        let order = a.order();
        assert_ok(&format!(
            "INSERT INTO olaclick.order_details (order_id, product_id, quantity, price) VALUES ({order}, {}, 3, 10.10)",
            a.product
        ));
        assert_ok(&format!(
            "UPDATE olaclick.orders SET created_at = 'infinity' WHERE id = {order}"
        ));
        assert_ok(&format!(
            "UPDATE olaclick.clients SET email = '', phone = NULL WHERE id = {}",
            a.client
        ));
        let differing = |table: &str, excluded: &str| -> (i64, i64) {
            let compared: i64 = one(&format!(
                "SELECT count(*) FROM olaclick.audit_log l JOIN olaclick.{table} t ON (l.new_row->>'id')::bigint = t.id
                 WHERE l.table_name = '{table}' AND l.restaurant_id = {r}
                   AND l.id = (SELECT max(id) FROM olaclick.audit_log m WHERE m.table_name = '{table}' AND m.new_row->>'id' = l.new_row->>'id')",
                r = a.restaurant
            ));
            let differing: i64 = one(&format!(
                "SELECT count(*) FROM olaclick.audit_log l JOIN olaclick.{table} t ON (l.new_row->>'id')::bigint = t.id
                 WHERE l.table_name = '{table}' AND l.restaurant_id = {r}
                   AND l.id = (SELECT max(id) FROM olaclick.audit_log m WHERE m.table_name = '{table}' AND m.new_row->>'id' = l.new_row->>'id')
                   AND (l.new_row::text <> (to_jsonb(t) - '{excluded}'::text[])::text
                        OR l.new_row <> to_jsonb(t) - '{excluded}'::text[])",
                r = a.restaurant
            ));
            (compared, differing)
        };
        for table in [
            "restaurants",
            "users",
            "branches",
            "clients",
            "products",
            "orders",
        ] {
            let (compared, differing) = differing(table, "{password_hash}");
            assert!(compared > 0, "no {table} row compared");
            assert_eq!(differing, 0, "{table}: logged row differs from to_jsonb");
        }

        // Columns of every kind built natively, with awkward values.
        Spi::run(
            "ALTER TABLE olaclick.clients ADD COLUMN f float8, ADD COLUMN n numeric,
               ADD COLUMN s smallint, ADD COLUMN big bigint, ADD COLUMN d date,
               ADD COLUMN ts timestamp, ADD COLUMN b boolean",
        )
        .unwrap();
        for values in [
            "f = 1.5, n = 10.100, s = -3, big = 9223372036854775807, d = '2024-02-29', ts = '2024-01-01 10:00:00.5', b = true",
            "f = 'NaN', n = 'NaN', s = 0, big = -9223372036854775808, d = 'infinity', ts = '-infinity', b = false",
            "f = '-Infinity', n = 'Infinity', s = NULL, big = 0, d = '0001-01-01 BC', ts = NULL, b = NULL",
            "f = 1e300, n = '-Infinity', s = 32767, big = -1, d = NULL, ts = 'infinity', b = NULL",
            "f = -0.0, n = -0.000, s = -32768, big = 1, d = '5874897-12-31', ts = '2000-01-01', b = true",
            "f = 1.0e-300, n = 123456789012345678901234567890.123456789, s = 1, big = 2, d = '1970-01-01', ts = '1999-12-31 23:59:59.999999', b = false",
        ] {
            assert_ok(&format!(
                "UPDATE olaclick.clients SET {values} WHERE id = {}",
                a.client
            ));
            assert_eq!(differing("clients", "{}"), (1, 0), "{values}");
        }

        // A jsonb column: the row is left to to_jsonb, and still equal.
        Spi::run("ALTER TABLE olaclick.products ADD COLUMN extra jsonb, ADD COLUMN tags text[]")
            .unwrap();
        assert_ok(&format!(
            "UPDATE olaclick.products SET extra = '{{\"k\": [1, 2.50]}}', tags = '{{a,b}}' WHERE id = {}",
            a.product
        ));
        assert_eq!(differing("products", "{}"), (1, 0));

        // A cast to json for a type already logged: to_jsonb uses the cast.
        Spi::run(
            "CREATE FUNCTION pg_temp.status_json(olaclick.user_status) RETURNS json
               LANGUAGE sql IMMUTABLE RETURN json_build_object('s', $1::text);
             CREATE CAST (olaclick.user_status AS json) WITH FUNCTION pg_temp.status_json(olaclick.user_status)",
        )
        .unwrap();
        assert_ok(&format!(
            "UPDATE olaclick.users SET email = 'x@y.test' WHERE id = {}",
            a.user
        ));
        assert_eq!(differing("users", "{password_hash}"), (1, 0));
        assert_eq!(
            one::<String>(
                "SELECT new_row->'status'->>'s' FROM olaclick.audit_log
                 WHERE table_name = 'users' AND new_row->>'email' = 'x@y.test'"
            ),
            "A"
        );
    }

    #[pg_test]
    fn derived_rows_are_logged_with_audit_derived() {
        let a = tenant("a");
        Spi::run("SET LOCAL olaclick.audit_derived = on").unwrap();
        let order = a.order();
        assert_ok(&a.line_sql(order, 1));
        assert_ok(&set_status(order, "sent"));
        let of_order = |table: &str, op: &str, key: &str| {
            logged(&format!(
                "table_name = '{table}' AND op = '{op}' AND coalesce(new_row, old_row)->>'{key}' = '{order}'"
            ))
        };
        assert_eq!(
            of_order("orders", "UPDATE", "id"),
            2,
            "the total, then the status"
        );
        assert_eq!(of_order("order_status_history", "INSERT", "order_id"), 2);
        let history: String = one(&format!(
            "SELECT string_agg(a.new_row->>'status', ',' ORDER BY a.id) FROM olaclick.audit_log a
             WHERE a.table_name = 'order_status_history' AND a.new_row->>'order_id' = '{order}'
               AND a.new_row = (SELECT to_jsonb(h) FROM olaclick.order_status_history h WHERE h.id = (a.new_row->>'id')::bigint)"
        ));
        assert_eq!(
            history, "initiated,sent",
            "each logged history row is the row written"
        );
    }

    #[pg_test]
    fn an_update_that_changes_nothing_is_not_logged() {
        let a = tenant("a");
        let before = logged("true");
        assert_ok(&format!(
            "UPDATE olaclick.clients SET name = name WHERE id = {}",
            a.client
        ));
        assert_eq!(logged("true"), before);
        assert_ok(&format!(
            "UPDATE olaclick.clients SET name = 'new', phone = '1' WHERE id = {}",
            a.client
        ));
        let row: String = one(
            "SELECT changed_cols::text || ' ' || (old_row->>'name') || '>' || (new_row->>'name')
             FROM olaclick.audit_log WHERE table_name = 'clients' AND op = 'UPDATE'",
        );
        assert_eq!(row, "{name,phone} c>new");
    }

    #[pg_test]
    fn a_bulk_statement_logs_every_row() {
        let a = tenant("a");
        assert_ok(&format!(
            "INSERT INTO olaclick.clients (restaurant_id, name, email)
             SELECT {}, 'c' || g, 'c' || g || '@x' FROM generate_series(1, 500) g",
            a.restaurant
        ));
        assert_ok(&format!(
            "UPDATE olaclick.clients SET phone = '9' WHERE restaurant_id = {}",
            a.restaurant
        ));
        assert_eq!(logged("table_name = 'clients' AND op = 'INSERT'"), 501);
        assert_eq!(
            logged("table_name = 'clients' AND op = 'UPDATE' AND changed_cols = '{phone}'"),
            501
        );
    }

    #[pg_test]
    fn the_password_hash_never_reaches_the_log() {
        let a = tenant("a");
        assert_ok("SELECT olaclick.audit_include('users', '{password_hash}')");
        assert_ok(&format!(
            "UPDATE olaclick.users SET password_hash = 'secret2', full_name = 'x' WHERE id = {}",
            a.user
        ));
        assert_ok(&format!(
            "UPDATE olaclick.restaurants SET created_by_user_id = NULL WHERE id = {}",
            a.restaurant
        ));
        assert_ok(&format!("DELETE FROM olaclick.users WHERE id = {}", a.user));
        let leaked = logged("old_row ? 'password_hash' OR new_row ? 'password_hash' OR audit_log::text LIKE '%secret2%'");
        assert_eq!(leaked, 0);
        assert_eq!(logged("table_name = 'users'"), 3, "insert, update, delete");
    }

    #[pg_test]
    fn columns_and_tables_can_be_left_out_idempotently() {
        let a = tenant("a");
        for _ in 0..2 {
            assert_ok("SELECT olaclick.audit_exclude('clients', '{phone,email}')");
        }
        let excluded: String = one("SELECT excluded_columns::text FROM olaclick.audit_settings WHERE table_name = 'clients'");
        assert_eq!(excluded, "{email,phone}");
        assert_ok(&format!(
            "UPDATE olaclick.clients SET phone = '5', name = 'n' WHERE id = {}",
            a.client
        ));
        assert_eq!(logged("table_name = 'clients' AND op = 'UPDATE' AND NOT (new_row ? 'phone') AND NOT (new_row ? 'email')"), 1);
        assert_ok("SELECT olaclick.audit_include('clients', '{email}')");
        assert_ok("SELECT olaclick.audit_include('clients', '{email}')");
        assert_eq!(one::<String>("SELECT excluded_columns::text FROM olaclick.audit_settings WHERE table_name = 'clients'"), "{phone}");

        for _ in 0..2 {
            assert_ok("SELECT olaclick.audit_disable('branches')");
        }
        assert_ok(&format!(
            "UPDATE olaclick.branches SET name = 'quiet' WHERE id = {}",
            a.branch
        ));
        assert_eq!(logged("table_name = 'branches' AND op = 'UPDATE'"), 0);
        assert_ok("SELECT olaclick.audit_enable('branches')");
        assert_ok(&format!(
            "UPDATE olaclick.branches SET name = 'heard' WHERE id = {}",
            a.branch
        ));
        assert_eq!(logged("table_name = 'branches' AND op = 'UPDATE'"), 1);
        // Switching auditing off and on is itself logged: the settings row went
        // in disabled, then was updated to enabled.
        assert_eq!(
            logged("table_name = 'audit_settings' AND new_row->>'table_name' = 'branches'
                    AND ((op = 'INSERT' AND new_row->>'enabled' = 'false') OR (op = 'UPDATE' AND changed_cols = '{enabled}'))"),
            2
        );
        assert_fails("SELECT olaclick.audit_disable('pg_class')", "22023");
    }

    #[pg_test]
    fn truncate_is_logged_and_lines_cannot_be_truncated() {
        tenant("a");
        assert_ok("SELECT olaclick.audit_exclude('clients', '{phone}')");
        assert_ok("TRUNCATE olaclick.audit_settings");
        assert_eq!(
            logged("table_name = 'audit_settings' AND op = 'TRUNCATE' AND restaurant_id IS NULL"),
            1
        );
        assert_fails("TRUNCATE olaclick.order_details", "42501");
    }

    #[pg_test]
    fn purge_archives_and_removes_old_rows_and_nothing_else_deletes() {
        let a = tenant("a");
        a.order();
        let total = logged("true");
        Spi::run("CREATE TEMP TABLE audit_archive (LIKE olaclick.audit_log)").unwrap();
        let none: i64 =
            one("SELECT olaclick.audit_purge(now() - interval '1 day', 'audit_archive')");
        assert_eq!(none, 0);
        let moved: i64 =
            one("SELECT olaclick.audit_purge(now() + interval '1 day', 'audit_archive')");
        assert_eq!(moved, total);
        assert_eq!(logged("true"), 0);
        assert_eq!(one::<i64>("SELECT count(*) FROM audit_archive"), total);
        a.order();
        assert_fails("DELETE FROM olaclick.audit_log", "42501");
        assert_fails(
            "SELECT olaclick.audit_purge(now(), 'no_such_table')",
            "42P01",
        );
    }

    /// The README's two questions, each one simple query.
    #[pg_test]
    fn who_did_it_and_what_changed() {
        let a = tenant("a");
        let order = a.order();
        Spi::run(&format!("SET LOCAL olaclick.user_id = '{}'", a.user)).unwrap();
        assert_ok(&set_status(order, "sent"));
        let who: String = one(&format!(
            "SELECT u.username FROM olaclick.audit_log a JOIN olaclick.users u ON u.id = a.actor_user_id
             WHERE a.table_name = 'orders' AND a.new_row->>'id' = '{order}' AND a.op = 'UPDATE'"
        ));
        assert!(who.starts_with("u_a_"), "{who}");
        let what: String = one(&format!(
            "SELECT string_agg(c || ': ' || (a.old_row->>c) || ' -> ' || (a.new_row->>c), ', ')
             FROM olaclick.audit_log a, unnest(a.changed_cols) c
             WHERE a.table_name = 'orders' AND a.new_row->>'id' = '{order}'"
        ));
        assert_eq!(what, "status: initiated -> sent");
    }
}
