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

use std::cell::Cell;

use pgrx::pg_sys;

/// Runs `f` with pg_catalog as the whole search path.
///
/// How depends on the PostgreSQL version (`compat::pin_search_path`).
/// olaclick names every table, so where pg_temp comes doesn't matter.
pub fn pinned<R>(f: impl FnOnce() -> R) -> R {
    let _pinned = crate::compat::pin_search_path();
    f()
}

thread_local! {
    /// The role that ran the statement olaclick is acting for, while
    /// `as_owner` has switched to the tables' owner; `INVALID` otherwise.
    static ACTING: Cell<pg_sys::Oid> = const { Cell::new(pg_sys::Oid::INVALID) };
}

struct SavedUser(pg_sys::Oid, i32, pg_sys::Oid);

impl Drop for SavedUser {
    fn drop(&mut self) {
        // On an error the (sub)transaction abort restores the user id; the
        // acting role is olaclick's own and is restored either way.
        ACTING.with(|acting| acting.set(self.2));
        if !std::thread::panicking() {
            // SAFETY: restores what `as_owner` saved, on success.
            unsafe { pg_sys::SetUserIdAndSecContext(self.0, self.1) };
        }
    }
}

/// The role that made the change being recorded, by name: the role running
/// the statement, or, for rows olaclick derives from it (history, totals),
/// the role whose statement caused them, not the owner they are written as.
pub fn acting_role() -> String {
    let acting = ACTING.with(Cell::get);
    // SAFETY: GetUserNameFromId returns a palloc'd name or raises an ERROR.
    unsafe {
        let role = if acting == pg_sys::Oid::INVALID {
            pg_sys::GetUserId()
        } else {
            acting
        };
        let name = pg_sys::GetUserNameFromId(role, false);
        std::ffi::CStr::from_ptr(name)
            .to_string_lossy()
            .into_owned()
    }
}

/// Runs `f` as the owner of `relation`.
pub fn as_owner<R>(relation: pg_sys::Relation, f: impl FnOnce() -> R) -> R {
    // SAFETY: `relation` is the trigger's open relation; its `rd_rel` is
    // valid while it is open.
    let owner = unsafe { (*(*relation).rd_rel).relowner };
    as_role(owner, f)
}

/// Runs `f` as `role`.
pub fn as_role<R>(role: pg_sys::Oid, f: impl FnOnce() -> R) -> R {
    // SAFETY: the guard restores the user id when `f` is done.
    let _saved = unsafe { switch_to(role) };
    f()
}

/// Switches to `owner` as for a SECURITY DEFINER function, noting the role
/// acting before the outermost switch.
///
/// # Safety
/// The caller must keep the returned guard until the switched work is done.
unsafe fn switch_to(owner: pg_sys::Oid) -> SavedUser {
    let (mut user, mut context) = (pg_sys::Oid::INVALID, 0);
    pg_sys::GetUserIdAndSecContext(&mut user, &mut context);
    let outer = ACTING.with(Cell::get);
    if outer == pg_sys::Oid::INVALID {
        ACTING.with(|acting| acting.set(user));
    }
    pg_sys::SetUserIdAndSecContext(owner, context | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32);
    SavedUser(user, context, outer)
}
