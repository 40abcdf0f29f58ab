//! Appending rows to the tables olaclick writes itself (history, audit log):
//! natively through one executor for a statement's rows, or, for a table
//! whose shape the native path doesn't write, by one kept INSERT per row.

use std::rc::Rc;

use pgrx::datum::DatumWithOid;
use pgrx::pg_sys::{self, Datum, Oid};
use pgrx::prelude::*;
use pgrx::IntoDatum;

use super::executor::Executor;
use super::shape::Shape;
use super::{order_key, shape, Table, Type};
use crate::plans::{run_kept, Key};
use crate::refusal::Refusal;
use crate::scope::{self, Writer};

/// The SQL path's INSERT of one row, with `Table::columns()` as arguments.
fn insert_sql(table: Table) -> &'static str {
    match table {
        Table::History => {
            "INSERT INTO olaclick.order_status_history
               (order_id, restaurant_id, status, changed_at, created_by_user_id)
             VALUES ($1, $2, CAST($3 AS olaclick.order_status), $4, $5)"
        }
        Table::AuditLog => {
            "INSERT INTO olaclick.audit_log
               (restaurant_id, table_name, op, old_row, new_row, changed_cols, actor_user_id, db_role, txid, at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        }
        Table::Orders => unreachable!("orders are not appended to"),
    }
}

/// The SQL path's argument type for a column olaclick writes as `typ`: an
/// order status goes as its label and is cast in the statement.
fn sql_type(typ: Type) -> PgBuiltInOids {
    match typ {
        Type::Int4 => PgBuiltInOids::INT4OID,
        Type::Int8 => PgBuiltInOids::INT8OID,
        Type::Text | Type::OrderStatus => PgBuiltInOids::TEXTOID,
        Type::TextArray => PgBuiltInOids::TEXTARRAYOID,
        Type::Jsonb => PgBuiltInOids::JSONBOID,
        Type::Numeric => PgBuiltInOids::NUMERICOID,
        Type::Timestamptz => PgBuiltInOids::TIMESTAMPTZOID,
    }
}

/// Inserts one row into `table`: `Appender::append` with an appender of its
/// own.
pub fn insert(table: Table, values: &[Option<Datum>]) -> Option<Datum> {
    let mut appender = Appender::open(table);
    let row = appender.append(values);
    appender.finish();
    row
}

/// Appends rows to one table olaclick writes itself: one row, or a small
/// statement's rows.
pub struct Appender {
    table: Table,
    /// `None`: the table's shape takes the SQL path.
    native: Option<Native>,
}

struct Native {
    exec: Executor,
    shape: Rc<Shape>,
    /// The row being written, made once.
    slot: *mut pg_sys::TupleTableSlot,
    /// Per column: its default, once compiled.
    defaults: Vec<Option<Option<*mut pg_sys::ExprState>>>,
    /// History: olaclick's own key to orders, the orders table and its
    /// shape, the key's check taken out of the trigger list and made by
    /// `order_key`.
    order_key: Option<(Oid, Oid, Rc<Shape>)>,
}

impl Appender {
    pub fn open(table: Table) -> Appender {
        // SAFETY: Executor documents the set-up; `finish` closes it.
        let native = unsafe {
            Executor::open(table).map(|(exec, shape)| {
                let slot = exec.slot();
                let order_key = if table == Table::History {
                    orders_shape().and_then(|(orders, shape)| {
                        order_key::take_out(exec.rri, orders).map(|key| (key, orders, shape))
                    })
                } else {
                    None
                };
                let natts = (*(*exec.rel).rd_att).natts as usize;
                Native {
                    exec,
                    shape,
                    slot,
                    defaults: vec![None; natts],
                    order_key,
                }
            })
        };
        Appender { table, native }
    }

    /// Appends one row, given the values of `Table::columns()` in order
    /// (`None` is NULL), each a datum of the type listed there; `id` is drawn
    /// from its identity sequence and every other column takes its default.
    /// Returns the row written natively, as a composite datum, for the
    /// caller to audit; `None` when it was written by SQL, whose own
    /// triggers audited it. The caller runs this with the rights of the
    /// table's owner. A history row is written only for an order version the
    /// caller's statement wrote: its key to that order is checked by
    /// `order_key`, the others by PostgreSQL.
    pub fn append(&mut self, values: &[Option<Datum>]) -> Option<Datum> {
        let columns = self.table.columns();
        assert_eq!(values.len(), columns.len(), "one value per column written");
        match &mut self.native {
            // SAFETY: the values are datums of the listed types (the caller's
            // word), which `shape` found to be the columns' types.
            Some(native) => match unsafe { native.append(self.table, values) } {
                Some(row) => Some(row),
                // A partition the native path doesn't write: this row by SQL.
                None => {
                    append_sql(self.table, values);
                    None
                }
            },
            None => {
                append_sql(self.table, values);
                None
            }
        }
    }

    /// Frees the executor state; the table stays locked until commit.
    pub fn finish(self) {
        if let Some(native) = self.native {
            // SAFETY: no slot or datum of the executor is used afterwards
            // (rows returned were copied).
            unsafe { native.exec.finish() }
        }
    }
}

/// olaclick.orders and its shape, if the native path reads it.
///
/// # Safety
/// Opens and locks orders (AccessShareLock, until commit).
unsafe fn orders_shape() -> Option<(Oid, Rc<Shape>)> {
    let orders = shape::relid(Table::Orders);
    let rel = pg_sys::table_open(orders, pg_sys::AccessShareLock as _);
    let found = shape::of(Table::Orders, rel);
    pg_sys::table_close(rel, pg_sys::NoLock as _);
    found.map(|s| (orders, s))
}

