//! Moving one order's total as `UPDATE olaclick.orders SET total = total +
//! delta WHERE id = $1 AND status = 'initiated'` does under READ COMMITTED,
//! without SQL.

use pgrx::pg_sys::{self, Datum, Oid};
use pgrx::prelude::*;
use pgrx::IntoDatum;

use super::executor::Executor;
use super::{Table, TransitionRow};

/// What became of an order whose total a line change moves.
pub enum Total {
    /// The total moved (the order is initiated).
    Added,
    /// The order is no longer initiated: its lines are frozen.
    Frozen { restaurant: i32, status: String },
    /// The native path can't be sure what the UPDATE would do (no live
    /// version of the order found and locked, or a shape of orders it
    /// doesn't write): the caller takes the SQL path, which decides.
    Unsure,
}

/// `UPDATE olaclick.orders SET total = total + delta WHERE id = order AND
/// status = 'initiated'`, as READ COMMITTED runs it, without SQL.
///
/// The order is found as that UPDATE finds it: through the unique index on
/// id with a fresh MVCC snapshot, which sees exactly the version committed
/// (or written by this transaction) when it was taken, never none while one
/// exists (a dirty-snapshot scan, as `RelationFindReplTupleByIndex` makes,
/// can miss a row whose new version commits between its index read and its
/// heap fetch). That version is locked FOR NO KEY UPDATE following its
/// update chain to the newest version (`table_tuple_lock` with
/// TUPLE_LOCK_FLAG_FIND_LAST_VERSION, as ExecUpdate's READ COMMITTED recheck
/// does), waiting for a concurrent writer; the newest version's id and status
/// are judged again, as the UPDATE's recheck would. Anything else (no version
/// visible, deleted meanwhile, its id changed) is `Unsure`: the caller's SQL
/// UPDATE decides, so "not found" is never silently "deleted".
///
/// The row is then replaced through `ExecSimpleRelationUpdate`: BEFORE ROW
/// triggers (orders_guard, which lets olaclick's own total change through),
/// the total's typmod and constraints, the heap, indexes and AFTER ROW
/// triggers. olaclick's statement-level triggers don't fire: history and the
/// audit of derived rows are olaclick's own business (src/totals.rs), and a
/// shape with any other statement-level or column-specific trigger takes the
/// SQL path (shape.rs). The caller runs this as the table's owner, inside the
/// Totals scope, under READ COMMITTED (a transaction snapshot wants the SQL
/// path's 40001).
///
/// The order's foreign keys are not checked again when the version replaced
/// is `LAST_WRITTEN`: the one the previous call wrote (an ORM adding a
/// second and third line) or the one whose history row was just written (the
/// order's insert, before its first line). PostgreSQL re-checks unchanged
/// keys whenever the replaced version was written by the current
/// transaction, because that version's own checks may still be queued (they
/// would then find it dead and skip it); these ran already, non-deferrably,
/// and only `total` changes. Any other version of this transaction's is
/// re-checked as PostgreSQL would.
pub fn add_to_total(
    order: i64,
    delta: &pgrx::AnyNumeric,
) -> (Total, Option<(TransitionRow, TransitionRow)>) {
    // The found slot is the table's own kind; the tuple is locked before it
    // is read or replaced; the EPQ state lives across the update.
    // SAFETY: Executor documents the set-up; column offsets and types are
    // the shape's, which checked them against the open relation.
    unsafe {
        // Two native writes of one order in one command (an upsert's insert
        // and update, a MERGE, a writable CTE) must see each other as two SQL
        // statements do; the apply worker likewise counts a command per change.
        pg_sys::CommandCounterIncrement();
        let Some((exec, shape)) = Executor::open(Table::Orders) else {
            return (Total::Unsure, None);
        };
        let (rel, estate) = (exec.rel, exec.estate);
        let desc = (*rel).rd_att;
        let natts = (*desc).natts as usize;
        let (id, restaurant, status, total) = (
            shape.column(0),
            shape.column(1),
            shape.column(2),
            shape.column(3),
        );
        let found = pg_sys::table_slot_create(rel, &mut (*estate).es_tupleTable);
        if !find_and_lock(rel, shape.id_index, order, found) {
            exec.finish();
            return (Total::Unsure, None);
        }
        pg_sys::slot_getallattrs(found);
        let value = |i: usize| (!*(*found).tts_isnull.add(i)).then(|| *(*found).tts_values.add(i));
        // The newest version may be another row's if the id was changed.
        if value(id).and_then(|v| i64::from_datum(v, false)) != Some(order) {
            exec.finish();
            return (Total::Unsure, None);
        }
        let replaced = version_of(order, found);
        let label = match value(status) {
            Some(v) => pgrx::enum_helper::lookup_enum_by_oid(pg_sys::Oid::from(v.value() as u32)).0,
            None => String::new(),
        };
        if label != "initiated" {
            let restaurant = value(restaurant)
                .and_then(|v| i32::from_datum(v, false))
                .unwrap_or_default();
            exec.finish();
            return (
                Total::Frozen {
                    restaurant,
                    status: label,
                },
                None,
            );
        }
        let new = exec.slot();
        for i in 0..natts {
            *(*new).tts_values.add(i) = *(*found).tts_values.add(i);
            *(*new).tts_isnull.add(i) = *(*found).tts_isnull.add(i);
        }
        let old_total = value(total)
            .and_then(|v| pgrx::AnyNumeric::from_datum(v, false))
            .unwrap_or_else(|| pgrx::AnyNumeric::from(0));
        let new_total = old_total + delta.clone();
        let new_total = new_total.into_datum().unwrap_or(Datum::from(0));
        // numeric(14,2): 22003 when the sum can't be held, as UPDATE raises.
        *(*new).tts_values.add(total) = shape.coerce(3, new_total);
        *(*new).tts_isnull.add(total) = false;
        pg_sys::ExecStoreVirtualTuple(new);
        let mut epq: pg_sys::EPQState = std::mem::zeroed();
        crate::compat::epq_init(&mut epq, estate);
        (*estate).es_snapshot = pg_sys::GetActiveSnapshot();
        if replaced.is_some() && LAST_WRITTEN.get() == replaced {
            skip_key_checks(exec.rri, None);
        }
        LAST_WRITTEN.set(None);
        pg_sys::AfterTriggerBeginQuery();
        pg_sys::ExecSimpleRelationUpdate(exec.rri, estate, &mut epq, found, new);
        let written = Written {
            order,
            at: pgrx::itemptr::item_pointer_get_both((*new).tts_tid),
            xmin: pg_sys::GetCurrentTransactionId(),
        };
        pg_sys::AfterTriggerEndQuery(estate);
        // Only now: the checks of the version written have run.
        LAST_WRITTEN.set(Some(written));
        pg_sys::EvalPlanQualEnd(&mut epq);
        let rows = crate::gucs::AUDIT_DERIVED.get().then(|| {
            (
                TransitionRow::copy_of(found, desc),
                TransitionRow::copy_of(new, desc),
            )
        });
        exec.finish();
        (Total::Added, rows)
    }
}

