//! SPI statements prepared once per backend and kept: triggers run the same few
//! statements for every row or statement, and re-planning them each time is
//! most of what makes a naive trigger slow. Every statement is schema-qualified
//! and takes values only as `$n` arguments.

use std::cell::RefCell;
use std::collections::HashMap;

use pgrx::prelude::*;
use pgrx::spi::{self, OwnedPreparedStatement, SpiClient, SpiTupleTable};
use pgrx::{datum::DatumWithOid, PgOid};

pub struct Stmt {
    pub sql: &'static str,
    pub args: &'static [PgBuiltInOids],
}

thread_local! {
    // Keyed by the address of the static `Stmt`. Plans are leaked on purpose:
    // they live as long as the backend, and a `'static` reference stays valid
    // while a nested trigger prepares further statements into the map.
    static KEPT: RefCell<HashMap<usize, &'static OwnedPreparedStatement>> =
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
        let key = self as *const Stmt as usize;
        let plan = match KEPT.with(|kept| kept.borrow().get(&key).copied()) {
            Some(plan) => plan,
            None => {
                let types: Vec<PgOid> = self.args.iter().map(|&oid| PgOid::BuiltIn(oid)).collect();
                let plan: &'static OwnedPreparedStatement =
                    Box::leak(Box::new(client.prepare_mut(self.sql, &types)?.keep()));
                KEPT.with(|kept| kept.borrow_mut().insert(key, plan));
                plan
            }
        };
        f(client.update(plan, None, args)?)
    }
}
