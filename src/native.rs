//! Appending one row to a table olaclick writes itself (history, audit log)
//! the way INSERT would, without SPI: no parse, no plan, no executor start-up.
//!
//! Why: an SPI statement costs about 65 µs however small, and an order's life
//! written one row per statement (the shape ORMs send) ran a dozen of them.
//! The row is built here and handed to `ExecSimpleRelationInsert`, the routine
//! logical replication applies rows with: BEFORE ROW triggers, constraints
//! (NOT NULL, CHECK), the heap insert, every index (unique ones checked), and
//! AFTER ROW triggers such as foreign-key checks, queued and fired before this
//! returns. Statement-level triggers of the target don't fire: olaclick is the
//! writer they guard against, and the audit of the row is written by the
//! caller. Columns not given take their defaults, as INSERT would give them.
//!
//! Errors (a foreign key, a unique id, a constraint) are PostgreSQL's own,
//! with their SQLSTATE, and abort the statement like any INSERT's.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::CStr;

use pgrx::pg_sys::{self, Datum, Oid};
use pgrx::prelude::*;
use pgrx::{IntoDatum, PgBox, PgList};

/// The tables olaclick appends to itself.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Table {
    History,
    AuditLog,
}

impl Table {
    fn name(self) -> &'static CStr {
        match self {
            Table::History => c"order_status_history",
            Table::AuditLog => c"audit_log",
        }
    }
}

/// What a target needs that takes catalog lookups to find: looked up once
/// per backend, forgotten when the table's relcache entry is invalidated.
#[derive(Clone, Copy)]
struct Target {
    relid: Oid,
    /// The identity sequence behind `id`.
    sequence: Oid,
}

thread_local! {
    static TARGETS: RefCell<HashMap<Table, Target>> = RefCell::new(HashMap::new());
}

/// Forgets what was looked up about `relid` (every table, for InvalidOid).
pub fn forget(relid: Oid) {
    TARGETS.with(|targets| {
        targets
            .borrow_mut()
            .retain(|_, t| relid != Oid::INVALID && t.relid != relid)
    });
}

fn target(table: Table) -> Target {
    if let Some(found) = TARGETS.with(|t| t.borrow().get(&table).copied()) {
        return found;
    }
    // SAFETY: catalog lookups by name; each raises an ERROR rather than
    // returning garbage, and the relation is closed before returning.
    let found = unsafe {
        let schema = pg_sys::get_namespace_oid(c"olaclick".as_ptr(), false);
        let relid = pg_sys::get_relname_relid(table.name().as_ptr(), schema);
        if relid == Oid::INVALID {
            crate::error::refuse(
                PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
                format!("olaclick.{} is missing", table.name().to_string_lossy()),
                "olaclick writes this table itself and can't find it.".into(),
                "Reinstall the extension or restore the table.".into(),
            );
        }
        let rel = pg_sys::table_open(relid, pg_sys::AccessShareLock as _);
        let id = pg_sys::SPI_fnumber((*rel).rd_att, c"id".as_ptr());
        pg_sys::table_close(rel, pg_sys::AccessShareLock as _);
        Target {
            relid,
            sequence: pg_sys::getIdentitySequence(relid, id as _, false),
        }
    };
    TARGETS.with(|t| t.borrow_mut().insert(table, found));
    found
}

