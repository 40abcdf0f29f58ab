//! The session settings of the contract. Ids are string settings parsed at use,
//! so `RESET` and `set_config(.., '', true)` mean "unset", and row-level
//! security policies can read them with `current_setting(.., true)` even in a
//! backend that has not loaded the library yet.

use std::ffi::{CStr, CString};

use pgrx::prelude::*;
use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};

/// The acting application user (`users.id`), recorded as actor. Unset: NULL.
pub static USER_ID: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

/// The tenant the session acts for (row-level security). Unset: no tenant.
pub static RESTAURANT_ID: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

/// The channel cache-invalidation notifications are sent on. Superuser-only
/// (PGC_SUSET): an application session must not be able to send its
/// invalidations where no cache listens; a DBA sets it per database or role.
pub static NOTIFY_CHANNEL: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"olaclick_cache"));

/// Also audit the rows olaclick derives from the application's changes
/// (history rows, total updates). Superuser-only: it makes the log larger,
/// never smaller than the contract's one row per application change.
pub static AUDIT_DERIVED: GucSetting<bool> = GucSetting::<bool>::new(false);

/// Permits `DROP EXTENSION olaclick` while orders exist.
pub static ALLOW_DROP: GucSetting<bool> = GucSetting::<bool>::new(false);

pub fn init() {
    GucRegistry::define_string_guc(
        c"olaclick.user_id",
        c"The acting application user (olaclick.users.id).",
        c"Recorded as created_by_user_id in order history and as actor_user_id in audit_log. Unset means no actor (NULL).",
        &USER_ID,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"olaclick.restaurant_id",
        c"The restaurant (tenant) this session acts for.",
        c"Row-level security shows and accepts only this restaurant's rows. Unset means none.",
        &RESTAURANT_ID,
        GucContext::Userset,
        GucFlags::default(),
    );
    // Defined directly, for its check hook (pgrx 0.18 has none for strings).
    // SAFETY: static name, texts and variable, as DefineCustomStringVariable needs.
    unsafe {
        pgrx::pg_sys::DefineCustomStringVariable(
            c"olaclick.notify_channel".as_ptr(),
            c"Channel of the cache-invalidation notifications.".as_ptr(),
            c"One notification per restaurant touched is sent on it when a transaction that changed orders commits."
                .as_ptr(),
            NOTIFY_CHANNEL.as_ptr(),
            c"olaclick_cache".as_ptr(),
            GucContext::Suset as isize as _,
            GucFlags::default().bits(),
            Some(crate::notify::check_channel),
            None,
            None,
        );
    }
    GucRegistry::define_bool_guc(
        c"olaclick.audit_derived",
        c"Also audit the rows olaclick derives: history rows and total updates.",
        c"Off by default: each derived row follows from an audited change of the application (an order's insert or status change, a line's change).",
        &AUDIT_DERIVED,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"olaclick.allow_drop",
        c"Permits DROP EXTENSION olaclick while orders exist.",
        c"Off by default, so dropping the extension cannot silently destroy business data.",
        &ALLOW_DROP,
        GucContext::Userset,
        GucFlags::default(),
    );
}

/// `olaclick.user_id` as a user id; `None` when unset or empty.
pub fn user_id() -> Option<i32> {
    parse_id(c"olaclick.user_id", USER_ID.get())
}

/// `olaclick.current_actor()`: the acting user, the default of every
/// `created_by_user_id`. NULL when `olaclick.user_id` is unset.
#[pg_extern(stable, parallel_safe)]
pub fn current_actor() -> Option<i32> {
    user_id()
}

/// `olaclick.current_restaurant()`: the tenant of this session, read by the
/// row-level security policies (sql/security.sql). NULL when unset; a value
/// that is not a positive integer fails with 22023, whether it was set before
/// or after this library was loaded.
#[pg_extern(stable, parallel_safe)]
pub fn current_restaurant() -> Option<i32> {
    parse_id(c"olaclick.restaurant_id", RESTAURANT_ID.get())
}

fn parse_id(name: &CStr, value: Option<CString>) -> Option<i32> {
    let value = value?;
    let text = value.to_string_lossy();
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    match text.parse::<i32>() {
        Ok(id) if id > 0 => Some(id),
        _ => crate::error::refuse(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!(
                "{} must be a positive integer id, not \"{text}\"",
                name.to_string_lossy()
            ),
            format!("{} = \"{text}\"", name.to_string_lossy()),
            "Set it to an id, or RESET it.".into(),
        ),
    }
}
