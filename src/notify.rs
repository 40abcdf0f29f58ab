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
//!
//! What a cached list shows comes from more than the orders: the client's and
//! the restaurant's names too (olaclick-cache's query). `cache_columns_notify`
//! notes a change of those columns for the same coalesced notification, with
//! all statuses and `"all": true` (which orders show the name is not known
//! without a query).
//!
//! A full notification queue would fail every commit that notifies (54000,
//! at commit, after this callback). Above `olaclick.notify_queue_skip_threshold`
//! the callback queues nothing: the commit goes through, the skip is counted
//! in the sequence `olaclick.notify_skipped_seq` (non-transactional and
//! lock-free between writers, so counting can't serialise them or fail them),
//! and olaclick-cache flushes the whole cache when it sees the count move.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{c_char, c_void, CString};

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::error::Error;
use crate::gucs;
use crate::order_status::OrderStatus;
use crate::restore::restoring;

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
    // commands/sequence.h: nextval() without its permission check (the
    // application role may not use olaclick's sequence; counting a skip must
    // not fail its commit). Not in pgrx's bindings.
    fn nextval_internal(relid: pg_sys::Oid, check_permissions: bool) -> i64;
    // utils/datum.h: whether two values of one type have the same bytes. Not
    // in pgrx's bindings.
    fn datum_image_eq(
        value1: pg_sys::Datum,
        value2: pg_sys::Datum,
        typ_by_val: bool,
        typ_len: std::ffi::c_int,
    ) -> bool;
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

/// Notes that every cached list of `restaurant` may show something that
/// changed (a client's or the restaurant's name): all statuses, and
/// `"all": true` since the orders that show it are not known.
pub fn touch_all(restaurant: i32) {
    PENDING.with(|pending| {
        let mut pending = pending.borrow_mut();
        let touched = pending.entry(restaurant).or_default();
        touched.statuses.extend(OrderStatus::ALL);
        touched.all = true;
        touched.orders = BTreeSet::new();
    });
}

/// `BEFORE UPDATE OF <columns> ... FOR EACH ROW EXECUTE FUNCTION
/// olaclick.cache_columns_notify('<restaurant column>')` (sql/finalize.sql):
/// the columns are those of the table that olaclick-cache's query reads, the
/// argument names the column holding the row's restaurant (`restaurant_id`,
/// or `id` on restaurants). When one of the columns really changed (not
/// merely assigned its old value), every cached list of the restaurant, old
/// and new, is noted stale for the notification sent at commit. BEFORE, not
/// AFTER: no per-row event is queued for later, and a row that is then not
/// written only over-notifies.
#[pg_trigger]
fn cache_columns_notify<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, impl WhoAllocated>>, Error> {
    let (Some(old), Some(new)) = (trigger.old(), trigger.new()) else {
        return Err(Error::WrongEvent("cache_columns_notify"));
    };
    if restoring() {
        return Ok(Some(new));
    }
    // SAFETY: the trigger data PostgreSQL passed to this call, an UPDATE row
    // trigger's (checked above): its relation, old and new tuples are valid.
    let changed = unsafe { watched_columns_changed(trigger.trigger_data()) };
    if changed {
        let args = trigger.extra_args()?;
        let column = args.first().map(String::as_str).unwrap_or("restaurant_id");
        for row in [&old, &new] {
            if let Some(restaurant) = row.get_by_name::<i32>(column)? {
                touch_all(restaurant);
            }
        }
    }
    Ok(Some(new))
}

/// Whether a column of the trigger's `UPDATE OF` list differs between the old
/// and the new row (by its bytes: a value written differently but equal
/// counts as changed, which only over-notifies). A trigger without a column
/// list watches every column.
///
/// # Safety
/// `data` must be the trigger data of a row-level UPDATE trigger call.
unsafe fn watched_columns_changed(data: &pg_sys::TriggerData) -> bool {
    let trigger = &*data.tg_trigger;
    let tupdesc = (*data.tg_relation).rd_att;
    let natts = (*tupdesc).natts as usize;
    let attrs = crate::compat::attrs(tupdesc);
    let all: Vec<i16> = (1..=natts as i16).collect();
    let watched: &[i16] = if trigger.tgnattr > 0 && !trigger.tgattr.is_null() {
        std::slice::from_raw_parts(trigger.tgattr, trigger.tgnattr as usize)
    } else {
        &all
    };
    watched.iter().any(|&attno| {
        let Some(index) = std::num::NonZeroUsize::new(attno.max(0) as usize) else {
            return false;
        };
        let attr = &attrs[index.get() - 1];
        if attr.attisdropped {
            return false;
        }
        let old = pgrx::heap_getattr_raw(data.tg_trigtuple, index, tupdesc);
        let new = pgrx::heap_getattr_raw(data.tg_newtuple, index, tupdesc);
        match (old, new) {
            (None, None) => false,
            (Some(old), Some(new)) => {
                !datum_image_eq(old, new, attr.attbyval, attr.attlen as std::ffi::c_int)
            }
            _ => true,
        }
    })
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

/// `, ` before every array element and object key but the first.
fn separator<W: ?Sized + std::io::Write>(w: &mut W, first: bool) -> std::io::Result<()> {
    if first {
        Ok(())
    } else {
        w.write_all(b", ")
    }
}

impl serde_json::ser::Formatter for Spaced {
    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        separator(w, first)
    }
    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        separator(w, first)
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
        pg_sys::XactEvent::XACT_EVENT_PRE_PREPARE if PENDING.with(|p| !p.borrow().is_empty()) => {
            PENDING.with(|p| p.borrow_mut().clear());
            crate::refusal::Refusal::prepare_after_order_change().raise();
        }
        pg_sys::XactEvent::XACT_EVENT_ABORT | pg_sys::XactEvent::XACT_EVENT_PARALLEL_ABORT => {
            PENDING.with(|p| p.borrow_mut().clear());
        }
        _ => {}
    }
}

