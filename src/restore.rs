//! Recognising a restore of pg_dump output.
//!
//! pg_restore, and psql replaying a plain dump, load extension tables with
//! COPY (or with INSERT, for a dump taken with `--inserts`) while their
//! triggers are enabled. Guarantees written for live traffic
//! must not judge restored rows, which were judged when first written.
//!
//! Every script pg_dump writes starts with `SET row_security = off` and an
//! empty `search_path`, and loads rows with `COPY ... FROM stdin` or
//! `INSERT INTO ...`. Application sessions have neither setting, and only a
//! superuser can create olaclick, so a restore is: a superuser, running COPY or
//! INSERT, with both settings as pg_dump leaves them. Anyone else is judged
//! like live traffic.

use pgrx::pg_sys;
use std::ffi::CStr;

pub fn restoring() -> bool {
    // SAFETY: backend globals, read on the backend's only thread.
    unsafe {
        if pg_sys::row_security || !pg_sys::superuser() {
            return false;
        }
        let path = pg_sys::namespace_search_path;
        if path.is_null()
            || !CStr::from_ptr(path)
                .to_bytes()
                .iter()
                .all(|&b| b == b' ' || b == b'"')
        {
            return false;
        }
        let query = pg_sys::debug_query_string;
        if query.is_null() {
            return false;
        }
        let query = CStr::from_ptr(query).to_bytes().trim_ascii_start();
        query.starts_with(b"COPY ") || query.starts_with(b"INSERT INTO ")
    }
}
