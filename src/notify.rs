//! Cache invalidation: at commit, one notification per restaurant whose
//! orders changed, on `olaclick.notify_channel`.
//!
//! Why coalesce: a transaction that sends NOTIFY takes a cluster-wide lock at
//! commit, so a notification per row (what a plain trigger does) serialises
//! every writer. Here the order triggers only note, in backend memory and
//! without SPI, which restaurants, statuses and orders a transaction touched;
//! a pre-commit callback turns that into one `Async_Notify` per restaurant,
//! which PostgreSQL delivers when (and only if) the transaction commits. The
//! cost per transaction is flat: past `MAX_ORDER_IDS` a restaurant's ids are
//! dropped for `"all": true`, so memory stays bounded on bulk statements.
//!
//! An aborted transaction clears the notes and sends nothing. A rolled-back
//! savepoint keeps them, so it may over-notify but never under-notify.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{c_char, c_void, CString};

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::gucs;
use crate::order_status::OrderStatus;

/// The contract's payload limit (PostgreSQL's own is 8000 bytes).
const MAX_PAYLOAD: usize = 7900;
/// More ids than this can't fit in `MAX_PAYLOAD` anyway (each takes at least
/// two bytes); stop collecting them.
const MAX_ORDER_IDS: usize = MAX_PAYLOAD / 2;

#[derive(Default)]
struct Touched {
    /// In the enum's order, which is also the payload's.
    statuses: BTreeSet<OrderStatus>,
    orders: BTreeSet<i64>,
    all: bool,
}

thread_local! {
    static PENDING: RefCell<BTreeMap<i32, Touched>> = const { RefCell::new(BTreeMap::new()) };
}

extern "C-unwind" {
    // commands/async.h; not in pgrx's bindings.
    fn Async_Notify(channel: *const c_char, payload: *const c_char);
}

/// Notes that `order` of `restaurant` was written, with the statuses whose
/// order lists it leaves or joins.
pub fn touch(restaurant: i32, order: i64, statuses: &[OrderStatus]) {
    PENDING.with(|pending| {
        let mut pending = pending.borrow_mut();
        let touched = pending.entry(restaurant).or_default();
        touched.statuses.extend(statuses);
        if !touched.all {
            touched.orders.insert(order);
            if touched.orders.len() > MAX_ORDER_IDS {
                touched.all = true;
                touched.orders = BTreeSet::new();
            }
        }
    });
}

/// The contract's payload: the statuses and the order ids, sorted.
#[derive(serde::Serialize)]
struct Payload<'a> {
    restaurant_id: i32,
    statuses: Vec<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    orders: Option<&'a BTreeSet<i64>>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    all: bool,
}

/// serde_json's compact output, with the spaces the contract's examples
/// show after `:` and `,` (`{"restaurant_id": 7, "statuses": ["sent"]}`).
struct Spaced;

impl serde_json::ser::Formatter for Spaced {
    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }
    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }
    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        w.write_all(b": ")
    }
}

fn to_json(payload: &Payload) -> String {
    let mut out = Vec::with_capacity(128);
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, Spaced);
    serde::Serialize::serialize(payload, &mut serializer)
        .expect("integers and labels always serialize");
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

/// The contract's payload, sorted; without the order ids and with
/// `"all": true` when it would not fit.
fn payload(restaurant: i32, touched: &Touched) -> String {
    let mut payload = Payload {
        restaurant_id: restaurant,
        statuses: touched.statuses.iter().map(|s| s.label()).collect(),
        orders: (!touched.all).then_some(&touched.orders),
        all: touched.all,
    };
    let json = to_json(&payload);
    if json.len() <= MAX_PAYLOAD {
        return json;
    }
    payload.orders = None;
    payload.all = true;
    to_json(&payload)
}

/// Registered once per backend in `_PG_init`.
pub fn init() {
    // SAFETY: a plain function pointer, valid for the life of the library.
    unsafe { pg_sys::RegisterXactCallback(Some(on_xact_event), std::ptr::null_mut()) };
}

#[pg_guard]
/// # Safety
/// Called by PostgreSQL's transaction machinery with an event.
unsafe extern "C-unwind" fn on_xact_event(event: pg_sys::XactEvent::Type, _arg: *mut c_void) {
    match event {
        pg_sys::XactEvent::XACT_EVENT_PRE_COMMIT => send(),
        pg_sys::XactEvent::XACT_EVENT_PRE_PREPARE => {
            if PENDING.with(|p| !p.borrow().is_empty()) {
                PENDING.with(|p| p.borrow_mut().clear());
                crate::refusal::Refusal::prepare_after_order_change().raise();
            }
        }
        pg_sys::XactEvent::XACT_EVENT_ABORT | pg_sys::XactEvent::XACT_EVENT_PARALLEL_ABORT => {
            PENDING.with(|p| p.borrow_mut().clear());
        }
        _ => {}
    }
}

/// Queues the coalesced notifications; PostgreSQL sends them at commit.
fn send() {
    let pending = PENDING.with(|p| std::mem::take(&mut *p.borrow_mut()));
    if pending.is_empty() {
        return;
    }
    let channel = gucs::NOTIFY_CHANNEL
        .get()
        .unwrap_or_else(|| gucs::DEFAULT_CHANNEL.to_owned());
    for (restaurant, touched) in &pending {
        let payload = CString::new(payload(*restaurant, touched)).expect("JSON has no NUL");
        // SAFETY: valid C strings; an ERROR inside is turned into a Rust panic
        // at the boundary, which aborts the commit cleanly.
        unsafe {
            pg_sys::ffi::pg_guard_ffi_boundary(|| Async_Notify(channel.as_ptr(), payload.as_ptr()));
        }
    }
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use super::*;

    #[pg_test]
    fn payload_is_sorted_and_falls_back_to_all() {
        let mut t = Touched::default();
        for (order, status) in [
            (30, OrderStatus::Sent),
            (4, OrderStatus::Initiated),
            (12, OrderStatus::Sent),
        ] {
            t.orders.insert(order);
            t.statuses.insert(status);
        }
        assert_eq!(
            payload(7, &t),
            r#"{"restaurant_id": 7, "statuses": ["initiated", "sent"], "orders": [4, 12, 30]}"#
        );
        t.orders = (1_000_000..1_002_000).collect();
        let big = payload(7, &t);
        assert_eq!(
            big,
            r#"{"restaurant_id": 7, "statuses": ["initiated", "sent"], "all": true}"#
        );
    }
}