/// Queues the coalesced notifications; PostgreSQL sends them at commit.
/// With the queue at or above the skip threshold, counts them instead.
fn send() {
    let pending = PENDING.with(|p| std::mem::take(&mut *p.borrow_mut()));
    if pending.is_empty() {
        return;
    }
    if queue_usage() >= gucs::NOTIFY_QUEUE_SKIP_THRESHOLD.get() {
        return skip(pending.len());
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

/// `pg_notification_queue_usage()`: the fraction of the queue in use (one
/// shared lock, no I/O).
fn queue_usage() -> f64 {
    // SAFETY: a built-in function without arguments that returns a float8,
    // called inside a transaction.
    unsafe {
        pgrx::direct_function_call::<f64>(pg_sys::pg_notification_queue_usage, &[]).unwrap_or(0.0)
    }
}

/// The counter of skipped notifications (0.4.0's SQL); `None` in a database
/// still at an older version.
fn skipped_counter() -> Option<pg_sys::Oid> {
    // SAFETY: catalog lookups by name inside a transaction; both return
    // InvalidOid when the object is missing (missing_ok).
    let relid = unsafe {
        let namespace = pg_sys::get_namespace_oid(c"olaclick".as_ptr(), true);
        if namespace == pg_sys::InvalidOid {
            return None;
        }
        pg_sys::get_relname_relid(c"notify_skipped_seq".as_ptr(), namespace)
    };
    (relid != pg_sys::InvalidOid).then_some(relid)
}

thread_local! {
    /// Whether this backend already warned that it can't count skips.
    static WARNED_UNCOUNTED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Counts `n` skipped notifications. The commit must go through whatever
/// happens here: no permission check, and in a database whose SQL is older
/// than 0.4.0 (no counter) a warning instead.
fn skip(n: usize) {
    match skipped_counter() {
        Some(relid) => {
            for _ in 0..n {
                // SAFETY: relid is a sequence (looked up by its name in
                // olaclick's schema); called in a transaction that is still
                // in progress (pre-commit).
                unsafe { nextval_internal(relid, false) };
            }
        }
        None => {
            if !WARNED_UNCOUNTED.with(|w| w.replace(true)) {
                pgrx::pg_sys::panic::ErrorReport::new(
                    PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                    "olaclick skipped cache notifications (the NOTIFY queue is nearly full) and can't count them",
                    "olaclick",
                )
                .set_detail("This database's olaclick SQL is older than 0.4.0: it has no olaclick.notify_skipped_seq, so olaclick-cache can't learn that it must flush; cached lists may stay stale until their TTL.")
                .set_hint("Run ALTER EXTENSION olaclick UPDATE.")
                .report(PgLogLevel::WARNING);
            }
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

    /// The restaurant's pending notification, as it would be sent now.
    fn pending(restaurant: i32) -> Option<String> {
        PENDING.with(|p| p.borrow().get(&restaurant).map(|t| payload(restaurant, t)))
    }

    #[pg_test]
    fn renames_note_every_status_of_old_and_new_restaurant_only_when_changed() {
        PENDING.with(|p| p.borrow_mut().clear());
        let ids = |sql: &str| Spi::get_one::<i32>(sql).unwrap().unwrap();
        let r1 = ids("INSERT INTO olaclick.restaurants (name) VALUES ('R') RETURNING id");
        let r2 = ids("INSERT INTO olaclick.restaurants (name) VALUES ('S') RETURNING id");
        let client = ids(&format!(
            "INSERT INTO olaclick.clients (restaurant_id, name, email) VALUES ({r1}, 'Ana', 'a@x') RETURNING id"
        ));
        let all = |r: i32| {
            Some(format!(
                r#"{{"restaurant_id": {r}, "statuses": ["initiated", "sent", "delivered"], "all": true}}"#
            ))
        };
        // Assigned the same values, or columns the cached lists don't show.
        Spi::run(&format!(
            "UPDATE olaclick.clients SET name = name, id = id, phone = '1' WHERE id = {client};
             UPDATE olaclick.restaurants SET name = name, created_at = now() WHERE id = {r1}"
        ))
        .unwrap();
        assert_eq!(pending(r1), None);
        Spi::run(&format!(
            "UPDATE olaclick.clients SET name = 'Ana M' WHERE id = {client}"
        ))
        .unwrap();
        assert_eq!(pending(r1), all(r1));
        PENDING.with(|p| p.borrow_mut().clear());
        Spi::run(&format!(
            "UPDATE olaclick.restaurants SET name = 'R2' WHERE id = {r1}"
        ))
        .unwrap();
        assert_eq!(pending(r1), all(r1));
        assert_eq!(pending(r2), None);
        // A client moved to another restaurant: both restaurants' lists.
        PENDING.with(|p| p.borrow_mut().clear());
        Spi::run(&format!(
            "UPDATE olaclick.clients SET restaurant_id = {r2}, name = 'Ana S' WHERE id = {client}"
        ))
        .unwrap();
        assert_eq!((pending(r1), pending(r2)), (all(r1), all(r2)));
        // An order change coalesces into the same one notification.
        touch(r2, 99, &[OrderStatus::Sent]);
        assert_eq!(pending(r2), all(r2));
        PENDING.with(|p| p.borrow_mut().clear());
    }
}
