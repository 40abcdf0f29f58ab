//! Which of olaclick's own writes is under way in this backend.
//!
//! Some rows may only be written by olaclick itself: history rows, and
//! `orders.total`. Their guards let a write through only while the matching
//! scope is open. A scope closes when its guard drops, also when an error
//! unwinds through it, so it can't leak into the next statement.

use std::cell::Cell;

#[derive(Clone, Copy)]
pub enum Writer {
    /// The totals trigger is applying line changes to `orders.total`.
    Totals,
    /// The status trigger is appending to `order_status_history`.
    History,
    /// The audit trigger is appending to `audit_log`.
    Audit,
    /// `audit_purge()` or `maintain()` is removing old rows from `audit_log`
    /// or moving rows between its partitions (src/retention.rs).
    AuditPurge,
}

thread_local! {
    static OPEN: [Cell<bool>; 4] = const { [Cell::new(false), Cell::new(false), Cell::new(false), Cell::new(false)] };
}

pub struct Scope(Writer, bool);

/// Opens `writer`'s scope until the returned guard drops.
pub fn enter(writer: Writer) -> Scope {
    let was = OPEN.with(|open| open[writer as usize].replace(true));
    Scope(writer, was)
}

pub fn is_open(writer: Writer) -> bool {
    OPEN.with(|open| open[writer as usize].get())
}

impl Drop for Scope {
    fn drop(&mut self) {
        OPEN.with(|open| open[self.0 as usize].set(self.1));
    }
}
