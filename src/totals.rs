//! `orders.total` always equals the sum of `quantity * price` over the
//! order's lines (contract rule 4), and the lines of an order that is no
//! longer `initiated` are frozen (rule 6).
//!
//! Once per statement on `order_details`, the change of each touched order's
//! total is computed from the transition tables and applied as
//! `total = total + delta` with `WHERE status = 'initiated'`, in one UPDATE.
//! A statement that changed the lines of one order (a line, as ORMs send
//! them, or an order's lines in one INSERT) has its delta computed in Rust
//! and applied without SQL under READ COMMITTED (src/native/total.rs
//! add_to_total: the same lookup, lock, newest version and status recheck as
//! the UPDATE; whenever it can't be sure, the UPDATE itself runs), or by a
//! plain kept UPDATE of that one order under REPEATABLE READ and
//! SERIALIZABLE, whose snapshot must fail with 40001 on a concurrent change.
//!
//! Why this is right under concurrency: the UPDATE takes the order's row
//! lock. A second session changing lines of the same order waits for it; when
//! the first commits, READ COMMITTED re-reads the newest row version and adds
//! its delta to the total the first one left, so no change is lost (a
//! recomputed `sum()` would read a stale snapshot and lose one). Under
//! REPEATABLE READ the second fails with 40001 and can retry; it never writes a
//! wrong total. Re-checking `status = 'initiated'` on that newest version also
//! closes the race with a session sending the order: whichever locks the order
//! first wins, and lines that arrive after the order moved are refused.
//!
//! Deadlocks: the touched orders are locked first, in ascending id order,
//! whatever order the statement listed them in; the UPDATE then finds them
//! locked by itself. Line statements alone take only KEY SHARE locks on
//! orders (their foreign key checks), which never conflict with these, so two
//! statements over the same orders wait for each other instead of
//! deadlocking, as they would without olaclick.
//!
//! Orders are read and written as the table owner (src/sandbox.rs): an order
//! hidden from the caller by row-level security (even one the statement hid
//! from itself part way, with `set_config`) is still an order, never taken
//! for a deleted one.

use pgrx::prelude::*;
use pgrx::{pg_sys, AnyNumeric};

use crate::audit;
use crate::error::Error;
use crate::native::{self, TransitionRow};
use crate::plans::{register_transition_tables, Stmt};
use crate::refusal::Refusal;
use crate::restore::restoring;
use crate::sandbox;
use crate::scope::{self, Writer};

/// Applies per-order deltas to totals; returns how many touched orders were
/// not updated (not initiated any more, or deleted).
macro_rules! apply {
    ($deltas:literal) => {
        concat!(
            "WITH d AS (SELECT order_id, sum(delta) AS delta FROM (",
            $deltas,
            ") AS lines GROUP BY order_id),
             locked AS (SELECT o.id FROM olaclick.orders o WHERE o.id IN (SELECT order_id FROM d)
                        ORDER BY o.id FOR NO KEY UPDATE),
             u AS (UPDATE olaclick.orders o SET total = o.total + d.delta FROM d
                   WHERE o.id = d.order_id AND o.status = 'initiated'
                     AND (SELECT count(*) FROM locked) >= 0  -- a one-time filter: every lock first
                   RETURNING o.id)
             SELECT (SELECT count(*) FROM d) - (SELECT count(*) FROM u)"
        )
    };
}

