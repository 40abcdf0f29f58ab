//! The single-row native path (src/native/) and the set-based path write
//! the same history and audit rows, and the native path fails the way an
//! INSERT would: with PostgreSQL's SQLSTATE, leaving nothing half-written.
#[pgrx::pg_schema]
mod tests {
    use crate::tests::{
        assert_fails, assert_ok, history, one, rows, set_status, status, tenant, total, Tenant,
    };
    use pgrx::prelude::*;

    /// A second product, client, and two orders of `t`.
    struct Shop {
        t: Tenant,
        product2: i32,
        client2: i32,
    }

    fn shop(name: &str) -> Shop {
        let t = tenant(name);
        let product2 = one(&format!(
            "INSERT INTO olaclick.products (restaurant_id, name, price) VALUES ({}, 'p2', 3.25) RETURNING id",
            t.restaurant
        ));
        let client2 = one(&format!(
            "INSERT INTO olaclick.clients (restaurant_id, name, email, phone) VALUES ({}, 'c2', 'c2@x.test', '1') RETURNING id",
            t.restaurant
        ));
        Shop {
            t,
            product2,
            client2,
        }
    }

    fn run(statements: &[String]) {
        for s in statements {
            assert_ok(s);
        }
    }

    /// The same changes, as one statement per row (`single`) or one
    /// statement for many rows: orders, lines (an UPDATE that changes
    /// nothing among them), deletes, status changes, an excluded column, a
    /// disabled table. Returns the first audit id it caused.
    fn changes(s: &Shop, single: bool) -> i64 {
        let (r, c, b) = (s.t.restaurant, s.t.client, s.t.branch);
        let (p1, p2, c2) = (s.t.product, s.product2, s.client2);
        Spi::run(&format!("SET LOCAL olaclick.user_id = '{}'", s.t.user)).unwrap();
        let first: i64 = one("SELECT coalesce(max(id), 0) + 1 FROM olaclick.audit_log");
        let o1: i64;
        let o2: i64;
        if single {
            o1 = s.t.order();
            o2 = s.t.order();
        } else {
            o1 = one(&format!(
                "WITH o AS (INSERT INTO olaclick.orders (restaurant_id, client_id, branch_id) VALUES ({r}, {c}, {b}), ({r}, {c}, {b}) RETURNING id)
                 SELECT min(id) FROM o"
            ));
            o2 = o1 + 1;
        }
        let line = |o: i64, p: i32, q: i32| format!("({o}, {p}, {q})");
        let lines = [
            line(o1, p1, 1),
            line(o1, p2, 2),
            line(o2, p1, 1),
            line(o2, p2, 4),
        ];
        let insert = |values: &[String]| {
            format!(
                "INSERT INTO olaclick.order_details (order_id, product_id, quantity) VALUES {}",
                values.join(", ")
            )
        };
        let update_lines = |which: &str| {
            format!(
                "UPDATE olaclick.order_details SET quantity = CASE product_id WHEN {p2} THEN 3 ELSE quantity END
                 WHERE order_id = {o1} AND {which}"
            )
        };
        let send =
            |which: &str| format!("UPDATE olaclick.orders SET status = 'sent' WHERE {which}");
        let phones = |which: &str| {
            format!("UPDATE olaclick.clients SET phone = '7' WHERE restaurant_id = {r} AND {which}")
        };
        if single {
            run(&lines
                .iter()
                .map(|l| insert(std::slice::from_ref(l)))
                .collect::<Vec<_>>());
            run(&[
                update_lines(&format!("product_id = {p1}")), // changes nothing
                update_lines(&format!("product_id = {p2}")),
                format!("DELETE FROM olaclick.order_details WHERE order_id = {o2} AND product_id = {p1}"),
                format!("DELETE FROM olaclick.order_details WHERE order_id = {o2} AND product_id = {p2}"),
                send(&format!("id = {o1}")),
                send(&format!("id = {o2}")),
                phones(&format!("id = {c}")),
                phones(&format!("id = {c2}")),
                format!("UPDATE olaclick.branches SET name = 'renamed' WHERE id = {b}"),
            ]);
        } else {
            run(&[
                insert(&lines),
                update_lines("true"),
                format!("DELETE FROM olaclick.order_details WHERE order_id = {o2}"),
                send(&format!("id IN ({o1}, {o2})")),
                phones("true"),
                format!("UPDATE olaclick.branches SET name = 'renamed' WHERE restaurant_id = {r}"),
            ]);
        }
        first
    }

