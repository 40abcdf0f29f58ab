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
use std::ffi::CStr;

use pgrx::pg_sys::{self, Datum, Oid};
use pgrx::prelude::*;
use pgrx::IntoDatum;

use crate::refusal::Refusal;

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

/// Reads every table's settings, with a snapshot taken now rather than the
/// transaction's: what is read is kept beyond the transaction, and a
/// REPEATABLE READ or SERIALIZABLE transaction's snapshot would keep settings
/// older than its own start for the backend's life (no further invalidation
/// would come to correct them). Read as a table scan, not SQL: an SPI query
/// of a transaction that has written anything uses the transaction's
/// snapshot whatever snapshot is active.
fn load() -> (Oid, HashMap<String, Settings>) {
    // SAFETY: a catalog lookup by name; InvalidOid when missing.
    let relid = unsafe {
        let schema = pg_sys::get_namespace_oid(c"olaclick".as_ptr(), false);
        pg_sys::get_relname_relid(c"audit_settings".as_ptr(), schema)
    };
    if relid == Oid::INVALID {
        Refusal::table_missing(TABLE).raise();
    }
    let mut by_table = HashMap::new();
    // SAFETY: the relation is opened and locked before it is read and
    // closed after; each column is checked to exist with the type it is read
    // as; the snapshot is registered for the scan and released after it.
    unsafe {
        let rel = pg_sys::table_open(relid, pg_sys::AccessShareLock as _);
        // A view or partitioned table put in its place has no storage to
        // scan.
        if (*(*rel).rd_rel).relkind != pg_sys::RELKIND_RELATION as std::ffi::c_char
            || (*rel).rd_tableam.is_null()
        {
            Refusal::not_a_table(TABLE).raise();
        }
        let desc = (*rel).rd_att;
        let column = |name: &CStr, typ: Oid| {
            let attrs = crate::compat::attrs(desc);
            match attrs
                .iter()
                .position(|a| !a.attisdropped && CStr::from_ptr(a.attname.data.as_ptr()) == name)
            {
                Some(i) if attrs[i].atttypid == typ => i + 1,
                Some(_) => {
                    Refusal::column_type(TABLE, &name.to_string_lossy(), "another type").raise()
                }
                None => Refusal::column_missing(TABLE, &name.to_string_lossy()).raise(),
            }
        };
        let table_col = column(c"table_name", pg_sys::TEXTOID);
        let enabled_col = column(c"enabled", pg_sys::BOOLOID);
        let excluded_col = column(c"excluded_columns", pg_sys::TEXTARRAYOID);
        let snapshot = pg_sys::RegisterSnapshot(pg_sys::GetLatestSnapshot());
        let scan =
            pg_sys::systable_beginscan(rel, Oid::INVALID, false, snapshot, 0, std::ptr::null_mut());
        loop {
            let tuple = pg_sys::systable_getnext(scan);
            if tuple.is_null() {
                break;
            }
            let value = |attno: usize| {
                std::num::NonZeroUsize::new(attno)
                    .and_then(|attno| pgrx::heap_getattr_raw(tuple, attno, desc))
            };
            let table = value(table_col).and_then(|d| String::from_datum(d, false));
            let enabled = value(enabled_col).and_then(|d| bool::from_datum(d, false));
            let excluded =
                value(excluded_col).and_then(|d| Vec::<Option<String>>::from_datum(d, false));
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
        pg_sys::systable_endscan(scan);
        pg_sys::UnregisterSnapshot(snapshot);
        pg_sys::table_close(rel, pg_sys::AccessShareLock as _);
    }
    (relid, by_table)
}
