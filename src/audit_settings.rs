//! `olaclick.audit_settings`, read once per backend and kept.
//!
//! The audit trigger needs a table's settings on every statement; reading
//! them with SQL each time cost a query per statement. They are read once
//! and kept until the table changes: the audit trigger on audit_settings (it
//! is always audited) queues a relcache invalidation of the table, which
//! PostgreSQL delivers to every backend when the change commits (and to this
//! one at its next command), and the callback registered in `init` drops
//! what was kept. A change committed in one session therefore takes effect in
//! every other session's next statement.

use std::cell::RefCell;
use std::collections::HashMap;

use pgrx::pg_sys::{self, Datum, Oid};
use pgrx::prelude::*;
use pgrx::IntoDatum;

use crate::sandbox;

/// The settings table's name (it is audited too, always).
pub const TABLE: &str = "audit_settings";

/// Never logged, whatever the settings say.
const ALWAYS_EXCLUDED: &str = "password_hash";

#[derive(Clone)]
pub struct Settings {
    pub enabled: bool,
    /// Columns left out of logged rows, `password_hash` included, sorted.
    pub excluded: Vec<String>,
}

impl Settings {
    /// The excluded columns as a text[] datum.
    pub fn excluded_array(&self) -> Datum {
        self.excluded
            .clone()
            .into_datum()
            .expect("a Vec<String> always makes a text[]")
    }
}

thread_local! {
    /// Settings by table, and the settings table's oid; `None` until read.
    static KEPT: RefCell<Option<(Oid, HashMap<String, Settings>)>> = const { RefCell::new(None) };
}

/// Registered once per backend in `_PG_init`.
pub fn init() {
    // SAFETY: a plain function pointer, valid for the life of the library.
    unsafe {
        pg_sys::CacheRegisterRelcacheCallback(Some(on_relcache_invalidation), Datum::from(0))
    };
}

#[pg_guard]
/// # Safety
/// Called by PostgreSQL's invalidation machinery with a relation oid.
unsafe extern "C-unwind" fn on_relcache_invalidation(_arg: Datum, relid: Oid) {
    KEPT.with(|kept| {
        let mut kept = kept.borrow_mut();
        if relid == Oid::INVALID || kept.as_ref().is_some_and(|(oid, _)| *oid == relid) {
            *kept = None;
        }
    });
    crate::native::forget(relid);
}

/// The settings of `table`: all of it logged unless audit_settings says
/// otherwise; audit_settings itself always.
pub fn of(table: &str) -> Settings {
    // Takes in what other sessions committed since this backend last looked
    // (PostgreSQL otherwise does at the next lock it acquires or transaction
    // it starts), so a settings change applies from the next statement on.
    // SAFETY: no arguments; processes the shared invalidation queue.
    unsafe { pg_sys::AcceptInvalidationMessages() };
    let found = KEPT.with(|kept| {
        kept.borrow()
            .as_ref()
            .map(|(_, by_table)| by_table.get(table).cloned())
    });
    let found = match found {
        Some(found) => found,
        None => {
            let loaded = load();
            let found = loaded.1.get(table).cloned();
            KEPT.with(|kept| *kept.borrow_mut() = Some(loaded));
            found
        }
    };
    let mut settings = found.unwrap_or(Settings {
        enabled: true,
        excluded: vec![ALWAYS_EXCLUDED.into()],
    });
    settings.enabled |= table == TABLE;
    settings
}

/// Tells every backend, at commit, that the settings changed.
pub fn changed(settings_table: Oid) {
    // SAFETY: queues a transactional invalidation for an existing relation.
    unsafe { pg_sys::CacheInvalidateRelcacheByRelid(settings_table) };
}

/// Reads every table's settings. Called by the audit trigger while it runs
/// as the tables' owner: the application can't read the settings itself.
fn load() -> (Oid, HashMap<String, Settings>) {
    // SAFETY: a catalog lookup by name; InvalidOid when missing.
    let relid = unsafe {
        let schema = pg_sys::get_namespace_oid(c"olaclick".as_ptr(), false);
        pg_sys::get_relname_relid(c"audit_settings".as_ptr(), schema)
    };
    let rows = sandbox::pinned(|| {
        Spi::connect(|client| {
            let mut by_table = HashMap::new();
            for row in client.select(
                "SELECT table_name, enabled, excluded_columns FROM olaclick.audit_settings",
                None,
                &[],
            )? {
                let table: Option<String> = row.get(1)?;
                let enabled: Option<bool> = row.get(2)?;
                let excluded: Option<Vec<Option<String>>> = row.get(3)?;
                let mut excluded: Vec<String> =
                    excluded.unwrap_or_default().into_iter().flatten().collect();
                excluded.push(ALWAYS_EXCLUDED.into());
                excluded.sort();
                excluded.dedup();
                if let Some(table) = table {
                    by_table.insert(
                        table,
                        Settings {
                            enabled: enabled.unwrap_or(true),
                            excluded,
                        },
                    );
                }
            }
            Ok::<_, pgrx::spi::Error>(by_table)
        })
    });
    match rows {
        Ok(rows) => (relid, rows),
        Err(e) => crate::error::refuse(
            PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            format!("olaclick could not read olaclick.audit_settings: {e}"),
            "The audit trigger reads the settings once per backend.".into(),
            "Check that olaclick.audit_settings exists with its columns.".into(),
        ),
    }
}