    /// The audit and history rows since `first` of restaurant `r`, with the
    /// ids and times that differ between two tenants taken out. Total
    /// maintenance follows statements, not rows (a multi-row statement updates
    /// each order's total once), so its audit rows are left out here.
    fn written(r: i32, first: i64) -> String {
        one(&format!(
            "WITH n AS (SELECT '{{id,restaurant_id,order_id,product_id,client_id,branch_id,created_by_user_id,changed_at,email}}'::text[] AS k)
             SELECT string_agg(x, E'\\n' ORDER BY x) FROM (
               SELECT format('audit %s %s old=%s new=%s changed=%s actor=%s role=%s tenant=%s',
                             table_name, op, old_row - n.k, new_row - n.k, changed_cols,
                             actor_user_id IS NOT NULL, db_role, restaurant_id = {r}) AS x
               FROM olaclick.audit_log, n WHERE id >= {first} AND restaurant_id = {r}
                 AND changed_cols IS DISTINCT FROM '{{total}}'
               UNION ALL
               SELECT format('history %s actor=%s', h.status, h.created_by_user_id IS NOT NULL)
               FROM olaclick.order_status_history h WHERE h.restaurant_id = {r}
               UNION ALL
               SELECT format('order %s total=%s', o.status, o.total) FROM olaclick.orders o WHERE o.restaurant_id = {r}
             ) s"
        ))
    }

