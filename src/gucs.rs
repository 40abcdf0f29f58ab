//! The session settings of the contract. Ids are string settings parsed at use,
//! so `RESET` and `set_config(.., '', true)` mean "unset", and row-level
//! security policies can read them with `current_setting(.., true)` even in a
//! backend that has not loaded the library yet.

use std::ffi::{c_char, c_void, CStr, CString};

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
    GucSetting::<Option<CString>>::new(Some(DEFAULT_CHANNEL));

/// The contract's default channel, which olaclick-cache listens on unless told.
pub const DEFAULT_CHANNEL: &CStr = c"olaclick_cache";

/// Also audit the rows olaclick derives from the application's changes
/// (history rows, total updates). Superuser-only: it makes the log larger,
/// never smaller than the contract's one row per application change.
pub static AUDIT_DERIVED: GucSetting<bool> = GucSetting::<bool>::new(false);

/// Permits `DROP EXTENSION olaclick` while orders exist.
pub static ALLOW_DROP: GucSetting<bool> = GucSetting::<bool>::new(false);

/// Lets olaclick write its own rows without SQL where the table's shape
/// allows it (src/native/). For tests only: off makes every write take the
/// SQL path, so the two can be compared row for row. Superuser-only.
pub static NATIVE_WRITES: GucSetting<bool> = GucSetting::<bool>::new(true);

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
            DEFAULT_CHANNEL.as_ptr(),
            GucContext::Suset as isize as _,
            GucFlags::default().bits(),
            Some(check_channel),
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
    GucRegistry::define_bool_guc(
        c"olaclick.native_writes",
        c"For tests: write olaclick's own rows without SQL where the table's shape allows it.",
        c"On by default. Off makes history, audit and total writes take the SQL path, which writes the same rows; tests compare the two.",
        &NATIVE_WRITES,
        GucContext::Suset,
        GucFlags::default(),
    );
    define_health();
    define_part5();
    define_notify_queue();
    define_tenant_scope();
}

// The thresholds of olaclick.health() (sql/health.sql). Superuser-only
// (PGC_SUSET), so an application session can't silence an alert; a DBA sets
// them in postgresql.conf, or per database or role. health() reads them with
// current_setting(.., true) and falls back to these same defaults in a backend
// that has not loaded the library: keep both in step (tests/health/run checks).

/// `pg_notification_queue_usage()` at which health() warns.
pub static HEALTH_NOTIFY_QUEUE_WARNING: GucSetting<f64> = GucSetting::<f64>::new(0.5);

/// `pg_notification_queue_usage()` at which health() is critical.
pub static HEALTH_NOTIFY_QUEUE_CRITICAL: GucSetting<f64> = GucSetting::<f64>::new(0.9);

/// Age of the oldest `audit_log` row, in seconds, at which health() warns that
/// retention (`audit_purge`) is not running. 395 days: 13 months.
pub static HEALTH_AUDIT_RETENTION: GucSetting<i32> = GucSetting::<i32>::new(395 * 86400);

/// Seconds the oldest WAL segment may wait for archiving before a warning.
pub static HEALTH_ARCHIVE_LAG_WARNING: GucSetting<i32> = GucSetting::<i32>::new(300);

/// Seconds the oldest WAL segment may wait for archiving before critical.
pub static HEALTH_ARCHIVE_LAG_CRITICAL: GucSetting<i32> = GucSetting::<i32>::new(900);

/// Standby replay lag, in seconds, at which health() warns.
pub static HEALTH_REPLAY_LAG_WARNING: GucSetting<i32> = GucSetting::<i32>::new(60);

/// Standby replay lag, in seconds, at which health() is critical.
pub static HEALTH_REPLAY_LAG_CRITICAL: GucSetting<i32> = GucSetting::<i32>::new(300);

/// How many of the newest orders (and of the newest status changes) health()
/// checks for broken invariants; bounds its cost on a large database.
pub static HEALTH_CONSISTENCY_ORDERS: GucSetting<i32> = GucSetting::<i32>::new(1000);

