//! The history row's key to its order, checked without SQL.
//!
//! olaclick writes a history row only for an order version the statement
//! itself just wrote (inserted, or updated to a new status), so the order is
//! this transaction's: an insert no one else sees yet, or a version others
//! must wait on to change or delete. PostgreSQL's check would run `SELECT 1
//! FROM orders WHERE (restaurant_id, id) = ... FOR KEY SHARE` through SPI and
//! lock a row this transaction already holds. What can still happen is that
//! the statement itself removed the order before its history was written (a
//! cascade from another table, a table owner's AFTER ROW trigger): so the
//! order is looked up by its primary key as the transaction sees it now, its
//! own changes included (SnapshotSelf), and a history row whose order is gone
//! fails as PostgreSQL's check would, with 23503. Only the table's own key to
//! orders, non-deferrable, as olaclick created it, is checked here; any
//! other shape is left to PostgreSQL.

use std::ffi::CStr;

use pgrx::pg_sys::{self, Datum, Oid};
use pgrx::prelude::*;

use super::shape::Shape;
use super::total::{skip_key_checks, version_of, Written, LAST_WRITTEN};
use crate::refusal::Refusal;

/// The name olaclick gives the key (sql/schema.sql).
const NAME: &CStr = c"order_status_history_restaurant_id_order_id_fkey";

/// Takes the history row's check of its order out of `rri` if it is
/// olaclick's own key and orders has the shape `found` reads; returns it
/// when it did.
///
/// # Safety
/// As for `skip_key_checks`.
pub unsafe fn take_out(rri: *mut pg_sys::ResultRelInfo, orders: Oid) -> Option<Oid> {
    let desc = (*rri).ri_TrigDesc;
    if desc.is_null() {
        return None;
    }
    let triggers = std::slice::from_raw_parts((*desc).triggers, (*desc).numtriggers as usize);
    // One constraint (its insert and update checks are two triggers),
    // enabled as PostgreSQL creates it: fired except in replica mode.
    let to_orders: Vec<&pg_sys::Trigger> = triggers
        .iter()
        .filter(|t| {
            pg_sys::RI_FKey_trigger_type(t.tgfoid) == pg_sys::RI_TRIGGER_FK as i32
                && t.tgconstrrelid == orders
        })
        .collect();
    if to_orders
        .iter()
        .any(|t| t.tgenabled != pg_sys::TRIGGER_FIRES_ON_ORIGIN as std::ffi::c_char)
    {
        return None;
    }
    let mut keys: Vec<Oid> = to_orders.iter().map(|t| t.tgconstraint).collect();
    keys.sort_by_key(|k| k.to_u32());
    keys.dedup();
    let [key] = keys.as_slice() else {
        return None;
    };
    let name = pg_sys::get_constraint_name(*key);
    if name.is_null() || CStr::from_ptr(name) != NAME {
        return None;
    }
    let key = *key;
    (!skip_key_checks(rri, Some(orders)).is_empty()).then_some(key)
}

/// Fails with 23503, as PostgreSQL's check would, unless `orders` has a
/// row with id `order` and restaurant_id `restaurant`, as this
/// transaction sees it now. The version found has had its own key
/// checks (see `LAST_WRITTEN`): it is remembered as such.
///
/// # Safety
/// `history` is the open history table; `key` the constraint taken out.
pub unsafe fn check(
    history: pg_sys::Relation,
    key: Oid,
    orders: Oid,
    shape: &Shape,
    restaurant: Option<Datum>,
    order: Option<Datum>,
) {
    // Not in replica mode, where PostgreSQL's check doesn't fire either
    // (nor the order's own checks).
    if pg_sys::SessionReplicationRole == pg_sys::SESSION_REPLICATION_ROLE_REPLICA as i32 {
        return;
    }
    // A NULL in the key passes, as MATCH SIMPLE lets it (NOT NULL
    // refuses it first in olaclick's table).
    let (Some(restaurant), Some(order)) = (restaurant, order) else {
        return;
    };
    let (restaurant, order) = (
        i32::from_datum(restaurant, false).unwrap_or_default(),
        i64::from_datum(order, false).unwrap_or_default(),
    );
    if let Some(version) = found(orders, shape, restaurant, order) {
        if version.is_some() {
            LAST_WRITTEN.set(version);
        }
        return;
    }
    let name = pg_sys::get_constraint_name(key);
    let name = if name.is_null() {
        NAME.to_string_lossy()
    } else {
        CStr::from_ptr(name).to_string_lossy()
    };
    let table = CStr::from_ptr(pg_sys::get_rel_name((*history).rd_id)).to_string_lossy();
    Refusal::history_order_gone(&table, &name, restaurant, order).raise();
}

/// Whether `orders` has a row (restaurant, order), this transaction's
/// own changes included: `None` if not, else the version found when it
/// is this transaction's (and the lookup could tell).
///
/// # Safety
/// `orders` is the orders table, locked by this transaction, with `shape`.
unsafe fn found(
    orders: Oid,
    shape: &Shape,
    restaurant: i32,
    order: i64,
) -> Option<Option<Written>> {
    let rel = pg_sys::table_open(orders, pg_sys::AccessShareLock as _);
    let index = pg_sys::index_open(shape.id_index, pg_sys::AccessShareLock as _);
    let slot = pg_sys::MakeSingleTupleTableSlot((*rel).rd_att, pg_sys::table_slot_callbacks(rel));
    let scan = super::shape::scan_by_id(rel, index, &raw mut pg_sys::SnapshotSelfData, order);
    // restaurant_id: an integer column (the shape says so).
    let tenant = shape.column(1) as i32 + 1;
    let mut found = None;
    while pg_sys::index_getnext_slot(scan, pg_sys::ScanDirection::ForwardScanDirection, slot) {
        let mut isnull = true;
        let value = pg_sys::slot_getattr(slot, tenant, &mut isnull);
        if !isnull && i32::from_datum(value, false) == Some(restaurant) {
            let version = version_of(order, slot)
                .filter(|v| pg_sys::TransactionIdIsCurrentTransactionId(v.xmin));
            found = Some(version);
            break;
        }
    }
    pg_sys::index_endscan(scan);
    pg_sys::ExecDropSingleTupleTableSlot(slot);
    pg_sys::index_close(index, pg_sys::NoLock as _);
    pg_sys::table_close(rel, pg_sys::NoLock as _);
    found
}
