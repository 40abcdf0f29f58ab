//! The context olaclick's own SQL runs in.
//!
//! Trigger functions written in C (Rust) run with the caller's search_path and
//! role. A caller could put look-alike operators or functions ahead of
//! pg_catalog (`SET search_path = public, pg_catalog`) and divert an
//! unqualified `=` or `+` in a trigger's SQL; so every statement olaclick runs
//! (`plans::run_kept`, `audit_purge`) goes through `pinned`, which makes
//! pg_catalog the whole search path while it runs. Rows only olaclick may
//! write (history, audit) are written `as_owner` of the tables, the way
//! PostgreSQL runs foreign-key checks, so application roles need no privilege
//! on them and can't write them by hand.
//!
//! Both restore on return. On an error they leave the restoring to the
//! (sub)transaction abort, as PostgreSQL does for its own overrides.

use pgrx::pg_sys;

struct PoppedOnReturn;

impl Drop for PoppedOnReturn {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            // SAFETY: pops the override `pinned` pushed, on success.
            unsafe { pg_sys::PopOverrideSearchPath() };
        }
    }
}

/// Runs `f` with pg_catalog as the whole search path.
///
/// An override search path, not the search_path setting: flipping the
/// setting around every statement (what a SET clause does) cost about a third
/// of a millisecond per order's life in bench/run, since each flip also makes
/// PostgreSQL recompute the caller's path afterwards. The override touches
/// neither. pg_temp is not searched at all: olaclick names every table.
pub fn pinned<R>(f: impl FnOnce() -> R) -> R {
    let mut path = pg_sys::OverrideSearchPath {
        schemas: std::ptr::null_mut(),
        addCatalog: true,
        addTemp: false,
        generation: 0,
    };
    // SAFETY: PushOverrideSearchPath copies `path`; the (sub)transaction abort
    // pops an override left by an error.
    unsafe { pg_sys::PushOverrideSearchPath(&mut path) };
    let _pop = PoppedOnReturn;
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
