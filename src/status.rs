//! Order status: the state machine (contract rules 1 and 2) and its history
//! (rule 3). The same row trigger hands direct writes of the total to
//! src/totals.rs (rule 4) and notes the change for src/notify.rs.
//!
//! The machine is a BEFORE ROW trigger in pure Rust: no SPI per row. When two
//! sessions move the same order, the second waits for the first's row lock and
//! PostgreSQL hands this trigger the newest row version, so the move is judged
//! against the status that won (under REPEATABLE READ the second fails with
//! 40001 instead). History is written once per statement, from the transition
//! tables, in one kept INSERT ... SELECT.
//!
//! `changed_at` is the clock when the history is written, not the statement's
//! start: a statement (a function, a DO block) that started before another
//! session's order was committed can still move that order, and its history
//! must not be dated before the order's own `initiated`.

use pgrx::prelude::*;
use pgrx::{pg_sys, AnyNumeric, IntoDatum};

use crate::audit;
use crate::error::{column, Error};
use crate::gucs;
use crate::lines;
use crate::native::{self, TransitionRow};
use crate::notify;
use crate::order_status::OrderStatus;
use crate::plans::{register_transition_tables, Stmt};
use crate::refusal::Refusal;
use crate::restore::restoring;
use crate::sandbox;
use crate::scope::{self, Writer};
use crate::totals;

/// BEFORE INSERT OR UPDATE OR DELETE ON orders FOR EACH ROW. Also notes the
/// change for the cache invalidation sent at commit (src/notify.rs).
#[pg_trigger]
fn orders_guard<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, impl WhoAllocated>>, Error> {
    if restoring() {
        return Ok(trigger.new().or(trigger.old()));
    }
    let data = trigger.trigger_data();
    let Some(new) = trigger.new() else {
        let old = trigger.old().ok_or(Error::WrongEvent("orders_guard"))?;
        if let (Some(restaurant), Some(id)) = (
            column::<i32, _>(&old, "orders", "restaurant_id"),
            column::<i64, _>(&old, "orders", "id"),
        ) {
            // SAFETY: the trigger's own relation and tuple, valid for this call.
            let status = unsafe { status_of(data.tg_relation, data.tg_trigtuple, id, restaurant) };
            notify::touch(restaurant, id, &[status]);
        }
        return Ok(Some(old));
    };
    let id = column::<i64, _>(&new, "orders", "id").unwrap_or_default();
    let restaurant = column::<i32, _>(&new, "orders", "restaurant_id").unwrap_or_default();
    let new_total = column::<AnyNumeric, _>(&new, "orders", "total");
    // On INSERT the row is tg_trigtuple; on UPDATE tg_trigtuple is the old row
    // (the newest version, after waiting for its lock) and tg_newtuple the new.
    let is_update = trigger.old().is_some();
    let new_tuple = if is_update {
        data.tg_newtuple
    } else {
        data.tg_trigtuple
    };
    // SAFETY: the trigger's own relation and tuples, valid for this call.
    let new_status = unsafe { status_of(data.tg_relation, new_tuple, id, restaurant) };

    match trigger.old() {
        None => {
            if new_status != OrderStatus::Initiated {
                Refusal::new_order_not_initiated(id, restaurant, &new_status.to_string()).raise();
            }
            totals::check_written(id, restaurant, None, new_total);
            notify::touch(restaurant, id, &[new_status]);
        }
        Some(old) => {
            // SAFETY: as above.
            let old_status =
                unsafe { status_of(data.tg_relation, data.tg_trigtuple, id, restaurant) };
            if old_status != new_status && old_status.next() != Some(new_status) {
                Refusal::status_move(
                    id,
                    restaurant,
                    &old_status.to_string(),
                    &new_status.to_string(),
                    old_status.next().map(|n| n.to_string()).as_deref(),
                )
                .raise();
            }
            let old_total = column::<AnyNumeric, _>(&old, "orders", "total");
            totals::check_written(id, restaurant, Some(old_total), new_total);
            notify::touch(restaurant, id, &[old_status, new_status]);
        }
    }
    Ok(Some(new))
}

/// The `status` column of `tuple`.
///
/// # Safety
/// `relation` and `tuple` must be a valid relation of olaclick.orders and one
/// of its tuples.
unsafe fn status_of(
    relation: pg_sys::Relation,
    tuple: pg_sys::HeapTuple,
    id: i64,
    restaurant: i32,
) -> OrderStatus {
    let tupdesc = (*relation).rd_att;
    let attno = pg_sys::SPI_fnumber(tupdesc, c"status".as_ptr());
    let Some(attno) = usize::try_from(attno)
        .ok()
        .and_then(std::num::NonZeroUsize::new)
    else {
        Refusal::column_missing("orders", "status").raise();
    };
    let attr = crate::compat::attrs(tupdesc)[attno.get() - 1];
    if attr.atttypid != crate::native::Type::OrderStatus.oid() {
        Refusal::column_type("orders", "status", "not olaclick.order_status").raise();
    }
    let datum = pgrx::heap_getattr_raw(tuple, attno, tupdesc);
    match datum {
        Some(datum) => {
            let label =
                pgrx::enum_helper::lookup_enum_by_oid(pg_sys::Oid::from(datum.value() as u32)).0;
            // The enum and OrderStatus are checked to agree (src/order_status.rs).
            OrderStatus::from_label(&label)
                .unwrap_or_else(|| Refusal::unknown_status(id, restaurant, &label).raise())
        }
        // The NOT NULL constraint is checked after BEFORE triggers; this one
        // needs a status to judge, so it reports the NULL itself.
        None => Refusal::null_status(id, restaurant).raise(),
    }
}