/// Appends one row by SQL: PostgreSQL coerces, routes and triggers as for
/// any INSERT.
fn append_sql(table: Table, values: &[Option<Datum>]) {
    let columns = table.columns();
    let types: Vec<PgBuiltInOids> = columns.iter().map(|(_, t)| sql_type(*t)).collect();
    let args: Vec<DatumWithOid> = columns
        .iter()
        .zip(values)
        .map(|((_, typ), value)| {
            let oid = sql_type(*typ).value();
            match (typ, value) {
                (_, None) => DatumWithOid::null_oid(oid),
                (Type::OrderStatus, Some(value)) => {
                    let label =
                        pgrx::enum_helper::lookup_enum_by_oid(Oid::from(value.value() as u32)).0;
                    // SAFETY: a text datum made from the label.
                    unsafe { DatumWithOid::new(label, oid) }
                }
                // SAFETY: a datum of the column's listed type, the caller's word.
                (_, Some(value)) => unsafe { DatumWithOid::new(*value, oid) },
            }
        })
        .collect();
    let writer = match table {
        Table::History => Writer::History,
        _ => Writer::Audit,
    };
    let _scope = scope::enter(writer);
    // Kept under an address of its own per table.
    static KEYS: [u8; 2] = [0, 0];
    let key = Key::Static(&KEYS[(table == Table::AuditLog) as usize] as *const u8 as usize);
    let result = Spi::connect_mut(|client| {
        run_kept(key, insert_sql(table), &types, client, &args, |_| Ok(()))
    });
    if let Err(e) = result {
        Refusal::internal(
            format!(
                "olaclick could not write olaclick.{}: {e}",
                table.name().to_string_lossy()
            ),
            "The SQL path of one of olaclick's own writes failed inside SPI.",
        )
        .raise();
    }
}

impl Native {
    /// The row written, or `None` when it goes to a partition the native
    /// path doesn't write (nothing written).
    ///
    /// # Safety
    /// As `Appender::append` says of `values`.
    unsafe fn append(&mut self, table: Table, values: &[Option<Datum>]) -> Option<Datum> {
        // The slot's arrays have `natts` entries; the queued AFTER ROW
        // triggers fire before this returns; the row returned is copied into
        // the caller's memory before the per-row memory is reused.
        let (rel, estate, slot) = (self.exec.rel, self.exec.estate, self.slot);
        let desc = (*rel).rd_att;
        let natts = (*desc).natts as usize;
        let context = pg_sys::MakePerTupleExprContext(estate);
        pg_sys::MemoryContextReset((*context).ecxt_per_tuple_memory);
        pg_sys::ExecClearTuple(slot);
        let row = std::slice::from_raw_parts_mut((*slot).tts_values, natts);
        let nulls = std::slice::from_raw_parts_mut((*slot).tts_isnull, natts);
        nulls.fill(true);
        let mut given = vec![false; natts];
        for (i, value) in values.iter().enumerate() {
            let at = self.shape.column(i);
            given[at] = true;
            if let Some(value) = value {
                row[at] = self.shape.coerce(i, *value);
                nulls[at] = false;
            }
        }
        // `id` is drawn once the row's partition is known to be written
        // here: a row the SQL path writes draws its own, as it would alone.
        let id = self.shape.id;
        given[id] = true;
        for i in (0..natts).filter(|&i| !given[i]) {
            let attr = crate::compat::attrs(desc)[i];
            if attr.attisdropped {
                continue;
            }
            if let Some(state) = self.default(i) {
                row[i] = pg_sys::ExecEvalExprSwitchContext(state, context, &mut nulls[i]);
            }
        }
        pg_sys::ExecStoreVirtualTuple(slot);
        let target = self.exec.target(slot)?;
        // A virtual slot's arrays are its row: set in place.
        row[id] = pgrx::direct_function_call_as_datum(
            pg_sys::nextval_oid,
            &[self.shape.sequence.into_datum()],
        )
        .unwrap_or_else(|| Datum::from(0));
        nulls[id] = false;
        pg_sys::AfterTriggerBeginQuery();
        pg_sys::ExecSimpleRelationInsert(target, estate, slot);
        pg_sys::AfterTriggerEndQuery(estate);
        if let Some((key, orders, orders_shape)) = &self.order_key {
            // History's columns: order_id, restaurant_id, ...
            let value = |i: usize| {
                let at = self.shape.column(i);
                (!nulls[at]).then(|| row[at])
            };
            debug_assert_eq!(table.columns()[1].0, c"restaurant_id");
            order_key::check(rel, *key, *orders, orders_shape, value(1), value(0));
        }
        Some(pg_sys::ExecFetchSlotHeapTupleDatum(slot))
    }

    /// Column `i`'s default, compiled once for this appender (`None`
    /// without one).
    ///
    /// # Safety
    /// `i` is one of the relation's columns.
    unsafe fn default(&mut self, i: usize) -> Option<*mut pg_sys::ExprState> {
        if let Some(compiled) = *self.defaults.get(i)? {
            return compiled;
        }
        let tree = *self.exec.planned.defaults.get(i)?;
        let compiled = (!tree.is_null()).then(|| {
            let old = pg_sys::MemoryContextSwitchTo((*self.exec.estate).es_query_cxt);
            let state = pg_sys::ExecInitExpr(tree, std::ptr::null_mut());
            pg_sys::MemoryContextSwitchTo(old);
            state
        });
        self.defaults[i] = Some(compiled);
        compiled
    }
}
