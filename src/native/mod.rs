//! Rows olaclick writes itself (history, audit log, one order's total),
//! written the way INSERT and UPDATE would write them, without SQL: no
//! parse, no plan, no executor start-up per row.
//!
//! Why: an SPI statement costs about 65 µs however small, and an order's life
//! written one row per statement (the shape ORMs send) ran a dozen of them.
//! The routines are the ones logical replication applies rows with
//! (`ExecSimpleRelationInsert`/`Update`: BEFORE ROW triggers, constraints,
//! the heap, every index, AFTER ROW triggers such as foreign-key checks).
//!
//! The native path is an optimisation, never a different semantics: it
//! writes a table only while the table has the shape it was built for
//! (`shape.rs`, decided once per relcache entry); any other shape, and any
//! case it can't be sure of, takes the SQL path, which writes the same rows.
//!
//! - `shape.rs`: which table shapes are written natively; column offsets.
//! - `executor.rs`: the executor state of one write, and the planned CHECK
//!   constraints and defaults kept per backend.
//! - `appender.rs`: appending history and audit rows (or their SQL).
//! - `total.rs`: moving one order's total, as `UPDATE ... WHERE id =` does.
//! - `order_key.rs`: a history row's key to its order, checked without SQL.
//! - `transition.rs`: reading the rows of a trigger's transition tables.

mod appender;
mod executor;
mod order_key;
mod shape;
mod total;
mod transition;

use std::ffi::CStr;

use pgrx::pg_sys::{self, Datum, Oid};
use pgrx::prelude::*;

pub use appender::{insert, Appender};
pub use total::{add_to_total, Total};
pub use transition::{rows, TransitionRow};

/// The tables olaclick writes itself.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Table {
    History,
    AuditLog,
    Orders,
}

/// The type a column was created with (sql/schema.sql).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Type {
    Int4,
    Int8,
    Text,
    TextArray,
    Jsonb,
    Numeric,
    Timestamptz,
    /// olaclick.order_status
    OrderStatus,
}

impl Type {
    /// The type's oid (olaclick.order_status looked up in olaclick's schema).
    pub fn oid(self) -> Oid {
        match self {
            Type::Int4 => pg_sys::INT4OID,
            Type::Int8 => pg_sys::INT8OID,
            Type::Text => pg_sys::TEXTOID,
            Type::TextArray => pg_sys::TEXTARRAYOID,
            Type::Jsonb => pg_sys::JSONBOID,
            Type::Numeric => pg_sys::NUMERICOID,
            Type::Timestamptz => pg_sys::TIMESTAMPTZOID,
            Type::OrderStatus => shape::order_status_type(),
        }
    }
}

impl Table {
    fn name(self) -> &'static CStr {
        match self {
            Table::History => c"order_status_history",
            Table::AuditLog => c"audit_log",
            Table::Orders => c"orders",
        }
    }

    /// The columns olaclick writes (or, for orders, reads and writes), with
    /// the types it writes them as, in the order callers give values.
    pub fn columns(self) -> &'static [(&'static CStr, Type)] {
        match self {
            Table::History => &[
                (c"order_id", Type::Int8),
                (c"restaurant_id", Type::Int4),
                (c"status", Type::OrderStatus),
                (c"changed_at", Type::Timestamptz),
                (c"created_by_user_id", Type::Int4),
            ],
            Table::AuditLog => &[
                (c"restaurant_id", Type::Int4),
                (c"table_name", Type::Text),
                (c"op", Type::Text),
                (c"old_row", Type::Jsonb),
                (c"new_row", Type::Jsonb),
                (c"changed_cols", Type::TextArray),
                (c"actor_user_id", Type::Int4),
                (c"db_role", Type::Text),
                (c"txid", Type::Int8),
                (c"at", Type::Timestamptz),
            ],
            Table::Orders => &[
                (c"id", Type::Int8),
                (c"restaurant_id", Type::Int4),
                (c"status", Type::OrderStatus),
                (c"total", Type::Numeric),
            ],
        }
    }
}

/// olaclick.orders' oid (42P01 if it is missing).
pub fn orders_relid() -> Oid {
    shape::relid(Table::Orders)
}

/// Registers, once per backend in `_PG_init`, what keeps the kept
/// decisions, plans and tenants in step with the catalog.
pub fn init() {
    // SAFETY: plain function pointers, valid for the life of the library.
    unsafe {
        pg_sys::CacheRegisterRelcacheCallback(Some(on_relcache_invalidation), Datum::from(0));
        pg_sys::CacheRegisterSyscacheCallback(
            pg_sys::SysCacheIdentifier::PROCOID as i32,
            Some(on_function_invalidation),
            Datum::from(0),
        );
    }
}

/// A table's relcache entry was invalidated (any DDL on it, its indexes or
/// triggers; InvalidOid: every table): what was decided, planned or
/// remembered about it is forgotten. Frees memory, reads nothing.
///
/// # Safety
/// Called by PostgreSQL's invalidation machinery with a relation oid.
#[pg_guard]
unsafe extern "C-unwind" fn on_relcache_invalidation(_arg: Datum, relid: Oid) {
    shape::forget(relid);
    executor::forget(relid);
    crate::lines::forget_tenants(relid);
}

/// A function changed (CREATE OR REPLACE): planned CHECK constraints and
/// defaults may call it, inlined with its old body, so every table's are
/// planned again, as PostgreSQL's plan cache re-plans queries that call it.
///
/// # Safety
/// Called by PostgreSQL's invalidation machinery.
#[pg_guard]
unsafe extern "C-unwind" fn on_function_invalidation(_arg: Datum, _cache: i32, _hash: u32) {
    executor::forget(Oid::INVALID);
}