static HISTORY_OF_INSERT: Stmt = Stmt {
    sql: "INSERT INTO olaclick.order_status_history (order_id, restaurant_id, status, changed_at, created_by_user_id)
          SELECT id, restaurant_id, status, $2, $1 FROM new_orders ORDER BY id",
    args: &[PgBuiltInOids::INT4OID, PgBuiltInOids::TIMESTAMPTZOID],
};

static HISTORY_OF_UPDATE: Stmt = Stmt {
    sql: "INSERT INTO olaclick.order_status_history (order_id, restaurant_id, status, changed_at, created_by_user_id)
          SELECT n.id, n.restaurant_id, n.status, $2, $1
          FROM new_orders n JOIN old_orders o ON o.id = n.id
          WHERE n.status <> o.status ORDER BY n.id",
    args: &[PgBuiltInOids::INT4OID, PgBuiltInOids::TIMESTAMPTZOID],
};

/// AFTER INSERT and AFTER UPDATE ON orders FOR EACH STATEMENT, with the
/// transition tables new_orders (and old_orders). One order: its history row
/// is appended natively; more: one INSERT ... SELECT.
#[pg_trigger]
fn orders_history<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, impl WhoAllocated>>, Error> {
    // The totals trigger never changes a status; restored history comes with
    // the dump.
    if scope::is_open(Writer::Totals) || restoring() {
        return Ok(None::<PgHeapTuple<'a, AllocatedByRust>>);
    }
    let (stmt, is_insert) = match trigger.op()? {
        PgTriggerOperation::Insert => (&HISTORY_OF_INSERT, true),
        PgTriggerOperation::Update => (&HISTORY_OF_UPDATE, false),
        _ => return Err(Error::WrongEvent("orders_history")),
    };
    let actor = gucs::user_id();
    // SAFETY: reads the clock; no arguments.
    let now = TimestampWithTimeZone::try_from(unsafe { pg_sys::GetCurrentTimestamp() })?;
    let data = trigger.trigger_data();
    // SAFETY: the trigger's own transition table.
    if unsafe { native::rows(data.tg_newtable) } == 0 {
        return Ok(None);
    }
    let _history = scope::enter(Writer::History);
    sandbox::as_owner(data.tg_relation, || {
        // SAFETY: the trigger's own transition tables and relation.
        let (old, new) = unsafe {
            (
                TransitionRow::only(data.tg_oldtable, data.tg_relation),
                TransitionRow::only(data.tg_newtable, data.tg_relation),
            )
        };
        // One order: its history row natively, when the order's columns
        // have the types history takes; otherwise (and for more orders)
        // the statement's rows in one INSERT ... SELECT.
        let one = match (is_insert, &old, &new) {
            (true, _, Some(new)) => {
                // Inserted for good (this statement's AFTER trigger): its
                // tenant can be remembered for its lines.
                if let (Some(id), Some(restaurant)) =
                    (new.get::<i64>(c"id"), new.integer(c"restaurant_id"))
                {
                    // SAFETY: the trigger's own relation.
                    lines::remember_tenant(unsafe { (*data.tg_relation).rd_id }, id, restaurant);
                }
                Some(new)
            }
            (false, Some(old), Some(new)) => {
                // Enum values compare by their oid.
                let status = native::Type::OrderStatus.oid();
                match (old.typed(c"status", status), new.typed(c"status", status)) {
                    (Ok(a), Ok(b)) if a.map(|d| d.value()) == b.map(|d| d.value()) => {
                        return Ok(());
                    }
                    (Ok(_), Ok(_)) => Some(new),
                    _ => None,
                }
            }
            _ => None,
        };
        if let Some(Ok(())) = one.map(|new| append_history(new, actor, now)) {
            return Ok(());
        }
        Spi::connect_mut(|client| {
            register_transition_tables(trigger);
            stmt.run(client, &[actor.into(), now.into()], |_| Ok(()))
        })
    })?;
    Ok(None)
}

/// Appends the history row of one order, as HISTORY_OF_INSERT and
/// HISTORY_OF_UPDATE would; and its audit row if derived rows are audited.
/// `Err` (nothing written) when the order's columns don't have the types
/// history is written with: the caller's SQL then converts them.
fn append_history(
    order: &TransitionRow,
    actor: Option<i32>,
    at: TimestampWithTimeZone,
) -> Result<(), ()> {
    let values = [
        order.typed(c"id", pg_sys::INT8OID)?,
        order.typed(c"restaurant_id", pg_sys::INT4OID)?,
        order.typed(c"status", native::Type::OrderStatus.oid())?,
        at.into_datum(),
        actor.into_datum(),
    ];
    let row = native::insert(native::Table::History, &values);
    if let (Some(row), true) = (row, gucs::AUDIT_DERIVED.get()) {
        audit::log_inserted("order_status_history", row, order.integer(c"restaurant_id"));
    }
    Ok(())
}
