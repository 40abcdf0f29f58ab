//! What a later PostgreSQL lets a DBA add to olaclick's tables, and the
//! native path must treat as INSERT does (src/compat.rs has the version
//! differences of the code itself). Each runs native on and off.
#[pgrx::pg_schema]
mod tests {
    #[allow(unused_imports)]
    use crate::tests::{assert_fails, assert_ok, one, tenant};
    #[allow(unused_imports)]
    use pgrx::prelude::*;

    #[allow(dead_code)]
    fn native(on: bool) {
        Spi::run(&format!("SET LOCAL olaclick.native_writes = {on}")).unwrap();
    }

    /// A NOT ENFORCED CHECK (PostgreSQL 18) that every row violates is not
    /// checked by INSERT, so not by the native appender either; an enforced
    /// one is.
    #[cfg(feature = "pg18")]
    #[pg_test]
    fn a_check_not_enforced_is_not_checked() {
        assert_ok(
            "ALTER TABLE olaclick.order_status_history
               ADD CONSTRAINT never CHECK (order_id < 0) NOT ENFORCED",
        );
        for on in [true, false] {
            native(on);
            let t = tenant(&format!("unenforced{on}"));
            let o = t.order();
            assert_ok(&format!(
                "UPDATE olaclick.orders SET status = 'sent' WHERE id = {o}"
            ));
            let rows: i64 = one(&format!(
                "SELECT count(*) FROM olaclick.order_status_history WHERE order_id = {o}"
            ));
            assert_eq!(rows, 2, "native {on}: initiated and sent recorded");
        }
        // The same CHECK enforced (NOT VALID: old rows aren't checked, new
        // ones are) refuses the order's first history row.
        assert_ok(
            "ALTER TABLE olaclick.order_status_history
               ADD CONSTRAINT always CHECK (order_id < 0) NOT VALID",
        );
        let t = tenant("enforced");
        assert_fails(
            &format!(
                "INSERT INTO olaclick.orders (restaurant_id, client_id, branch_id) VALUES ({}, {}, {})",
                t.restaurant, t.client, t.branch
            ),
            "23514",
        );
    }

    /// A virtual generated column (PostgreSQL 18) is computed when read and
    /// expanded inside CHECK constraints: a CHECK on one that every row
    /// violates refuses the history row both ways (the native path takes the
    /// SQL path for such a table rather than check it with the column NULL).
    #[cfg(feature = "pg18")]
    #[pg_test]
    fn a_virtual_generated_column_is_checked_as_insert_checks_it() {
        assert_ok(
            "ALTER TABLE olaclick.order_status_history
               ADD COLUMN negated bigint GENERATED ALWAYS AS (-order_id) VIRTUAL,
               ADD CONSTRAINT positive CHECK (negated > 0)",
        );
        for on in [true, false] {
            native(on);
            let t = tenant(&format!("virtual{on}"));
            let message = assert_fails(
                &format!(
                    "INSERT INTO olaclick.orders (restaurant_id, client_id, branch_id) VALUES ({}, {}, {})",
                    t.restaurant, t.client, t.branch
                ),
                "23514",
            );
            assert!(message.contains("positive"), "native {on}: {message}");
        }
    }
}