/// Finds a touched order that still exists and is not initiated.
macro_rules! frozen {
    ($orders:literal) => {
        concat!(
            "SELECT o.id, o.restaurant_id, o.status::text FROM olaclick.orders o
             WHERE o.id IN (",
            $orders,
            ") AND o.status <> 'initiated' ORDER BY o.id LIMIT 1"
        )
    };
}

static APPLY_INSERT: Stmt = Stmt {
    sql: apply!("SELECT order_id, quantity * price AS delta FROM new_lines"),
    args: &[],
};
static APPLY_UPDATE: Stmt = Stmt {
    sql: apply!(
        "SELECT order_id, quantity * price AS delta FROM new_lines
         UNION ALL SELECT order_id, -(quantity * price) FROM old_lines"
    ),
    args: &[],
};
static APPLY_DELETE: Stmt = Stmt {
    sql: apply!("SELECT order_id, -(quantity * price) AS delta FROM old_lines"),
    args: &[],
};
static FROZEN_INSERT: Stmt = Stmt {
    sql: frozen!("SELECT order_id FROM new_lines"),
    args: &[],
};
static FROZEN_UPDATE: Stmt = Stmt {
    sql: frozen!("SELECT order_id FROM new_lines UNION SELECT order_id FROM old_lines"),
    args: &[],
};
static FROZEN_DELETE: Stmt = Stmt {
    sql: frozen!("SELECT order_id FROM old_lines"),
    args: &[],
};

/// The lines of one order changed: its delta, without transition-table SQL.
static APPLY_ONE: Stmt = Stmt {
    sql: "UPDATE olaclick.orders SET total = total + $2 WHERE id = $1 AND status = 'initiated' RETURNING id",
    args: &[PgBuiltInOids::INT8OID, PgBuiltInOids::NUMERICOID],
};
static FROZEN_ONE: Stmt = Stmt {
    sql: frozen!("$1"),
    args: &[PgBuiltInOids::INT8OID],
};

/// AFTER INSERT / UPDATE / DELETE ON order_details FOR EACH STATEMENT, with
/// the transition tables new_lines and/or old_lines.
#[pg_trigger]
fn order_details_totals<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, impl WhoAllocated>>, Error> {
    // Restored orders come with their totals.
    if restoring() {
        return Ok(None::<PgHeapTuple<'a, AllocatedByRust>>);
    }
    let (apply, frozen) = match trigger.op()? {
        PgTriggerOperation::Insert => (&APPLY_INSERT, &FROZEN_INSERT),
        PgTriggerOperation::Update => (&APPLY_UPDATE, &FROZEN_UPDATE),
        PgTriggerOperation::Delete => (&APPLY_DELETE, &FROZEN_DELETE),
        _ => return Err(Error::WrongEvent("order_details_totals")),
    };
    let data = trigger.trigger_data();
    // SAFETY: the trigger's own transition tables.
    if unsafe { native::rows(data.tg_oldtable) + native::rows(data.tg_newtable) } == 0 {
        return Ok(None::<PgHeapTuple<'a, AllocatedByRust>>);
    }
    let offender = sandbox::as_owner(data.tg_relation, || {
        // SAFETY: the trigger's own transition tables and relation.
        let one = unsafe { one_order_delta(data) };
        // SAFETY: reads the transaction's isolation level.
        let read_committed = unsafe { pg_sys::XactIsoLevel } < pg_sys::XACT_REPEATABLE_READ as i32;
        if let (Some((order, delta)), true) = (&one, read_committed) {
            let (outcome, rows) = {
                let _totals = scope::enter(Writer::Totals);
                native::add_to_total(*order, delta)
            };
            if let Some((old, new)) = rows {
                audit::log_updated("orders", &old, &new);
            }
            match outcome {
                native::Total::Added => return Ok(None),
                native::Total::Frozen { restaurant, status } => {
                    return Ok(Some((Some(*order), Some(restaurant), Some(status))))
                }
                // Not found as one live order, or a shape of orders the
                // native path doesn't write: the UPDATE below decides.
                native::Total::Unsure => {}
            }
        }
        Spi::connect_mut(|client| {
            if let Some((order, delta)) = one {
                let updated = {
                    let _totals = scope::enter(Writer::Totals);
                    APPLY_ONE.run(client, &[order.into(), delta.into()], |rows| Ok(rows.len()))?
                };
                if updated == 1 {
                    return Ok::<_, Error>(None);
                }
                return Ok(FROZEN_ONE.first(client, &[order.into()], |row| {
                    row.get_three::<i64, i32, String>()
                })?);
            }
            register_transition_tables(trigger);
            let skipped = {
                let _totals = scope::enter(Writer::Totals);
                apply.run(client, &[], |rows| rows.first().get_one::<i64>())?
            };
            if skipped.unwrap_or(0) == 0 {
                return Ok(None);
            }
            // Orders deleted in this transaction (a cascade from orders) are
            // gone and take their lines with them; the rest are frozen.
            Ok(frozen.first(client, &[], |row| row.get_three::<i64, i32, String>())?)
        })
    })?;
    if let Some((Some(order), Some(restaurant), Some(status))) = offender {
        Refusal::lines_frozen(order, restaurant, &status).raise();
    }
    Ok(None)
}

/// When every line the statement changed belongs to one order (what ORMs
/// and an order's lines in one INSERT send): that order and the change of
/// its total, new lines adding and old lines subtracting. `None` as soon as
/// a second order (or a line without an amount) shows up.
///
/// # Safety
/// `data` is the trigger's own TriggerData.
unsafe fn one_order_delta(data: &pg_sys::TriggerData) -> Option<(i64, AnyNumeric)> {
    let mut order = None;
    let mut delta = AnyNumeric::from(0);
    for (table, adds) in [(data.tg_newtable, true), (data.tg_oldtable, false)] {
        let all = TransitionRow::each(table, data.tg_relation, |line| {
            let (Some(id), Some(quantity), Some(price)) = (
                line.get::<i64>(c"order_id"),
                line.get::<i32>(c"quantity"),
                line.get::<AnyNumeric>(c"price"),
            ) else {
                return false;
            };
            if order.is_some_and(|o| o != id) {
                return false;
            }
            order = Some(id);
            let amount = AnyNumeric::from(quantity) * price;
            delta = if adds {
                delta.clone() + amount
            } else {
                delta.clone() - amount
            };
            true
        });
        if !all {
            return None;
        }
    }
    order.map(|o| (o, delta))
}

/// A total written to an order row (by orders_guard, src/status.rs): only
/// olaclick's own total updates may change it, and a new order starts at 0.
/// `old_total` is `None` for an INSERT.
pub fn check_written(
    id: i64,
    restaurant: i32,
    old_total: Option<Option<AnyNumeric>>,
    new_total: Option<AnyNumeric>,
) {
    let was = match old_total {
        None if new_total
            .as_ref()
            .is_some_and(|t| *t != AnyNumeric::from(0)) =>
        {
            "0".to_string()
        }
        Some(old) if old != new_total && !scope::is_open(Writer::Totals) => {
            old.map(|t| t.to_string()).unwrap_or_default()
        }
        _ => return,
    };
    let new_total = new_total
        .map(|t| t.to_string())
        .unwrap_or_else(|| "NULL".into());
    Refusal::total_written(id, restaurant, &was, &new_total).raise()
}

/// BEFORE TRUNCATE ON order_details: TRUNCATE skips row and statement
/// triggers of DELETE, so it would leave totals wrong and empty frozen orders.
#[pg_trigger]
fn order_details_no_truncate<'a>(
    _trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, impl WhoAllocated>>, Error> {
    Refusal::truncate_lines().raise();
    #[allow(unreachable_code)]
    Ok(None::<PgHeapTuple<'a, AllocatedByRust>>)
}