/// Finds order `order` through `index` (unique, on id alone) with a fresh
/// MVCC snapshot and locks it FOR NO KEY UPDATE in its newest version, left
/// in `slot`; false if no version is visible or the newest is gone.
///
/// # Safety
/// `rel` is open and locked; `index` is its unique index on id (a bigint,
/// default btree class); `slot` is a slot of the table's own kind.
unsafe fn find_and_lock(
    rel: pg_sys::Relation,
    index: pg_sys::Oid,
    order: i64,
    slot: *mut pg_sys::TupleTableSlot,
) -> bool {
    // Taken after the CommandCounterIncrement: this transaction's own
    // writes, this command's included, are visible.
    let snapshot = pg_sys::RegisterSnapshot(pg_sys::GetLatestSnapshot());
    let index = pg_sys::index_open(index, pg_sys::AccessShareLock as _);
    let scan = super::shape::scan_by_id(rel, index, snapshot, order);
    let visible =
        pg_sys::index_getnext_slot(scan, pg_sys::ScanDirection::ForwardScanDirection, slot);
    pg_sys::index_endscan(scan);
    pg_sys::index_close(index, pg_sys::NoLock as _);
    let locked = visible && {
        let mut tid = (*slot).tts_tid;
        let mut failure: pg_sys::TM_FailureData = std::mem::zeroed();
        // Every table access method has one (the shape is heap's).
        let Some(lock) = (*(*rel).rd_tableam).tuple_lock else {
            pg_sys::UnregisterSnapshot(snapshot);
            return false;
        };
        let result = pg_sys::ffi::pg_guard_ffi_boundary(|| {
            lock(
                rel,
                &mut tid,
                snapshot,
                slot,
                pg_sys::GetCurrentCommandId(false),
                pg_sys::LockTupleMode::LockTupleNoKeyExclusive,
                pg_sys::LockWaitPolicy::LockWaitBlock,
                pg_sys::TUPLE_LOCK_FLAG_FIND_LAST_VERSION as u8,
                &mut failure,
            )
        });
        result == pg_sys::TM_Result::TM_Ok
    };
    pg_sys::UnregisterSnapshot(snapshot);
    locked
}

