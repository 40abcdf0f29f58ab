//! The context olaclick's own SQL runs in.
//!
//! Trigger functions written in C (Rust) run with the caller's search_path and
//! role. A caller could put look-alike operators or functions ahead of
//! pg_catalog (`SET search_path = public, pg_catalog`) and divert an
//! unqualified `=` or `+` in a trigger's SQL; so every statement olaclick runs
//! (`plans::run_kept`, `audit_purge`) goes through `pinned`, which pins `search_path` to `pg_catalog, pg_temp`
//! the way a function's `SET search_path` clause does. Rows only olaclick may
//! write (history, audit) are written `as_owner` of the tables, the way
//! PostgreSQL runs foreign-key checks, so application roles need no privilege
//! on them and can't write them by hand.
//!
//! Both restore on return. On an error they leave the restoring to the
//! (sub)transaction abort, as PostgreSQL's own fmgr_security_definer does.

use pgrx::pg_sys;

struct GucLevel(i32);

impl Drop for GucLevel {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            // SAFETY: pops the nest level `pinned` pushed, on success.
            unsafe { pg_sys::AtEOXact_GUC(true, self.0) };
        }
    }
}

/// Runs `f` with `search_path = pg_catalog, pg_temp`.
pub fn pinned<R>(f: impl FnOnce() -> R) -> R {
    // SAFETY: a GUC nest level pushed and popped around `f`, as PostgreSQL
    // does for a function with SET clauses.
    let _level = unsafe {
        let level = pg_sys::NewGUCNestLevel();
        pg_sys::set_config_option(
            c"search_path".as_ptr(),
            c"pg_catalog, pg_temp".as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_SAVE,
            true,
            0,
            false,
        );
        GucLevel(level)
    };
    f()
}

struct SavedUser(pg_sys::Oid, i32);

impl Drop for SavedUser {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            // SAFETY: restores what `as_owner` saved, on success.
            unsafe { pg_sys::SetUserIdAndSecContext(self.0, self.1) };
        }
    }
}

/// The role running the current statement, by name.
pub fn current_role() -> String {
    // SAFETY: GetUserNameFromId returns a palloc'd name or raises an ERROR.
    unsafe {
        let name = pg_sys::GetUserNameFromId(pg_sys::GetUserId(), false);
        std::ffi::CStr::from_ptr(name)
            .to_string_lossy()
            .into_owned()
    }
}

/// Runs `f` as the owner of `relation`.
pub fn as_owner<R>(relation: pg_sys::Relation, f: impl FnOnce() -> R) -> R {
    // SAFETY: the trigger's relation is open and valid; the user id is
    // switched and restored as for a SECURITY DEFINER function.
    let _saved = unsafe {
        let (mut user, mut context) = (pg_sys::Oid::INVALID, 0);
        pg_sys::GetUserIdAndSecContext(&mut user, &mut context);
        let owner = (*(*relation).rd_rel).relowner;
        pg_sys::SetUserIdAndSecContext(
            owner,
            context | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32,
        );
        SavedUser(user, context)
    };
    f()
}
