//! Least privilege, tenant isolation and a hostile search_path. Each test
//! builds its data as the superuser, then acts through the extension's roles
//! with SET LOCAL ROLE (rolled back with the test).
#[pgrx::pg_schema]
mod tests {
    use crate::tests::{
        act_as, assert_fails, assert_ok, back_to_superuser, business_tables, one, rows, set_status,
        tenant, total, Tenant,
    };
    use pgrx::prelude::*;

    fn new_order(t: &Tenant) -> String {
        format!(
            "INSERT INTO olaclick.orders (restaurant_id, client_id, branch_id) VALUES ({}, {}, {})",
            t.restaurant, t.client, t.branch
        )
    }

    #[pg_test]
    fn the_app_sees_and_writes_only_its_tenant() {
        let tables = business_tables();
        let a = tenant("a");
        let b = tenant("b");
        let b_order = b.order();
        act_as("olaclick_app", Some(a.restaurant));
        assert_ok(&new_order(&a));
        let order: i64 = one("SELECT max(id) FROM olaclick.orders");
        assert_ok(&a.line_sql(order, 2));
        assert_ok(&set_status(order, "sent"));
        for table in &tables {
            let other: i64 = one(&format!(
                "SELECT count(*) FROM olaclick.{table} WHERE {} <> {}",
                if table.as_str() == "restaurants" {
                    "id"
                } else {
                    "restaurant_id"
                },
                a.restaurant
            ));
            assert_eq!(other, 0, "{table} shows another tenant's rows");
        }
        assert_fails(&new_order(&b), "42501");
        let moved: i64 = one(&format!("WITH u AS (UPDATE olaclick.orders SET status = 'sent' WHERE id = {b_order} RETURNING 1) SELECT count(*) FROM u"));
        assert_eq!(moved, 0);
        // Another tenant's product is invisible, so the line is refused as missing.
        assert_fails(&format!("INSERT INTO olaclick.order_details (order_id, product_id, quantity) VALUES ({}, {}, 1)", one::<i64>("SELECT max(id) FROM olaclick.orders"), b.product), "23503");
        back_to_superuser();
        assert_eq!(total(order), "25.00");
        let history: i64 = one(&format!("SELECT count(*) FROM olaclick.order_status_history WHERE order_id = {order} AND restaurant_id = {}", a.restaurant));
        assert_eq!(history, 2, "history written for the app, in its tenant");
        let audited: i64 = one(&format!("SELECT count(*) FROM olaclick.audit_log WHERE db_role = 'olaclick_app' AND restaurant_id = {}", a.restaurant));
        // The order's insert, its line and its status change.
        assert_eq!(audited, 3, "audit rows name the app role");
    }

    #[pg_test]
    fn without_a_tenant_the_app_and_the_reader_see_nothing_and_write_nothing() {
        let tables = business_tables();
        let a = tenant("a");
        a.order();
        for role in ["olaclick_app", "olaclick_readonly"] {
            act_as(role, None);
            for table in &tables {
                assert_eq!(
                    one::<i64>(&format!("SELECT count(*) FROM olaclick.{table}")),
                    0,
                    "{role} {table}"
                );
            }
            assert_fails(&new_order(&a), "42501");
            back_to_superuser();
        }
    }

    #[pg_test]
    fn each_role_is_refused_what_it_is_not_for() {
        let a = tenant("a");
        let order = a.order();
        act_as("olaclick_app", Some(a.restaurant));
        for forbidden in [
            "SELECT count(*) FROM olaclick.audit_log".to_string(),
            format!("INSERT INTO olaclick.order_status_history (order_id, restaurant_id, status) VALUES ({order}, {}, 'sent')", a.restaurant),
            format!("DELETE FROM olaclick.order_status_history WHERE order_id = {order}"),
            "UPDATE olaclick.audit_log SET op = 'x'".into(),
            "CREATE TABLE olaclick.mine (id int)".into(),
            "ALTER TABLE olaclick.orders DISABLE TRIGGER ALL".into(),
            "TRUNCATE olaclick.clients CASCADE".into(),
            "SELECT olaclick.audit_disable('orders')".into(),
            "SELECT olaclick.audit_purge(now())".into(),
            "SELECT * FROM olaclick.load_demo(orders => 1)".into(),
            "INSERT INTO olaclick.restaurants (name) VALUES ('new')".into(),
        ] {
            assert_fails(&forbidden, "42501");
        }
        back_to_superuser();

        act_as("olaclick_readonly", Some(a.restaurant));
        assert_eq!(rows("orders"), 1);
        assert_fails(&new_order(&a), "42501");
        assert_fails("SELECT count(*) FROM olaclick.audit_log", "42501");
        back_to_superuser();

        tenant("b").order();
        act_as("olaclick_auditor", None);
        let tenants: i64 = one("SELECT count(DISTINCT restaurant_id) FROM olaclick.audit_log");
        assert_eq!(tenants, 2, "the auditor reads every tenant's log");
        assert!(rows("order_status_history") >= 2);
        assert_fails("SELECT count(*) FROM olaclick.orders", "42501");
        assert_fails("DELETE FROM olaclick.audit_log", "42501");
        back_to_superuser();
    }