    fn both_paths_write_the_same(derived: bool) {
        if derived {
            Spi::run("SET LOCAL olaclick.audit_derived = on").unwrap();
        }
        Spi::run(
            "SELECT olaclick.audit_exclude('clients', '{phone}');
             SELECT olaclick.audit_disable('branches');",
        )
        .unwrap();
        let a = shop("native");
        let b = shop("set");
        let from_a = changes(&a, true);
        let from_b = changes(&b, false);
        let native = written(a.t.restaurant, from_a);
        let set = written(b.t.restaurant, from_b);
        assert_eq!(native, set);
        // What both wrote, in words: the checks above compare like with like.
        assert!(native.contains("audit order_details UPDATE"), "{native}");
        assert!(native.contains(r#"changed={phone}"#), "{native}");
        assert!(
            !native.contains(r#""phone""#),
            "excluded column logged: {native}"
        );
        assert!(
            !native.contains("audit branches"),
            "disabled table logged: {native}"
        );
        assert_eq!(
            native.matches("audit order_details UPDATE").count(),
            1,
            "{native}"
        );
        assert_eq!(
            native.contains("audit order_status_history"),
            derived,
            "{native}"
        );
        assert_eq!(
            native.lines().filter(|l| l.starts_with("history ")).count(),
            4,
            "{native}"
        );
        assert!(native.contains("order sent total=22.25"), "{native}");
        assert!(native.contains("order sent total=0.00"), "{native}");
        let total_updates = |r: i32| -> i64 {
            one(&format!(
                "SELECT count(*) FROM olaclick.audit_log WHERE restaurant_id = {r} AND changed_cols = '{{total}}'"
            ))
        };
        if derived {
            assert!(total_updates(a.t.restaurant) > total_updates(b.t.restaurant));
            assert!(total_updates(b.t.restaurant) >= 2);
        } else {
            assert_eq!(
                total_updates(a.t.restaurant) + total_updates(b.t.restaurant),
                0
            );
        }
    }

    #[pg_test]
    fn native_and_set_based_paths_write_identical_rows() {
        both_paths_write_the_same(false);
    }

    #[pg_test]
    fn native_and_set_based_paths_write_identical_rows_with_derived_rows() {
        both_paths_write_the_same(true);
    }

    /// A statement of more rows than the native path takes
    /// (audit::NATIVE_ROWS) is logged by the set-based statements; the same
    /// changes one row per statement natively: both write the same audit
    /// rows, UPDATEs that change nothing and excluded columns included.
    #[pg_test]
    fn bulk_statements_and_single_rows_log_the_same() {
        let rows = crate::audit::NATIVE_ROWS + 1;
        Spi::run("SELECT olaclick.audit_exclude('products', '{created_at}')").unwrap();
        let log = |bulk: bool| -> (i32, String) {
            let t = tenant(if bulk { "bulk" } else { "single" });
            let r = t.restaurant;
            let first: i64 = one("SELECT coalesce(max(id), 0) + 1 FROM olaclick.audit_log");
            let statements: Vec<String> = if bulk {
                vec![
                    format!("INSERT INTO olaclick.products (restaurant_id, name, price)
                             SELECT {r}, 'p' || g, g FROM generate_series(1, {rows}) g"),
                    format!("UPDATE olaclick.products SET price = CASE WHEN name IN ('p1', 'p2') THEN price ELSE price + 0.5 END
                             WHERE restaurant_id = {r} AND name <> 'p'"),
                    format!("DELETE FROM olaclick.products WHERE restaurant_id = {r} AND name <> 'p'"),
                ]
            } else {
                let each = |sql: &dyn Fn(i64) -> String| (1..=rows).map(sql).collect::<Vec<_>>();
                [
                    each(&|g| format!("INSERT INTO olaclick.products (restaurant_id, name, price) VALUES ({r}, 'p{g}', {g})")),
                    each(&|g| format!("UPDATE olaclick.products SET price = CASE WHEN name IN ('p1', 'p2') THEN price ELSE price + 0.5 END
                                       WHERE restaurant_id = {r} AND name = 'p{g}'")),
                    each(&|g| format!("DELETE FROM olaclick.products WHERE restaurant_id = {r} AND name = 'p{g}'")),
                ]
                .concat()
            };
            run(&statements);
            let logged = one(&format!(
                "SELECT string_agg(format('%s %s %s %s %s', op, old_row - '{{id,restaurant_id}}'::text[],
                                          new_row - '{{id,restaurant_id}}'::text[], changed_cols, db_role),
                                   E'\n' ORDER BY coalesce(new_row, old_row)->>'name', op)
                 FROM olaclick.audit_log WHERE id >= {first} AND restaurant_id = {r} AND table_name = 'products'"
            ));
            (r, logged)
        };
        let (_, set) = log(true);
        let (_, native) = log(false);
        assert_eq!(native, set);
        let n = rows as usize;
        assert_eq!(
            set.lines().filter(|l| l.starts_with("INSERT")).count(),
            n,
            "{set}"
        );
        assert_eq!(
            set.lines().filter(|l| l.starts_with("UPDATE")).count(),
            n - 2,
            "{set}"
        );
        assert_eq!(
            set.lines().filter(|l| l.starts_with("DELETE")).count(),
            n,
            "{set}"
        );
        assert!(!set.contains("created_at"), "excluded column logged: {set}");
    }

    /// An actor of another restaurant fails the history row's foreign key
    /// (23503), and the status change is undone with everything it wrote.
    #[pg_test]
    fn a_history_actor_of_another_tenant_fails_the_foreign_key() {
        let a = tenant("a");
        let b = tenant("b");
        let order = a.order();
        let audited = rows("audit_log");
        Spi::run(&format!("SET LOCAL olaclick.user_id = '{}'", b.user)).unwrap();
        let message = assert_fails(&set_status(order, "sent"), "23503");
        assert!(message.contains("order_status_history"), "{message}");
        assert_eq!(status(order), "initiated");
        assert_eq!(rows("audit_log"), audited);
    }

    /// Columns olaclick doesn't know take their defaults, as INSERT gives
    /// them; without one, NOT NULL fails with 23502 and nothing is written.
    #[pg_test]
    fn columns_added_by_a_dba_take_defaults_and_keep_not_null() {
        let a = tenant("a");
        Spi::run(
            "ALTER TABLE olaclick.audit_log ADD COLUMN note text NOT NULL DEFAULT 'by default';
             ALTER TABLE olaclick.order_status_history ADD COLUMN note text NOT NULL DEFAULT 'by default'",
        )
        .unwrap();
        let order = a.order();
        assert_eq!(
            one::<String>(&format!(
                "SELECT string_agg(note, ',') FROM olaclick.audit_log WHERE table_name = 'orders' AND new_row->>'id' = '{order}'"
            )),
            "by default"
        );
        assert_eq!(
            one::<String>(&format!(
                "SELECT string_agg(note, ',') FROM olaclick.order_status_history WHERE order_id = {order}"
            )),
            "by default"
        );
        Spi::run("ALTER TABLE olaclick.order_status_history ALTER COLUMN note DROP DEFAULT")
            .unwrap();
        assert_fails(&set_status(order, "sent"), "23502");
        Spi::run("ALTER TABLE olaclick.audit_log ALTER COLUMN note DROP DEFAULT").unwrap();
        let products = rows("products");
        assert_fails(
            &format!(
                "INSERT INTO olaclick.products (restaurant_id, name, price) VALUES ({}, 'x', 1)",
                a.restaurant
            ),
            "23502",
        );
        assert_eq!(rows("products"), products);
    }

    /// A history row's key to its order is checked without SQL (the order is
    /// the statement's own), but still checked: an order the same statement
    /// removed before its history was written (here a table owner's AFTER ROW
    /// trigger) fails with PostgreSQL's 23503 and message, on insert and on a
    /// status change, and nothing is left written.
    #[pg_test]
    fn a_history_row_whose_order_the_statement_removed_fails_the_foreign_key() {
        let a = tenant("a");
        let order = a.order();
        let orders = rows("orders");
        let history = rows("order_status_history");
        Spi::run(
            "CREATE FUNCTION pg_temp.gone() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN DELETE FROM olaclick.orders WHERE id = NEW.id; RETURN NULL; END $$;
             CREATE TRIGGER gone AFTER INSERT OR UPDATE ON olaclick.orders
               FOR EACH ROW EXECUTE FUNCTION pg_temp.gone()",
        )
        .unwrap();
        let expected = "insert or update on table \"order_status_history\" violates foreign key constraint \"order_status_history_restaurant_id_order_id_fkey\"";
        let message = assert_fails(&set_status(order, "sent"), "23503");
        assert!(message.contains(expected), "{message}");
        let message = assert_fails(
            &format!(
                "INSERT INTO olaclick.orders (restaurant_id, client_id, branch_id) VALUES ({}, {}, {})",
                a.restaurant, a.client, a.branch
            ),
            "23503",
        );
        assert!(message.contains(expected), "{message}");
        Spi::run("DROP TRIGGER gone ON olaclick.orders").unwrap();
        assert_eq!(rows("orders"), orders);
        assert_eq!(rows("order_status_history"), history);
        assert_ok(&set_status(order, "sent"));
        assert_eq!(rows("order_status_history"), history + 1);
    }

    /// A target's constraints are read and simplified once per backend and
    /// again when a DBA changes the table: a CHECK added after olaclick wrote
    /// history, audit rows and totals natively is enforced on its next
    /// native write of each (23514, nothing written), and one replaced by
    /// another (as many constraints as before) no longer is.
    #[pg_test]
    fn checks_added_after_native_writes_are_enforced_and_dropped_ones_not() {
        let a = tenant("a");
        let order = a.order();
        let line = |product: i32| {
            format!(
                "INSERT INTO olaclick.order_details (order_id, product_id, quantity) VALUES ({order}, {product}, 1)"
            )
        };
        assert_ok(&line(a.product));
        let second = a.new_product("12.50");
        let send = set_status(order, "sent");
        let counts = || {
            one::<String>(&format!(
                "SELECT (SELECT count(*) FROM olaclick.order_status_history WHERE order_id = {order})
                        || '/' || (SELECT count(*) FROM olaclick.audit_log)
                        || '/' || (SELECT total FROM olaclick.orders WHERE id = {order})"
            ))
        };
        let before = counts();

        // NOT VALID: not checked on the rows already there, enforced on new ones.
        Spi::run("ALTER TABLE olaclick.orders ADD CONSTRAINT t_small CHECK (total < 20) NOT VALID")
            .unwrap();
        let message = assert_fails(&line(second), "23514");
        assert!(message.contains("t_small"), "{message}");
        Spi::run("ALTER TABLE olaclick.orders DROP CONSTRAINT t_small").unwrap();

        Spi::run(
            "ALTER TABLE olaclick.audit_log ADD CONSTRAINT t_no_update CHECK (op <> 'UPDATE')",
        )
        .unwrap();
        let message = assert_fails(&send, "23514");
        assert!(message.contains("t_no_update"), "{message}");
        Spi::run("ALTER TABLE olaclick.audit_log DROP CONSTRAINT t_no_update").unwrap();

        Spi::run("ALTER TABLE olaclick.order_status_history ADD CONSTRAINT t_no_sent CHECK (status <> 'sent')").unwrap();
        let message = assert_fails(&send, "23514");
        assert!(message.contains("t_no_sent"), "{message}");
        assert_eq!(counts(), before, "a refused write left something behind");
        assert_ok(&line(second));
        // As many constraints as before, another one: planned again all the same.
        Spi::run(
            "ALTER TABLE olaclick.order_status_history DROP CONSTRAINT t_no_sent,
               ADD CONSTRAINT t_no_delivered CHECK (status <> 'delivered')",
        )
        .unwrap();
        assert_ok(&send);
        let message = assert_fails(&set_status(order, "delivered"), "23514");
        assert!(message.contains("t_no_delivered"), "{message}");
        assert_eq!(history(order), "initiated,sent");
        assert_eq!(total(order), "25.00");
    }

    /// An audit id already taken (a sequence set back by hand) fails with
    /// 23505, not an internal error, and the change is undone.
    #[pg_test]
    fn a_taken_audit_id_is_a_unique_violation() {
        let a = tenant("a");
        // Tests run in parallel and draw audit ids too: take the next 1,000
        // (another test's audit row in that window waits for this rollback).
        let next: i64 =
            one("SELECT nextval(pg_get_serial_sequence('olaclick.audit_log', 'id')) + 1");
        Spi::run(&format!(
            "SET LOCAL session_replication_role = replica;
             INSERT INTO olaclick.audit_log (id, table_name, op)
             SELECT g, 'x', 'INSERT' FROM generate_series({next}, {next} + 999) g;
             SET LOCAL session_replication_role = origin"
        ))
        .unwrap();
        let products = rows("products");
        let message = assert_fails(
            &format!(
                "INSERT INTO olaclick.products (restaurant_id, name, price) VALUES ({}, 'x', 1)",
                a.restaurant
            ),
            "23505",
        );
        assert!(message.contains("audit_log"), "{message}");
        assert_eq!(rows("products"), products);
    }

    /// A line that gives its price takes its order's tenant from what this
    /// backend remembers of the orders it inserted; an order that was rolled
    /// back is still refused by the line's key (23503), as without memory.
    #[pg_test]
    fn remembered_tenants_fill_lines_and_never_let_a_missing_order_through() {
        let a = tenant("a");
        let order = a.order();
        let tenant: i32 = one(&format!(
            "INSERT INTO olaclick.order_details (order_id, product_id, quantity, price)
             VALUES ({order}, {}, 1, 2.00) RETURNING restaurant_id",
            a.product
        ));
        assert_eq!(tenant, a.restaurant);
        assert_fails(
            &format!(
                "WITH o AS (INSERT INTO olaclick.orders (restaurant_id, client_id, branch_id)
                            VALUES ({}, {}, {}) RETURNING id)
                 SELECT 1 / (o.id - o.id) FROM o",
                a.restaurant, a.client, a.branch
            ),
            "22012",
        );
        let gone: i64 = one("SELECT currval(pg_get_serial_sequence('olaclick.orders', 'id'))");
        assert!(gone > order);
        assert_fails(
            &format!(
                "INSERT INTO olaclick.order_details (order_id, product_id, quantity, price) VALUES ({gone}, {}, 1, 2.00)",
                a.product
            ),
            "23503",
        );
    }

    /// The native total update finds orders by their primary key, whatever
    /// replica identity a DBA gives the table.
    #[pg_test]
    fn totals_move_natively_with_any_replica_identity() {
        let a = tenant("a");
        Spi::run("ALTER TABLE olaclick.orders REPLICA IDENTITY FULL").unwrap();
        let order = a.order();
        assert_ok(&a.line_sql(order, 3));
        assert_eq!(total(order), "37.50");
    }

    /// A statement over the lines of one order moves its total natively,
    /// whatever the number of lines; one over two orders goes through SQL.
    /// Both leave every total equal to its lines, and both refuse lines of a
    /// sent order, writing nothing.
    #[pg_test]
    fn one_order_in_many_lines_and_many_orders_keep_totals_right() {
        let a = tenant("a");
        let (o1, o2, o3) = (a.order(), a.order(), a.order());
        let p = a.product;
        let (p2, p3) = (a.new_product("0.10"), a.new_product("2.00"));
        let lines = "olaclick.order_details";
        let right = || {
            one::<i64>(
                "SELECT count(*) FROM olaclick.orders o
                 WHERE o.total <> (SELECT coalesce(sum(quantity * price), 0) FROM olaclick.order_details d WHERE d.order_id = o.id)",
            ) == 0
        };
        // One order, three lines (one without a price): native.
        assert_ok(&format!(
            "INSERT INTO {lines} (order_id, product_id, quantity, price) VALUES ({o1}, {p}, 1, 10.00), ({o1}, {p2}, 3, 0.10), ({o1}, {p3}, 2, NULL)"
        ));
        assert_eq!(total(o1), "14.30");
        // Two orders in one statement: SQL.
        assert_ok(&format!(
            "INSERT INTO {lines} (order_id, product_id, quantity) VALUES ({o2}, {p}, 1), ({o3}, {p2}, 5)"
        ));
        assert_eq!((total(o2), total(o3)), ("12.50".into(), "0.50".into()));
        // Every line of one order, updated and then partly deleted: native.
        assert_ok(&format!(
            "UPDATE {lines} SET quantity = quantity + 1 WHERE order_id = {o1}"
        ));
        assert_eq!(total(o1), "26.40");
        assert_ok(&format!(
            "UPDATE {lines} SET quantity = quantity WHERE order_id = {o1}"
        ));
        assert_eq!(total(o1), "26.40");
        assert_ok(&format!(
            "DELETE FROM {lines} WHERE order_id = {o1} AND product_id IN ({p}, {p3})"
        ));
        assert_eq!(total(o1), "0.40");
        assert!(right());

        // A sent order's lines are frozen on both paths; nothing is written.
        assert_ok(&format!(
            "UPDATE olaclick.orders SET status = 'sent' WHERE id = {o3}"
        ));
        let count = || -> i64 { one(&format!("SELECT count(*) FROM {lines}")) };
        let before = count();
        for sql in [
            format!("INSERT INTO {lines} (order_id, product_id, quantity) VALUES ({o3}, {p}, 1), ({o3}, {p3}, 1)"),
            format!("INSERT INTO {lines} (order_id, product_id, quantity) VALUES ({o2}, {p3}, 1), ({o3}, {p}, 1)"),
            format!("DELETE FROM {lines} WHERE order_id = {o3}"),
        ] {
            let message = assert_fails(&sql, "23514");
            assert!(
                message.contains(&format!("the lines of order {o3} are frozen")),
                "{message}"
            );
        }
        assert_eq!(count(), before);
        assert_eq!((total(o2), total(o3)), ("12.50".into(), "0.50".into()));
        assert!(right());
    }

    /// Lines added one statement each skip re-checking the order's keys on
    /// a version olaclick's previous total update wrote (its checks ran
    /// then), and only there: a key the application changes in the
    /// statement adding a line, or a deferred key, is still caught.
    #[pg_test]
    fn an_order_with_a_bad_key_is_caught_however_its_lines_arrive() {
        let a = tenant("a");
        let products = [a.product, a.new_product("1"), a.new_product("2")];
        let line = |order: i64, p: i32| {
            format!("INSERT INTO olaclick.order_details (order_id, product_id, quantity) VALUES ({order}, {p}, 1)")
        };
        let order = a.order();
        assert_ok(&line(order, products[0]));
        assert_ok(&line(order, products[1]));
        let message = assert_fails(
            &format!(
                "WITH moved AS (UPDATE olaclick.orders SET branch_id = 999999 WHERE id = {order} RETURNING id)
                 INSERT INTO olaclick.order_details (order_id, product_id, quantity) SELECT id, {}, 1 FROM moved",
                products[2]
            ),
            "23503",
        );
        assert!(
            message.contains("orders_restaurant_id_branch_id_fkey"),
            "{message}"
        );

        Spi::run(
            "ALTER TABLE olaclick.orders ALTER CONSTRAINT orders_restaurant_id_branch_id_fkey
             DEFERRABLE INITIALLY DEFERRED",
        )
        .unwrap();
        let bad: i64 = one(&format!(
            "INSERT INTO olaclick.orders (restaurant_id, client_id, branch_id) VALUES ({}, {}, 999999) RETURNING id",
            a.restaurant, a.client
        ));
        for p in products {
            assert_ok(&line(bad, p));
        }
        let message = assert_fails("SET CONSTRAINTS ALL IMMEDIATE", "23503");
        assert!(
            message.contains("orders_restaurant_id_branch_id_fkey"),
            "{message}"
        );
    }

    /// Replica mode skips an order's key checks; its history row, made to
    /// fire there by a DBA, doesn't vouch for them: its first line's total
    /// update checks them as PostgreSQL would (23503).
    #[pg_test]
    fn an_order_written_in_replica_mode_is_checked_by_its_first_line() {
        let a = tenant("a");
        let line = |order: i64, p: i32| {
            format!("INSERT INTO olaclick.order_details (order_id, product_id, quantity) VALUES ({order}, {p}, 1)")
        };
        Spi::run(
            "ALTER TABLE olaclick.orders ENABLE ALWAYS TRIGGER orders_history_insert;
             SET LOCAL session_replication_role = replica",
        )
        .unwrap();
        let unchecked: i64 = one(&format!(
            "INSERT INTO olaclick.orders (restaurant_id, client_id, branch_id) VALUES ({}, {}, 999999) RETURNING id",
            a.restaurant, a.client
        ));
        Spi::run("SET LOCAL session_replication_role = origin").unwrap();
        assert_eq!(
            one::<i64>(&format!(
                "SELECT count(*) FROM olaclick.order_status_history WHERE order_id = {unchecked}"
            )),
            1
        );
        let message = assert_fails(&line(unchecked, a.product), "23503");
        assert!(
            message.contains("orders_restaurant_id_branch_id_fkey"),
            "{message}"
        );
    }
}
