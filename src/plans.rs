//! SPI statements prepared once per backend and kept: triggers run the same few
//! statements for every row or statement, and re-planning them each time is
//! most of what makes a naive trigger slow. Every statement is schema-qualified
//! and takes values only as `$n` arguments.

use std::cell::RefCell;
use std::collections::HashMap;

use crate::refusal::Refusal;
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::spi::{self, OwnedPreparedStatement, SpiClient, SpiTupleTable};
use pgrx::{datum::DatumWithOid, PgOid};

/// A statement with a fixed text, kept under its own address.
pub struct Stmt {
    pub sql: &'static str,
    pub args: &'static [PgBuiltInOids],
}

/// Which kept plan: a static statement, or one statement text prepared
/// separately per table (its transition tables have that table's row type).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub enum Key {
    Static(usize),
    PerTable(u32, u8),
}

thread_local! {
    // Plans are leaked on purpose: they live as long as the backend, and a
    // `'static` reference stays valid while a nested trigger prepares more.
    static KEPT: RefCell<HashMap<Key, &'static OwnedPreparedStatement>> =
        RefCell::new(HashMap::new());
}

impl Stmt {
    /// Runs the statement read-write, so it sees the latest committed rows and
    /// this transaction's own changes, and hands the result to `f`.
    pub fn run<'conn, R>(
        &'static self,
        client: &mut SpiClient<'conn>,
        args: &[DatumWithOid<'_>],
        f: impl FnOnce(SpiTupleTable<'conn>) -> spi::Result<R>,
    ) -> spi::Result<R> {
        run_kept(
            Key::Static(self as *const Stmt as usize),
            self.sql,
            self.args,
            client,
            args,
            f,
        )
    }

    /// Runs the statement and reads its first row with `get`; `None` when it
    /// returns no row (pgrx's `first()` is an error on an empty result).
    pub fn first<'conn, T>(
        &'static self,
        client: &mut SpiClient<'conn>,
        args: &[DatumWithOid<'_>],
        get: impl FnOnce(SpiTupleTable<'conn>) -> spi::Result<T>,
    ) -> spi::Result<Option<T>> {
        self.run(client, args, |rows| {
            if rows.is_empty() {
                Ok(None)
            } else {
                get(rows.first()).map(Some)
            }
        })
    }
}

/// Runs `sql`, prepared and kept under `key` the first time.
pub fn run_kept<'conn, R>(
    key: Key,
    sql: &str,
    types: &[PgBuiltInOids],
    client: &mut SpiClient<'conn>,
    args: &[DatumWithOid<'_>],
    f: impl FnOnce(SpiTupleTable<'conn>) -> spi::Result<R>,
) -> spi::Result<R> {
    // Parsed and run with a pinned search_path (see sandbox.rs); the plan
    // cache re-parses a kept plan whenever the path it was made under changes.
    crate::sandbox::pinned(|| {
        let plan = match KEPT.with(|kept| kept.borrow().get(&key).copied()) {
            Some(plan) => plan,
            None => {
                let types: Vec<PgOid> = types.iter().map(|&oid| PgOid::BuiltIn(oid)).collect();
                let plan: &'static OwnedPreparedStatement =
                    Box::leak(Box::new(client.prepare_mut(sql, &types)?.keep()));
                KEPT.with(|kept| kept.borrow_mut().insert(key, plan));
                plan
            }
        };
        f(client.update(plan, None, args)?)
    })
}

/// Makes the trigger's transition tables visible, by name, to SPI statements.
pub fn register_transition_tables(trigger: &pgrx::PgTrigger) {
    let data = trigger.trigger_data() as *const pg_sys::TriggerData as *mut pg_sys::TriggerData;
    // SAFETY: called inside Spi::connect, with the trigger's own TriggerData.
    let rc = unsafe { pg_sys::SPI_register_trigger_data(data) };
    if rc < 0 {
        Refusal::internal(
            format!("olaclick could not see the trigger's transition tables (SPI code {rc})"),
            "SPI_register_trigger_data failed inside an olaclick trigger.",
        )
        .raise();
    }
}