/// A version of an order: the order, where the version is, and the
/// (sub)transaction that wrote it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Written {
    order: i64,
    at: (pg_sys::BlockNumber, pg_sys::OffsetNumber),
    pub xmin: pg_sys::TransactionId,
}

thread_local! {
    /// The order version of this transaction's whose foreign-key checks are
    /// known to have run, non-deferred, with the referenced rows locked
    /// until commit: the one add_to_total wrote last (its AFTER ROW
    /// triggers fire before it returns), or the one a history row was just
    /// written for. History is written by a statement-level AFTER trigger,
    /// which fires after the row-level checks its statement queued (one
    /// list, fired in order) and after those of nested statements (fired
    /// when each ends); so the order's insert or update has been checked by
    /// then, and its first total update needs no second check.
    pub static LAST_WRITTEN: std::cell::Cell<Option<Written>> = const { std::cell::Cell::new(None) };
}

/// Order `order`'s version in `slot`: where it is and the transaction that
/// wrote it (`None` for a slot that can't tell, which is then re-checked).
///
/// # Safety
/// `slot` holds a tuple read from the table.
pub unsafe fn version_of(order: i64, slot: *mut pg_sys::TupleTableSlot) -> Option<Written> {
    let getsysattr = (*(*slot).tts_ops).getsysattr?;
    let mut isnull = true;
    let xmin = pg_sys::ffi::pg_guard_ffi_boundary(|| {
        getsysattr(slot, pg_sys::MinTransactionIdAttributeNumber, &mut isnull)
    });
    (!isnull).then(|| Written {
        order,
        at: pgrx::itemptr::item_pointer_get_both((*slot).tts_tid),
        xmin: pg_sys::TransactionId::from(xmin.value() as u32),
    })
}

/// Takes the foreign-key checks of the row's keys (to table `to` only, when
/// given) out of `rri`'s trigger list (InitResultRelInfo's copy, this
/// write's alone), unless one of them may be deferred: a deferred check of
/// the version being replaced would find it dead at commit and skip it,
/// leaving the keys unchecked. Returns the constraints whose checks it took
/// out (none when it took none).
///
/// # Safety
/// `rri` was set up by `Executor::open` and is used for one write.
pub unsafe fn skip_key_checks(rri: *mut pg_sys::ResultRelInfo, to: Option<Oid>) -> Vec<Oid> {
    let desc = (*rri).ri_TrigDesc;
    if desc.is_null() {
        return Vec::new();
    }
    let n = (*desc).numtriggers as usize;
    let triggers = std::slice::from_raw_parts_mut((*desc).triggers, n);
    let checks_keys = |t: &pg_sys::Trigger| {
        pg_sys::RI_FKey_trigger_type(t.tgfoid) == pg_sys::RI_TRIGGER_FK as i32
            && to.is_none_or(|to| t.tgconstrrelid == to)
    };
    if triggers.iter().any(|t| checks_keys(t) && t.tgdeferrable) {
        return Vec::new();
    }
    let mut skipped = Vec::new();
    let mut kept = 0;
    for i in 0..n {
        if checks_keys(&triggers[i]) {
            skipped.push(triggers[i].tgconstraint);
        } else {
            triggers[kept] = triggers[i];
            kept += 1;
        }
    }
    (*desc).numtriggers = kept as i32;
    skipped
}
