//! What PostgreSQL 18 lets a DBA add to olaclick's tables and the native
//! path must treat as INSERT does (src/compat.rs has the version differences
//! of the code itself). Each runs native on and off.
#[pgrx::pg_schema]
mod tests {
    use crate::tests::{assert_fails, assert_ok, history, native_writes, set_status, tenant};
    use pgrx::prelude::*;

    /// A NOT ENFORCED CHECK (PostgreSQL 18) that every row violates is not
    /// checked by INSERT, so not by the native appender either; an enforced
    /// one is.
    #[pg_test]
    fn a_check_not_enforced_is_not_checked() {
        assert_ok(
            "ALTER TABLE olaclick.order_status_history
               ADD CONSTRAINT never CHECK (order_id < 0) NOT ENFORCED",
        );
        for on in [true, false] {
            native_writes(on);
            let t = tenant(&format!("unenforced{on}"));
            let o = t.order();
            assert_ok(&set_status(o, "sent"));
            assert_eq!(history(o), "initiated,sent", "native {on}");
        }
        // The same CHECK enforced (NOT VALID: old rows aren't checked, new
        // ones are) refuses the order's first history row.
        assert_ok(
            "ALTER TABLE olaclick.order_status_history
               ADD CONSTRAINT always CHECK (order_id < 0) NOT VALID",
        );
        let t = tenant("enforced");
        assert_fails(&t.order_sql(), "23514");
    }

    /// A virtual generated column (PostgreSQL 18) is computed when read and
    /// expanded inside CHECK constraints: a CHECK on one that every row
    /// violates refuses the history row both ways (the native path takes the
    /// SQL path for such a table rather than check it with the column NULL).
    #[pg_test]
    fn a_virtual_generated_column_is_checked_as_insert_checks_it() {
        assert_ok(
            "ALTER TABLE olaclick.order_status_history
               ADD COLUMN negated bigint GENERATED ALWAYS AS (-order_id) VIRTUAL,
               ADD CONSTRAINT positive CHECK (negated > 0)",
        );
        for on in [true, false] {
            native_writes(on);
            let t = tenant(&format!("virtual{on}"));
            let message = assert_fails(&t.order_sql(), "23514");
            assert!(message.contains("positive"), "native {on}: {message}");
        }
    }
}
