//! DROP EXTENSION olaclick is refused while orders exist, unless
//! olaclick.allow_drop is on. (Each test rolls back, so a drop here is undone.)
#[pgrx::pg_schema]
mod tests {
    use crate::tests::{assert_fails, assert_ok, one, tenant};
    use pgrx::prelude::*;

    #[pg_test]
    fn drop_is_refused_while_orders_exist() {
        tenant("a").order();
        let message = assert_fails("DROP EXTENSION olaclick", "2BP01");
        assert!(message.contains("holds orders"), "{message}");
        let still_there: bool =
            one("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'olaclick')");
        assert!(still_there);
    }

    #[pg_test]
    fn allow_drop_permits_it() {
        tenant("a").order();
        Spi::run("SET LOCAL olaclick.allow_drop = on").unwrap();
        assert_ok("DROP EXTENSION olaclick CASCADE");
        let gone: bool =
            one("SELECT NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'olaclick')");
        assert!(gone);
    }

    #[pg_test]
    fn drop_without_orders_is_allowed() {
        tenant("a");
        assert_ok("DROP EXTENSION olaclick CASCADE");
    }

    #[pg_test]
    fn drops_of_other_extensions_are_not_guarded() {
        tenant("a").order();
        assert_ok("DROP EXTENSION IF EXISTS olaclick_does_not_exist");
        // olaclick named second in the list is still caught.
        assert_fails(
            "DROP EXTENSION IF EXISTS olaclick_does_not_exist, olaclick",
            "2BP01",
        );
    }
}
