//! `olaclick.tenant_scope` (src/tenant_scope.rs) inside one transaction. What
//! happens across transactions, and through PgBouncer, is tests/pooler/run.

#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    #[pg_test]
    fn tenant_scope_is_a_superuser_enum_defaulting_to_session() -> Result<(), spi::Error> {
        assert_eq!(
            Spi::get_one::<String>(
                "SELECT setting || ' ' || context || ' ' || array_to_string(enumvals, ',')
                 FROM pg_catalog.pg_settings WHERE name = 'olaclick.tenant_scope'"
            )?,
            Some("session superuser session,transaction".into())
        );
        Ok(())
    }

    #[pg_test]
    fn tenant_scope_transaction_counts_values_set_in_this_transaction() -> Result<(), spi::Error> {
        Spi::run("SET LOCAL olaclick.tenant_scope = transaction")?;
        Spi::run("SET LOCAL olaclick.restaurant_id = '7'")?;
        assert_eq!(
            Spi::get_one::<i32>("SELECT olaclick.current_restaurant()")?,
            Some(7)
        );
        // A session SET made in this transaction counts in it too.
        Spi::run("SET olaclick.user_id = '5'")?;
        assert_eq!(
            Spi::get_one::<i32>("SELECT olaclick.current_actor()")?,
            Some(5)
        );
        // RESET in the same transaction: no tenant.
        Spi::run("RESET olaclick.restaurant_id")?;
        assert_eq!(
            Spi::get_one::<i32>("SELECT olaclick.current_restaurant()")?,
            None
        );
        Ok(())
    }
}