/// Inserts one row into `table`, giving the named columns (`None` is NULL);
/// `id` is drawn from its identity sequence and every other column takes its
/// default. Returns the row written, as a composite datum. The caller runs
/// this with the rights of the table's owner.
pub fn insert(table: Table, columns: &[(&CStr, Option<Datum>)]) -> Datum {
    let target = target(table);
    // This follows logical replication's apply of one INSERT
    // (replication/logical/worker.c): an EState with a one-entry range table,
    // a ResultRelInfo for the open relation registered where the trigger
    // machinery looks for it, the table's indexes open around the insert, and
    // the AFTER ROW triggers it queues fired before the EState is freed. On an
    // ERROR, transaction abort releases the relation, the locks and the memory.
    // SAFETY: as just said; the slot's arrays have `natts` entries.
    unsafe {
        let rel = pg_sys::table_open(target.relid, pg_sys::RowExclusiveLock as _);
        let desc = (*rel).rd_att;
        let natts = (*desc).natts as usize;
        let estate = pg_sys::CreateExecutorState();

        let mut rte = PgBox::<pg_sys::RangeTblEntry>::alloc_node(pg_sys::NodeTag::T_RangeTblEntry);
        rte.rtekind = pg_sys::RTEKind::RTE_RELATION;
        rte.relid = target.relid;
        rte.relkind = (*(*rel).rd_rel).relkind;
        rte.rellockmode = pg_sys::RowExclusiveLock as _;
        let mut range_table = PgList::<pg_sys::RangeTblEntry>::new();
        range_table.push(rte.into_pg());
        pg_sys::ExecInitRangeTable(estate, range_table.into_pg());

        let rri =
            PgBox::<pg_sys::ResultRelInfo>::alloc_node(pg_sys::NodeTag::T_ResultRelInfo).into_pg();
        pg_sys::InitResultRelInfo(rri, rel, 1, std::ptr::null_mut(), 0);
        (*estate).es_opened_result_relations =
            pg_sys::lappend((*estate).es_opened_result_relations, rri.cast());
        (*estate).es_output_cid = pg_sys::GetCurrentCommandId(true);

        let slot = pg_sys::ExecInitExtraTupleSlot(estate, desc, &pg_sys::TTSOpsVirtual);
        pg_sys::ExecClearTuple(slot);
        let values = std::slice::from_raw_parts_mut((*slot).tts_values, natts);
        let nulls = std::slice::from_raw_parts_mut((*slot).tts_isnull, natts);
        let mut given = vec![false; natts];
        nulls.fill(true);
        for (name, value) in columns {
            let attno = pg_sys::SPI_fnumber(desc, name.as_ptr());
            let Some(i) = usize::try_from(attno).ok().and_then(|a| a.checked_sub(1)) else {
                crate::error::refuse(
                    PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
                    format!(
                        "olaclick.{} has no column {}",
                        table.name().to_string_lossy(),
                        name.to_string_lossy()
                    ),
                    "olaclick writes this column itself.".into(),
                    "Reinstall the extension or restore the column.".into(),
                );
            };
            given[i] = true;
            if let Some(value) = value {
                values[i] = *value;
                nulls[i] = false;
            }
        }
        let id = pg_sys::SPI_fnumber(desc, c"id".as_ptr()) as usize - 1;
        values[id] = pgrx::direct_function_call_as_datum(
            pg_sys::nextval_oid,
            &[target.sequence.into_datum()],
        )
        .unwrap_or_else(|| pgrx::pg_sys::Datum::from(0));
        nulls[id] = false;
        given[id] = true;
        for i in (0..natts).filter(|&i| !given[i]) {
            let attr = (*desc).attrs.as_slice(natts)[i];
            if attr.attisdropped {
                continue;
            }
            let default = pg_sys::build_column_default(rel, i as i32 + 1);
            if !default.is_null() {
                let state = pg_sys::ExecPrepareExpr(default.cast(), estate);
                let context = pg_sys::MakePerTupleExprContext(estate);
                values[i] = pg_sys::ExecEvalExprSwitchContext(state, context, &mut nulls[i]);
            }
        }
        pg_sys::ExecStoreVirtualTuple(slot);

        pg_sys::ExecOpenIndices(rri, false);
        pg_sys::AfterTriggerBeginQuery();
        pg_sys::ExecSimpleRelationInsert(rri, estate, slot);
        pg_sys::ExecCloseIndices(rri);
        pg_sys::AfterTriggerEndQuery(estate);
        let row = pg_sys::ExecFetchSlotHeapTupleDatum(slot);
        // Not ExecCloseResultRelations: it would close `rel`, which is ours.
        pg_sys::ExecResetTupleTable((*estate).es_tupleTable, false);
        pg_sys::FreeExecutorState(estate);
        pg_sys::table_close(rel, pg_sys::NoLock as _);
        row
    }
}

/// The one row of a statement's transition table, when it has exactly one.
pub struct TransitionRow {
    slot: *mut pg_sys::TupleTableSlot,
    desc: pg_sys::TupleDesc,
}

