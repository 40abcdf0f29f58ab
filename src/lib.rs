//! olaclick: the restaurant-ordering data model as a PostgreSQL extension.
//!
//! The DDL lives in `sql/`, in the order below; each Rust module holds one
//! guarantee. `../README.md` maps every contract rule to the file enforcing it.

use pgrx::prelude::*;

mod audit;
mod audit_settings;
mod compat;
mod drop_guard;
mod error;
mod gucs;
mod immutable;
mod lines;
mod native;
mod notify;
mod order_status;
mod plans;
mod refusal;
mod restore;
mod retention;
mod row_jsonb;
mod sandbox;
mod scope;
mod status;
mod tenancy;
mod tenant_scope;
mod totals;

#[cfg(any(test, feature = "pg_test"))]
mod tests;

::pgrx::pg_module_magic!(name, version);

extension_sql_file!(
    "../sql/schema.sql",
    name = "schema",
    requires = [gucs::current_actor]
);
extension_sql_file!("../sql/demo.sql", name = "demo", requires = ["schema"]);
extension_sql_file!(
    "../sql/partitions.sql",
    name = "partitions",
    requires = ["schema"]
);
extension_sql_file!(
    "../sql/audit.sql",
    name = "audit",
    requires = ["schema", "partitions"]
);
extension_sql_file!(
    "../sql/security.sql",
    name = "security",
    requires = ["schema", "audit", "demo", gucs::current_restaurant]
);
extension_sql_file!("../sql/ops.sql", name = "ops", requires = ["security"]);
extension_sql_file!("../sql/notify.sql", name = "notify", requires = ["ops"]);
extension_sql_file!(
    "../sql/health.sql",
    name = "health",
    requires = ["ops", "notify"]
);
extension_sql_file!("../sql/staging.sql", name = "staging", requires = ["ops"]);
// After health: the schema grant comes last, as the upgrade script makes it.
extension_sql_file!("../sql/pooler.sql", name = "pooler", requires = ["health"]);
extension_sql_file!("../sql/finalize.sql", name = "finalize", finalize);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    gucs::init();
    tenant_scope::init();
    notify::init();
    audit_settings::init();
    native::init();
    lines::init();
    row_jsonb::init();
}

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![]
    }
}