    /// Look-alike objects ahead of pg_catalog, and in the temporary schema,
    /// divert nothing: every statement olaclick runs has its search_path pinned
    /// and every table name qualified.
    #[pg_test]
    fn a_hostile_search_path_diverts_no_guarantee() {
        let a = tenant("a");
        Spi::run(
            "CREATE FUNCTION public.hostile_add(numeric, numeric) RETURNS numeric LANGUAGE sql AS 'SELECT 0::numeric';
             CREATE OPERATOR public.+ (LEFTARG = numeric, RIGHTARG = numeric, FUNCTION = public.hostile_add);
             CREATE FUNCTION public.statement_timestamp() RETURNS timestamptz LANGUAGE sql AS $$SELECT '2000-01-01'::timestamptz$$;
             CREATE TABLE public.order_status_history (LIKE olaclick.order_status_history);
             CREATE TABLE public.audit_log (LIKE olaclick.audit_log);
             CREATE TEMP TABLE orders (LIKE olaclick.orders);
             CREATE TEMP TABLE order_status_history (LIKE olaclick.order_status_history);
             GRANT USAGE ON SCHEMA public TO olaclick_app;
             GRANT ALL ON public.order_status_history, public.audit_log TO olaclick_app;",
        )
        .unwrap();
        // The trap works on ordinary SQL under this search_path...
        Spi::run("SET LOCAL search_path = public, pg_catalog").unwrap();
        assert_eq!(one::<String>("SELECT (1::numeric + 1::numeric)::text"), "0");
        // ...but not on olaclick's.
        act_as("olaclick_app", Some(a.restaurant));
        Spi::run("SET LOCAL search_path = public, pg_catalog").unwrap();
        assert_ok(&new_order(&a));
        let order: i64 = one("SELECT max(id) FROM olaclick.orders");
        assert_ok(&a.line_sql(order, 2));
        assert_ok(&format!(
            "UPDATE olaclick.order_details SET quantity = 3 WHERE order_id = {order}"
        ));
        assert_ok(&set_status(order, "sent"));
        back_to_superuser();
        Spi::run("SET LOCAL search_path = pg_catalog").unwrap();
        assert_eq!(total(order), "37.50");
        let history: String = one(&format!(
            "SELECT string_agg(status::text || ':' || (changed_at > pg_catalog.now() - interval '1 hour')::text, ',' ORDER BY id)
             FROM olaclick.order_status_history WHERE order_id = {order}"
        ));
        assert_eq!(history, "initiated:true,sent:true");
        for look_alike in [
            "public.order_status_history",
            "public.audit_log",
            "pg_temp.orders",
            "pg_temp.order_status_history",
        ] {
            assert_eq!(
                one::<i64>(&format!("SELECT count(*) FROM {look_alike}")),
                0,
                "{look_alike} was written"
            );
        }
        let audited: i64 = one(&format!(
            "SELECT count(*) FROM olaclick.audit_log WHERE table_name = 'order_details' AND (new_row->>'order_id')::bigint = {order}"
        ));
        assert_eq!(audited, 2);
    }

    /// Part 5, staging (sql/staging.sql): the anonymizer never runs on a
    /// database not marked staging or development in the catalog, whatever
    /// the session sets, nor for the application; a session of the
    /// application can't claim an environment either.
    #[pg_test]
    fn the_anonymizer_refuses_production_and_the_application() {
        let call = "SELECT * FROM olaclick.anonymize_for_staging(current_database())";
        let refused = assert_fails(call, "55000");
        assert!(
            refused.contains("runs only on a database marked staging or development"),
            "{refused}"
        );
        Spi::run("SET LOCAL olaclick.environment = 'staging'").unwrap();
        assert_fails(call, "55000");
        assert_fails(
            "SELECT * FROM olaclick.anonymize_for_staging('another_database')",
            "22023",
        );
        let a = tenant("a");
        act_as("olaclick_app", Some(a.restaurant));
        assert_fails(call, "42501");
        assert_fails("SET LOCAL olaclick.environment = 'staging'", "42501");
        assert_fails("SET LOCAL olaclick.password_lifetime = '1000d'", "42501");
        back_to_superuser();
    }

    /// The fakes: a function of the id alone, unique where the columns are,
    /// and a logged row keeps its keys, loses its values, keeps its nulls.
    #[pg_test]
    fn staging_fakes_are_deterministic_unique_and_replace_logged_values() {
        let distinct: i64 = one(
            "SELECT count(DISTINCT olaclick.staging_fake('users', 'email', g)) + count(DISTINCT olaclick.staging_fake('users', 'username', g))
             FROM generate_series(1, 5000) g",
        );
        assert_eq!(distinct, 10000);
        assert_eq!(
            one::<String>("SELECT olaclick.staging_fake('clients', 'email', 42)"),
            "client42@staging.invalid"
        );
        let row: String = one(r#"SELECT olaclick.staging_fake_row('clients',
                 '{"id": 42, "restaurant_id": 7, "name": "Ana Real", "email": "ana@real.example", "phone": null}')::text"#);
        assert_eq!(
            row,
            r#"{"id": 42, "name": "Rosa Mendoza #42", "email": "client42@staging.invalid", "phone": null, "restaurant_id": 7}"#
        );
        assert_eq!(
            one::<String>(
                r#"SELECT olaclick.staging_fake_row('orders', '{"id": 1, "total": 5}')::text"#
            ),
            r#"{"id": 1, "total": 5}"#
        );
    }
}
