//! History and audit rows are never updated or deleted by hand (contract
//! rule 7), for every role, superuser included; history is written only by
//! olaclick (rule 3) and goes away only with its order.
//!
//! All statement-level: a refusal costs nothing per row.

use pgrx::prelude::*;

use crate::error::Error;
use crate::plans::{register_transition_tables, Stmt};
use crate::refusal::Refusal;
use crate::restore::restoring;
use crate::sandbox;
use crate::scope::{self, Writer};

fn refuse_write(table: &str, action: &str) -> ! {
    Refusal::append_only(table, action).raise()
}

/// BEFORE INSERT FOR EACH STATEMENT on order_status_history, audit_log and
/// each of the log's partitions (sql/partitions.sql): only olaclick writes
/// them (and a restore puts them back). Rows moved between the log's
/// partitions by its upkeep are olaclick's too.
#[pg_trigger]
fn insert_guard<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, impl WhoAllocated>>, Error> {
    let table = trigger.table_name()?;
    let allowed = if table == "order_status_history" {
        scope::is_open(Writer::History)
    } else {
        scope::is_open(Writer::Audit) || scope::is_open(Writer::AuditPurge)
    };
    if !allowed && !restoring() {
        refuse_write(&table, "insert");
    }
    Ok(None::<PgHeapTuple<'a, AllocatedByRust>>)
}

/// BEFORE UPDATE OR DELETE OR TRUNCATE FOR EACH STATEMENT on audit_log and
/// its partitions, and BEFORE UPDATE OR TRUNCATE on order_status_history (whose deletes are
/// judged by `history_delete_guard`).
#[pg_trigger]
fn append_only_guard<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, impl WhoAllocated>>, Error> {
    let table = trigger.table_name()?;
    let action = match trigger.op()? {
        PgTriggerOperation::Update => "update",
        PgTriggerOperation::Delete if scope::is_open(Writer::AuditPurge) => {
            return Ok(None::<PgHeapTuple<'a, AllocatedByRust>>)
        }
        PgTriggerOperation::Delete => "delete",
        PgTriggerOperation::Truncate => "truncate",
        PgTriggerOperation::Insert => {
            return Err::<Option<PgHeapTuple<'a, AllocatedByRust>>, _>(Error::WrongEvent(
                "append_only_guard",
            ))
        }
    };
    refuse_write(&table, action)
}

/// History rows deleted while their order is still there.
static ORPHANED_HISTORY: Stmt = Stmt {
    sql: "SELECT h.order_id FROM old_history h
          WHERE EXISTS (SELECT 1 FROM olaclick.orders o WHERE o.id = h.order_id) LIMIT 1",
    args: &[],
};

/// AFTER DELETE ON order_status_history FOR EACH STATEMENT, with the
/// transition table old_history. Deleting an order cascades to its history
/// after the order row is gone from view; any other delete finds the order.
#[pg_trigger]
fn history_delete_guard<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, impl WhoAllocated>>, Error> {
    // As the owner: an order hidden from the caller still exists.
    let order = sandbox::as_owner(trigger.trigger_data().tg_relation, || {
        Spi::connect_mut(|client| {
            register_transition_tables(trigger);
            ORPHANED_HISTORY
                .first(client, &[], |row| row.get_one::<i64>())
                .map(Option::flatten)
        })
    })?;
    if let Some(order) = order {
        Refusal::history_of_live_order(order).raise();
    }
    Ok(None::<PgHeapTuple<'a, AllocatedByRust>>)
}