fn define_health() {
    GucRegistry::define_float_guc(
        c"olaclick.health_notify_queue_warning",
        c"NOTIFY queue usage (0 to 1) at which olaclick.health() warns.",
        c"Measured with pg_notification_queue_usage(). A full queue makes every transaction that notifies fail at commit.",
        &HEALTH_NOTIFY_QUEUE_WARNING,
        0.0,
        1.0,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_float_guc(
        c"olaclick.health_notify_queue_critical",
        c"NOTIFY queue usage (0 to 1) at which olaclick.health() is critical.",
        c"Measured with pg_notification_queue_usage(). A full queue makes every transaction that notifies fail at commit.",
        &HEALTH_NOTIFY_QUEUE_CRITICAL,
        0.0,
        1.0,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"olaclick.health_audit_retention",
        c"Age of the oldest audit_log row at which olaclick.health() warns.",
        c"Set it to the retention your audit_purge job enforces: older rows mean the job is not running.",
        &HEALTH_AUDIT_RETENTION,
        1,
        i32::MAX,
        GucContext::Suset,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"olaclick.health_archive_lag_warning",
        c"How long the oldest WAL segment may wait for archiving before olaclick.health() warns.",
        c"Checked while archive_mode is on; bounds the recovery point objective.",
        &HEALTH_ARCHIVE_LAG_WARNING,
        0,
        i32::MAX,
        GucContext::Suset,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"olaclick.health_archive_lag_critical",
        c"How long the oldest WAL segment may wait for archiving before olaclick.health() is critical.",
        c"Checked while archive_mode is on; bounds the recovery point objective.",
        &HEALTH_ARCHIVE_LAG_CRITICAL,
        0,
        i32::MAX,
        GucContext::Suset,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"olaclick.health_replay_lag_warning",
        c"Standby replay lag at which olaclick.health() warns.",
        c"The largest replay_lag in pg_stat_replication, checked when standbys are connected.",
        &HEALTH_REPLAY_LAG_WARNING,
        0,
        i32::MAX,
        GucContext::Suset,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"olaclick.health_replay_lag_critical",
        c"Standby replay lag at which olaclick.health() is critical.",
        c"The largest replay_lag in pg_stat_replication, checked when standbys are connected.",
        &HEALTH_REPLAY_LAG_CRITICAL,
        0,
        i32::MAX,
        GucContext::Suset,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"olaclick.health_consistency_orders",
        c"How many of the newest orders olaclick.health() checks for broken invariants.",
        c"The newest orders and the orders of the newest status changes; 0 skips the check. olaclick.check_consistency() checks every order.",
        &HEALTH_CONSISTENCY_ORDERS,
        0,
        1_000_000,
        GucContext::Suset,
        GucFlags::default(),
    );
}

/// Check hook of `olaclick.notify_channel`: refuse at SET time a channel that
/// NOTIFY would refuse at commit, when it would abort every writing
/// transaction.
///
/// # Safety
/// Called by PostgreSQL's GUC machinery with `newval` pointing at the
/// proposed value (a C string or NULL).
unsafe extern "C-unwind" fn check_channel(
    newval: *mut *mut c_char,
    _extra: *mut *mut c_void,
    _source: pgrx::pg_sys::GucSource::Type,
) -> bool {
    let value = if newval.is_null() || (*newval).is_null() {
        c""
    } else {
        CStr::from_ptr(*newval)
    };
    let len = value.to_bytes().len();
    if len == 0 || len >= pgrx::pg_sys::NAMEDATALEN as usize {
        let detail = format!(
            "A notification channel is a name of 1 to {} bytes.",
            pgrx::pg_sys::NAMEDATALEN - 1
        );
        let detail = CString::new(detail).unwrap_or_default();
        pgrx::pg_sys::GUC_check_errdetail_string = pgrx::pg_sys::pstrdup(detail.as_ptr());
        return false;
    }
    true
}

/// `olaclick.user_id` as a user id; `None` when unset or empty.
pub fn user_id() -> Option<i32> {
    parse_id(
        c"olaclick.user_id",
        crate::tenant_scope::in_effect(crate::tenant_scope::Setting::UserId, USER_ID.get()),
    )
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
    parse_id(
        c"olaclick.restaurant_id",
        crate::tenant_scope::in_effect(
            crate::tenant_scope::Setting::RestaurantId,
            RESTAURANT_ID.get(),
        ),
    )
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
        _ => crate::refusal::Refusal::bad_id(&name.to_string_lossy(), text).raise(),
    }
}

// Part 5: password lifetime and environments (docs/security.md).