/// How many rows a trigger's transition table holds (0 when it has none).
///
/// # Safety
/// `table` is null or a transition table valid for this trigger call.
pub unsafe fn rows(table: *mut pg_sys::Tuplestorestate) -> i64 {
    if table.is_null() {
        0
    } else {
        pg_sys::tuplestore_tuple_count(table)
    }
}

impl TransitionRow {
    /// Reads the only row of `table` (a trigger's tg_newtable or
    /// tg_oldtable), shaped like `relation`; `None` unless it has exactly one.
    ///
    /// # Safety
    /// `table` is null or a transition table of the trigger on `relation`,
    /// valid for this trigger call.
    pub unsafe fn only(
        table: *mut pg_sys::Tuplestorestate,
        relation: pg_sys::Relation,
    ) -> Option<TransitionRow> {
        if rows(table) != 1 {
            return None;
        }
        let desc = (*relation).rd_att;
        let slot = pg_sys::MakeSingleTupleTableSlot(desc, &pg_sys::TTSOpsMinimalTuple);
        // Other readers of the store each select a read pointer of their own
        // and rewind it; whichever is active is left rewound here too.
        pg_sys::tuplestore_rescan(table);
        let found = pg_sys::tuplestore_gettupleslot(table, true, true, slot);
        pg_sys::tuplestore_rescan(table);
        if !found {
            pg_sys::ExecDropSingleTupleTableSlot(slot);
            return None;
        }
        pg_sys::slot_getallattrs(slot);
        Some(TransitionRow { slot, desc })
    }

    fn index(&self, name: &CStr) -> Option<usize> {
        // SAFETY: `desc` is the relation's descriptor, valid for this call.
        let attno = unsafe { pg_sys::SPI_fnumber(self.desc, name.as_ptr()) };
        usize::try_from(attno).ok().and_then(|a| a.checked_sub(1))
    }

    /// The raw value of column `name`; `None` for NULL or no such column.
    pub fn datum(&self, name: &CStr) -> Option<Datum> {
        let i = self.index(name)?;
        // SAFETY: slot_getallattrs filled `natts` values and nulls.
        unsafe { (!*(*self.slot).tts_isnull.add(i)).then(|| *(*self.slot).tts_values.add(i)) }
    }

    /// Column `name` as a Rust value.
    pub fn get<T: FromDatum>(&self, name: &CStr) -> Option<T> {
        let i = self.index(name)?;
        // SAFETY: as above; the type is the column's, which the caller names.
        unsafe {
            let attr = (*self.desc).attrs.as_slice((*self.desc).natts as usize)[i];
            T::from_polymorphic_datum(
                *(*self.slot).tts_values.add(i),
                *(*self.slot).tts_isnull.add(i),
                attr.atttypid,
            )
        }
    }

    /// The row as a composite datum of the relation's row type.
    pub fn composite(&self) -> Datum {
        // SAFETY: a filled slot; the datum is palloc'd in the current context.
        unsafe { pg_sys::ExecFetchSlotHeapTupleDatum(self.slot) }
    }

    /// The slot's descriptor and values, for column-by-column comparison.
    pub fn columns(&self) -> impl Iterator<Item = (&CStr, Oid, Option<Datum>)> + '_ {
        // SAFETY: as above.
        unsafe {
            let natts = (*self.desc).natts as usize;
            (0..natts).filter_map(move |i| {
                let attr = &(*self.desc).attrs.as_slice(natts)[i];
                if attr.attisdropped {
                    return None;
                }
                let value =
                    (!*(*self.slot).tts_isnull.add(i)).then(|| *(*self.slot).tts_values.add(i));
                Some((
                    CStr::from_ptr(attr.attname.data.as_ptr()),
                    attr.atttypid,
                    value,
                ))
            })
        }
    }
}

impl Drop for TransitionRow {
    fn drop(&mut self) {
        // On an error, the (sub)transaction abort frees the slot's memory;
        // PostgreSQL is not called while an error unwinds.
        if !std::thread::panicking() {
            // SAFETY: the slot was made by `only` and is dropped once.
            unsafe { pg_sys::ExecDropSingleTupleTableSlot(self.slot) };
        }
    }
}
