//! `olaclick.tenant_scope = transaction`: a tenant (and actor) that can't
//! outlive the transaction that set it.
//!
//! Behind a pooler in transaction mode (PgBouncer `pool_mode = transaction`)
//! consecutive transactions of one server connection belong to different
//! clients. A session `SET olaclick.restaurant_id` (or `set_config(.., false)`,
//! or an ORM's connection-init hook) stays on the server connection, and the
//! next client's transaction would run as that tenant: it would see and write
//! another restaurant's orders. Under `transaction` scope:
//!
//! - `olaclick.current_restaurant()` and the actor (`olaclick.current_actor()`,
//!   history and audit rows) count a value only if it was set in the current
//!   transaction: PostgreSQL keeps a setting's stack of saved values exactly
//!   while the setting has been changed in the open transaction (`SET`,
//!   `SET LOCAL`, `set_config`), and pops it at commit or rollback. A value left
//!   by an earlier transaction (or by ALTER ROLE / postgresql.conf) reads as
//!   unset, so row-level security fails closed: no rows, no writes.
//! - At commit both settings are RESET, however they were set, so nothing is
//!   left on the connection and `SHOW` agrees with what is in effect. A
//!   session `SET` run as a statement of its own (its own transaction) is
//!   reset at once, with a WARNING saying so: the application learns of its
//!   mistake from an empty result instead of from another tenant's rows.
//!
//! The check, not only the reset, is what makes it safe: the library is loaded
//! in a backend at its first olaclick function call, so a `SET` sent before
//! that (no callback registered yet) is caught by the stack check.
//!
//! `session` (the default) is PostgreSQL's usual behaviour, unchanged.

use std::cell::Cell;
use std::ffi::{c_void, CStr, CString};

use pgrx::pg_sys;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;

use crate::gucs::{TenantScope, TENANT_SCOPE};

/// The settings whose scope `olaclick.tenant_scope` decides.
#[derive(Clone, Copy)]
pub enum Setting {
    RestaurantId = 0,
    UserId = 1,
}

const NAMES: [&CStr; 2] = [c"olaclick.restaurant_id", c"olaclick.user_id"];

thread_local! {
    /// PostgreSQL's records of the two settings, found once after they are
    /// defined (custom variables' records don't move afterwards).
    static RECORDS: Cell<[*mut pg_sys::config_generic; 2]> =
        const { Cell::new([std::ptr::null_mut(); 2]) };
}

/// Called from `_PG_init` after `gucs::init()` has defined the settings.
pub fn init() {
    RECORDS.with(|r| r.set([record(NAMES[0]), record(NAMES[1])]));
    // SAFETY: a plain function pointer, valid for the life of the library.
    unsafe { pg_sys::RegisterXactCallback(Some(on_xact_event), std::ptr::null_mut()) };
}

/// PostgreSQL's record of the setting `name` (defined by this library).
fn record(name: &CStr) -> *mut pg_sys::config_generic {
    crate::compat::guc_record(name).unwrap_or_else(|| {
        panic!(
            "olaclick: setting {} is not defined",
            name.to_string_lossy()
        )
    })
}

/// The setting's record: (was it changed in the open transaction, its source).
fn state(setting: Setting) -> (bool, pg_sys::GucSource::Type) {
    let var = RECORDS.with(|r| r.get()[setting as usize]);
    assert!(!var.is_null(), "olaclick: tenant_scope::init() not run");
    // SAFETY: `var` is the live record of a setting this library defined
    // (found in init); `stack` is non-NULL exactly while the setting has saved
    // values to restore at the end of the open transaction.
    unsafe { (!(*var).stack.is_null(), (*var).source) }
}

/// The value of `setting` as olaclick uses it: `value` itself under `session`
/// scope; under `transaction` scope only if it was set in this transaction.
pub fn in_effect(setting: Setting, value: Option<CString>) -> Option<CString> {
    if value.is_none() || TENANT_SCOPE.get() == TenantScope::Session {
        return value;
    }
    // A parallel worker gets the leader's values without their stacks: it
    // follows the leader. Row-level security's tenant is an InitPlan
    // (`(SELECT olaclick.current_restaurant())`), which PostgreSQL evaluates
    // in the leader, and writes never run in workers.
    // SAFETY: a plain read of PostgreSQL's global, set before any query runs.
    if unsafe { pg_sys::ParallelWorkerNumber } >= 0 {
        return value;
    }
    if state(setting).0 {
        value
    } else {
        None
    }
}

#[pg_guard]
/// # Safety
/// Called by PostgreSQL's transaction machinery with an event.
unsafe extern "C-unwind" fn on_xact_event(event: pg_sys::XactEvent::Type, _arg: *mut c_void) {
    // Before commit (and PREPARE TRANSACTION), while errors can still abort;
    // deferred triggers have already run. A rollback needs nothing: it undoes
    // the transaction's own SETs, and a value from before that was never
    // counted.
    if matches!(
        event,
        pg_sys::XactEvent::XACT_EVENT_PRE_COMMIT | pg_sys::XactEvent::XACT_EVENT_PRE_PREPARE
    ) && TENANT_SCOPE.get() == TenantScope::Transaction
    {
        reset();
    }
}

/// RESETs both settings if this transaction changed them or a session value
/// is left on the connection; warns when a session SET was its own
/// transaction (the application's likely mistake).
fn reset() {
    for (i, setting) in [Setting::RestaurantId, Setting::UserId]
        .into_iter()
        .enumerate()
    {
        let (changed, source) = state(setting);
        if !changed && source != pg_sys::GucSource::PGC_S_SESSION {
            continue;
        }
        // SAFETY: a known setting's name; a NULL value means RESET. With elevel
        // 0 a failure is an ERROR, which aborts the transaction normally.
        unsafe {
            pg_sys::set_config_option(
                NAMES[i].as_ptr(),
                std::ptr::null(),
                pg_sys::GucContext::PGC_USERSET,
                pg_sys::GucSource::PGC_S_SESSION,
                pg_sys::GucAction::GUC_ACTION_SET,
                true,
                0,
                false,
            );
        }
        // SAFETY: plain query of the transaction state.
        if changed
            && source == pg_sys::GucSource::PGC_S_SESSION
            && !unsafe { pg_sys::IsTransactionBlock() }
        {
            let name = NAMES[i].to_string_lossy();
            ErrorReport::new(
                PgSqlErrorCode::ERRCODE_WARNING,
                format!("{name} was reset at the end of this statement's transaction"),
                "olaclick",
            )
            .set_detail("olaclick.tenant_scope is transaction for this role: a tenant or actor counts only in the transaction that set it, so a SET outside BEGIN ... COMMIT has no effect.".to_string())
            .set_hint(format!("Set it inside the transaction: BEGIN; SET LOCAL {name} = ...; ... COMMIT;"))
            .report(PgLogLevel::WARNING);
        }
    }
}