/// How long a password set by scripts/rotate-password (and the documented
/// `CREATE ROLE ... VALID UNTIL`) stays valid. Superuser-only: it is the
/// cluster's policy, read by the scripts from the server.
pub static PASSWORD_LIFETIME: GucSetting<i32> = GucSetting::<i32>::new(90 * 86400);

/// How long before a login role's `VALID UNTIL` olaclick.health() warns.
pub static HEALTH_PASSWORD_EXPIRY_WARNING: GucSetting<i32> = GucSetting::<i32>::new(14 * 86400);

/// What a database (`ALTER DATABASE .. SET`) or a login role (`ALTER ROLE ..
/// SET`) is: `production`, `staging` or `development`. Read from the catalog
/// (pg_db_role_setting), never from the session, by health() and
/// anonymize_for_staging(): a session can't make production look like staging.
pub static ENVIRONMENT: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

fn define_part5() {
    GucRegistry::define_int_guc(
        c"olaclick.password_lifetime",
        c"How long a rotated login role's password stays valid (VALID UNTIL).",
        c"scripts/rotate-password and the documented CREATE ROLE set VALID UNTIL this far ahead; 90 days by default.",
        &PASSWORD_LIFETIME,
        3600,
        i32::MAX,
        GucContext::Suset,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"olaclick.health_password_expiry_warning",
        c"How long before a login role's password expires olaclick.health() warns.",
        c"Login roles of olaclick's groups whose VALID UNTIL falls within this window are named in the password_expiry check.",
        &HEALTH_PASSWORD_EXPIRY_WARNING,
        0,
        i32::MAX,
        GucContext::Suset,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_string_guc(
        c"olaclick.environment",
        c"What this database or login role is: production, staging or development.",
        c"Set with ALTER DATABASE or ALTER ROLE (read from the catalog, not the session). Unset counts as production.",
        &ENVIRONMENT,
        GucContext::Suset,
        GucFlags::default(),
    );
}

/// `pg_notification_queue_usage()` at or above which olaclick stops queueing
/// its cache notifications (src/notify.rs): a full queue would fail every
/// commit that notifies (54000), so above this the commit goes through
/// without them, the skip is counted (`olaclick.notify_skipped()`) and the
/// invalidator flushes the cache instead. Superuser-only (PGC_SUSET): an
/// application session can't turn its invalidations off. health() reads it
/// with the same default (sql/health.sql).
pub static NOTIFY_QUEUE_SKIP_THRESHOLD: GucSetting<f64> = GucSetting::<f64>::new(0.75);

fn define_notify_queue() {
    GucRegistry::define_float_guc(
        c"olaclick.notify_queue_skip_threshold",
        c"NOTIFY queue usage (0 to 1) at or above which olaclick skips its cache notifications.",
        c"Measured with pg_notification_queue_usage() at each commit that would notify. Skipped notifications are counted by olaclick.notify_skipped(); olaclick-cache flushes the cache when the count moves. 1 never skips (a full queue then fails the commit).",
        &NOTIFY_QUEUE_SKIP_THRESHOLD,
        0.0,
        1.0,
        GucContext::Suset,
        GucFlags::default(),
    );
}

/// How long `olaclick.restaurant_id` and `olaclick.user_id` count
/// (src/tenant_scope.rs): `session`, as PostgreSQL settings always do, or
/// `transaction`, only in the transaction that set them (behind a pooler in
/// transaction mode, where a session `SET` would stay on the server connection
/// for the next client).
#[derive(pgrx::PostgresGucEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum TenantScope {
    #[name = c"session"]
    Session,
    #[name = c"transaction"]
    Transaction,
}

/// `olaclick.tenant_scope`. Superuser-only (PGC_SUSET): set per pooled login
/// role with ALTER ROLE, so the application can't switch it off.
pub static TENANT_SCOPE: GucSetting<TenantScope> =
    GucSetting::<TenantScope>::new(TenantScope::Session);

fn define_tenant_scope() {
    GucRegistry::define_enum_guc(
        c"olaclick.tenant_scope",
        c"How long olaclick.restaurant_id and olaclick.user_id count: session or transaction.",
        c"transaction: only a value set in the current transaction counts, and both are reset when it commits, however they were set. For login roles used through a pooler in transaction mode.",
        &TENANT_SCOPE,
        GucContext::Suset,
        GucFlags::default(),
    );
}
