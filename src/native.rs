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
use std::rc::Rc;

use pgrx::pg_sys::{self, Datum, Oid};
use pgrx::prelude::*;
use pgrx::{IntoDatum, PgBox, PgList};

/// The tables olaclick appends to itself.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Table {
    History,
    AuditLog,
    Orders,
}

impl Table {
    fn name(self) -> &'static CStr {
        match self {
            Table::History => c"order_status_history",
            Table::AuditLog => c"audit_log",
            Table::Orders => c"orders",
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

/// A target's CHECK constraints and column defaults, read from the catalog
/// and simplified once per backend: what PostgreSQL does again for every
/// ResultRelInfo (ExecRelCheck: stringToNode and expression_planner for each
/// constraint) and every default (build_column_default, ExecPrepareExpr),
/// which was most of the cost of a natively written row's set-up. Each
/// write compiles these trees into its own executor state; an executor
/// holds its `Rc` until it is finished, so a relcache invalidation that
/// forgets the entry mid-write frees nothing in use.
struct Planned {
    /// Owns the trees below.
    context: pg_sys::MemoryContext,
    /// One per CHECK constraint, in the order of the relation's
    /// `constr->check` (what `ri_ConstraintExprs` is indexed by).
    checks: Vec<*mut pg_sys::Expr>,
    /// Per column: its default, or null (none, or a dropped column).
    defaults: Vec<*mut pg_sys::Expr>,
}

impl Drop for Planned {
    fn drop(&mut self) {
        // While an error unwinds PostgreSQL is not called: the context stays
        // (a few hundred bytes under CacheMemoryContext, once).
        if !std::thread::panicking() {
            // SAFETY: the context is this entry's own and nothing else
            // points into it once the last `Rc` is gone.
            unsafe { pg_sys::MemoryContextDelete(self.context) };
        }
    }
}

thread_local! {
    static TARGETS: RefCell<HashMap<Table, Target>> = RefCell::new(HashMap::new());
    static PLANNED: RefCell<HashMap<Oid, Rc<Planned>>> = RefCell::new(HashMap::new());
}

/// Forgets what was looked up about `relid` (every table, for InvalidOid).
/// Called from a relcache invalidation callback: frees memory, reads nothing.
pub fn forget(relid: Oid) {
    TARGETS.with(|targets| {
        targets
            .borrow_mut()
            .retain(|_, t| relid != Oid::INVALID && t.relid != relid)
    });
    // Taken out first, dropped after the borrow ends.
    let forgotten: Vec<Rc<Planned>> = PLANNED.with(|planned| {
        let mut planned = planned.borrow_mut();
        let keys: Vec<Oid> = planned
            .keys()
            .copied()
            .filter(|k| relid == Oid::INVALID || *k == relid)
            .collect();
        keys.iter().filter_map(|k| planned.remove(k)).collect()
    });
    drop(forgotten);
}

/// The planned constraints and defaults of the open relation `rel`, planned
/// now if not kept (or kept for a different shape of the table).
///
/// # Safety
/// `rel` is open and locked, so its constraints and columns can't change
/// while the returned trees are used.
unsafe fn planned(rel: pg_sys::Relation) -> Rc<Planned> {
    let relid = (*rel).rd_id;
    let desc = (*rel).rd_att;
    let natts = (*desc).natts as usize;
    let constr = (*desc).constr;
    let ncheck = if constr.is_null() {
        0
    } else {
        (*constr).num_check as usize
    };
    if let Some(kept) = PLANNED.with(|p| p.borrow().get(&relid).cloned()) {
        if kept.checks.len() == ncheck && kept.defaults.len() == natts {
            return kept;
        }
    }
    // Built in a context of the caller's until complete: an error part way
    // leaves nothing behind in CacheMemoryContext.
    let context = pg_sys::AllocSetContextCreateInternal(
        pg_sys::CurrentMemoryContext,
        c"olaclick planned target".as_ptr(),
        pg_sys::ALLOCSET_SMALL_MINSIZE as _,
        pg_sys::ALLOCSET_SMALL_INITSIZE as _,
        pg_sys::ALLOCSET_SMALL_MAXSIZE as _,
    );
    let old = pg_sys::MemoryContextSwitchTo(context);
    // Every one, validated or not: PostgreSQL 15 enforces a NOT VALID
    // constraint on the rows written after it was added.
    let checks = (0..ncheck)
        .map(|i| {
            let check = &*(*constr).check.add(i);
            pg_sys::expression_planner(pg_sys::stringToNode(check.ccbin).cast())
        })
        .collect();
    let defaults = (0..natts)
        .map(|i| {
            let attr = (*desc).attrs.as_slice(natts)[i];
            let default = if attr.attisdropped {
                std::ptr::null_mut()
            } else {
                pg_sys::build_column_default(rel, i as i32 + 1)
            };
            if default.is_null() {
                std::ptr::null_mut()
            } else {
                pg_sys::expression_planner(default.cast())
            }
        })
        .collect();
    pg_sys::MemoryContextSwitchTo(old);
    pg_sys::MemoryContextSetParent(context, pg_sys::CacheMemoryContext);
    let planned = Rc::new(Planned {
        context,
        checks,
        defaults,
    });
    PLANNED.with(|p| p.borrow_mut().insert(relid, planned.clone()));
    planned
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

/// The executor state one native write needs, as logical replication's apply
/// worker sets it up (replication/logical/worker.c): an EState with a
/// one-entry range table, a ResultRelInfo for the open relation registered
/// where the trigger machinery looks for it, and the table's indexes open.
/// On an ERROR, transaction abort releases the relation, locks and memory.
struct Executor {
    rel: pg_sys::Relation,
    estate: *mut pg_sys::EState,
    rri: *mut pg_sys::ResultRelInfo,
    /// The trees this executor's constraints and defaults are compiled from.
    planned: Rc<Planned>,
}

impl Executor {
    /// # Safety
    /// `relid` is an existing table; `finish` must be called on success.
    unsafe fn open(relid: Oid) -> Executor {
        let rel = pg_sys::table_open(relid, pg_sys::RowExclusiveLock as _);
        let estate = pg_sys::CreateExecutorState();
        let mut rte = PgBox::<pg_sys::RangeTblEntry>::alloc_node(pg_sys::NodeTag::T_RangeTblEntry);
        rte.rtekind = pg_sys::RTEKind::RTE_RELATION;
        rte.relid = relid;
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
        pg_sys::ExecOpenIndices(rri, false);
        let planned = planned(rel);
        // What ExecRelCheck would build on the first row, from kept trees.
        let ncheck = planned.checks.len();
        if ncheck > 0 {
            let old = pg_sys::MemoryContextSwitchTo((*estate).es_query_cxt);
            let exprs = pg_sys::palloc0(ncheck * std::mem::size_of::<*mut pg_sys::ExprState>())
                .cast::<*mut pg_sys::ExprState>();
            for (i, check) in planned.checks.iter().enumerate() {
                *exprs.add(i) = pg_sys::ExecInitExpr(*check, std::ptr::null_mut());
            }
            (*rri).ri_ConstraintExprs = exprs;
            pg_sys::MemoryContextSwitchTo(old);
        }
        Executor {
            rel,
            estate,
            rri,
            planned,
        }
    }

    /// A virtual slot of the table's row type, all NULL.
    ///
    /// # Safety
    /// `self` is open; the slot lives until `finish`.
    unsafe fn slot(&self) -> *mut pg_sys::TupleTableSlot {
        let slot =
            pg_sys::ExecInitExtraTupleSlot(self.estate, (*self.rel).rd_att, &pg_sys::TTSOpsVirtual);
        pg_sys::ExecClearTuple(slot);
        let natts = (*(*self.rel).rd_att).natts as usize;
        std::slice::from_raw_parts_mut((*slot).tts_isnull, natts).fill(true);
        slot
    }

    /// Frees the executor state; the table stays locked until commit.
    ///
    /// # Safety
    /// No slot or datum of this executor is used afterwards.
    unsafe fn finish(self) {
        // Not ExecCloseIndices: it releases each index's lock, which the
        // next native write of the transaction would take again through
        // the shared lock table. The indexes stay locked until commit, as
        // the table does, and as the planner keeps the indexes of a table
        // any UPDATE or DELETE targets (get_relation_info, same lock mode).
        let (descs, count) = ((*self.rri).ri_IndexRelationDescs, (*self.rri).ri_NumIndices);
        if !descs.is_null() && count > 0 {
            // ExecOpenIndices filled `count` entries (NULL where an index
            // was skipped).
            for &index in std::slice::from_raw_parts(descs, count as usize) {
                if !index.is_null() {
                    pg_sys::index_close(index, pg_sys::NoLock as _);
                }
            }
        }
        // Not ExecCloseResultRelations: it would close `rel`, which is ours.
        pg_sys::ExecResetTupleTable((*self.estate).es_tupleTable, false);
        pg_sys::FreeExecutorState(self.estate);
        pg_sys::table_close(self.rel, pg_sys::NoLock as _);
    }
}

/// Inserts one row into `table`: `Appender::append` with an appender of its
/// own.
pub fn insert(table: Table, columns: &[(&CStr, Option<Datum>)]) -> Datum {
    let mut appender = Appender::open(table);
    let row = appender.append(columns);
    appender.finish();
    row
}

/// Appends rows to one table olaclick writes itself, through one executor
/// for all of them: one row, or a small statement's rows.
pub struct Appender {
    table: Table,
    sequence: Oid,
    exec: Executor,
    /// The row being written, made once.
    slot: *mut pg_sys::TupleTableSlot,
    /// Per column: its default, once compiled.
    defaults: Vec<Option<Option<*mut pg_sys::ExprState>>>,
    /// History: olaclick's own key to orders and the orders table, the
    /// key's check taken out of the trigger list and made by `order_key`.
    order_key: Option<(Oid, Oid)>,
}

impl Appender {
    pub fn open(table: Table) -> Appender {
        let target = target(table);
        // SAFETY: Executor documents the set-up; `finish` closes it.
        unsafe {
            let exec = Executor::open(target.relid);
            let slot = exec.slot();
            let order_key = if table == Table::History {
                let orders = self::target(Table::Orders).relid;
                order_key::take_out(exec.rri, orders).map(|key| (key, orders))
            } else {
                None
            };
            let natts = (*(*exec.rel).rd_att).natts as usize;
            Appender {
                table,
                sequence: target.sequence,
                exec,
                slot,
                defaults: vec![None; natts],
                order_key,
            }
        }
    }

    /// Appends one row, giving the named columns (`None` is NULL); `id` is
    /// drawn from its identity sequence and every other column takes its
    /// default. Returns the row written, as a composite datum. The caller
    /// runs this with the rights of the table's owner. A history row is
    /// written only for an order version the caller's statement wrote: its
    /// key to that order is checked by `order_key`, the others by PostgreSQL.
    pub fn append(&mut self, columns: &[(&CStr, Option<Datum>)]) -> Datum {
        let table = self.table;
        // SAFETY: the slot's arrays have `natts` entries; the queued AFTER
        // ROW triggers fire before this returns; the row returned is copied
        // into the caller's memory before the per-row memory is reused.
        unsafe {
            let (rel, estate, slot) = (self.exec.rel, self.exec.estate, self.slot);
            let desc = (*rel).rd_att;
            let natts = (*desc).natts as usize;
            let context = pg_sys::MakePerTupleExprContext(estate);
            pg_sys::MemoryContextReset((*context).ecxt_per_tuple_memory);
            pg_sys::ExecClearTuple(slot);
            let values = std::slice::from_raw_parts_mut((*slot).tts_values, natts);
            let nulls = std::slice::from_raw_parts_mut((*slot).tts_isnull, natts);
            nulls.fill(true);
            let mut given = vec![false; natts];
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
                &[self.sequence.into_datum()],
            )
            .unwrap_or_else(|| pgrx::pg_sys::Datum::from(0));
            nulls[id] = false;
            given[id] = true;
            for i in (0..natts).filter(|&i| !given[i]) {
                let attr = (*desc).attrs.as_slice(natts)[i];
                if attr.attisdropped {
                    continue;
                }
                if let Some(state) = self.default(i) {
                    values[i] = pg_sys::ExecEvalExprSwitchContext(state, context, &mut nulls[i]);
                }
            }
            pg_sys::ExecStoreVirtualTuple(slot);
            pg_sys::AfterTriggerBeginQuery();
            pg_sys::ExecSimpleRelationInsert(self.exec.rri, estate, slot);
            pg_sys::AfterTriggerEndQuery(estate);
            if let Some((key, orders)) = self.order_key {
                let value = |name: &CStr| {
                    let i = pg_sys::SPI_fnumber(desc, name.as_ptr()) as usize - 1;
                    (!nulls[i]).then(|| values[i])
                };
                order_key::check(
                    rel,
                    key,
                    orders,
                    value(c"restaurant_id"),
                    value(c"order_id"),
                );
            }
            pg_sys::ExecFetchSlotHeapTupleDatum(slot)
        }
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

    /// Frees the executor state; the table stays locked until commit.
    pub fn finish(self) {
        // SAFETY: no slot or datum of the executor is used afterwards (rows
        // returned were copied).
        unsafe { self.exec.finish() }
    }
}

/// What became of an order whose total a line change moves.
pub enum Total {
    /// The total moved (the order is initiated).
    Added,
    /// The order is no longer initiated: its lines are frozen.
    Frozen { restaurant: i32, status: String },
    /// No such order (deleted in this transaction: a cascade).
    Missing,
}

/// A version of an order: the order, where the version is, and the
/// (sub)transaction that wrote it.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Written {
    order: i64,
    at: (pg_sys::BlockNumber, pg_sys::OffsetNumber),
    xmin: pg_sys::TransactionId,
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
    static LAST_WRITTEN: std::cell::Cell<Option<Written>> = const { std::cell::Cell::new(None) };
}

/// Order `order`'s version in `slot`: where it is and the transaction that
/// wrote it (`None` for a slot that can't tell, which is then re-checked).
///
/// # Safety
/// `slot` holds a tuple read from the table.
unsafe fn version_of(order: i64, slot: *mut pg_sys::TupleTableSlot) -> Option<Written> {
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
unsafe fn skip_key_checks(rri: *mut pg_sys::ResultRelInfo, to: Option<Oid>) -> Vec<Oid> {
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

/// The history row's key to its order, checked without SQL.
///
/// olaclick writes a history row only for an order version the statement
/// itself just wrote (inserted, or updated to a new status), so the order is
/// this transaction's: an insert no one else sees yet, or a version others
/// must wait on to change or delete. PostgreSQL's check would run `SELECT 1
/// FROM orders WHERE (restaurant_id, id) = ... FOR KEY SHARE` through SPI and
/// lock a row this transaction already holds. What can still happen is that
/// the statement itself removed the order before its history was written (a
/// cascade from another table, a table owner's AFTER ROW trigger): so the
/// order is looked up by its primary key as the transaction sees it now, its
/// own changes included (SnapshotSelf), and a history row whose order is gone
/// fails as PostgreSQL's check would, with 23503. Only the table's own key to
/// orders, non-deferrable, as olaclick created it, is checked here; any
/// other shape is left to PostgreSQL.
mod order_key {
    use super::*;

    /// The name olaclick gives the key (sql/schema.sql).
    const NAME: &CStr = c"order_status_history_restaurant_id_order_id_fkey";

    /// Takes the history row's check of its order out of `rri` if it is
    /// olaclick's own key; returns it when it did.
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
        if let Some(version) = found(orders, restaurant, order) {
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
        crate::error::refuse(
            PgSqlErrorCode::ERRCODE_FOREIGN_KEY_VIOLATION,
            format!("insert or update on table \"{table}\" violates foreign key constraint \"{name}\""),
            format!("Key (restaurant_id, order_id)=({restaurant}, {order}) is not present in table \"orders\"."),
            "The order was deleted (or its key changed) by the same statement that changed it, before its history was written.".into(),
        );
    }

    /// Whether `orders` has a row (restaurant, order), this transaction's
    /// own changes included: `None` if not, else the version found when it
    /// is this transaction's (and the lookup could tell).
    ///
    /// # Safety
    /// `orders` is the orders table, locked by this transaction.
    unsafe fn found(orders: Oid, restaurant: i32, order: i64) -> Option<Option<Written>> {
        let rel = pg_sys::table_open(orders, pg_sys::AccessShareLock as _);
        let desc = (*rel).rd_att;
        let id = pg_sys::SPI_fnumber(desc, c"id".as_ptr());
        let tenant = pg_sys::SPI_fnumber(desc, c"restaurant_id".as_ptr());
        let index_oid = pg_sys::RelationGetPrimaryKeyIndex(rel);
        let index = (index_oid != Oid::INVALID)
            .then(|| pg_sys::index_open(index_oid, pg_sys::AccessShareLock as _));
        let by_id = index.is_some_and(|index| {
            let form = (*index).rd_index;
            (*form).indnkeyatts == 1 && *(*form).indkey.values.as_ptr() == id as i16
        });
        let result = if let (Some(index), true) = (index, by_id) {
            let slot = pg_sys::MakeSingleTupleTableSlot(desc, pg_sys::table_slot_callbacks(rel));
            let mut key: pg_sys::ScanKeyData = std::mem::zeroed();
            pg_sys::ScanKeyInit(
                &mut key,
                1,
                pg_sys::BTEqualStrategyNumber as _,
                pg_sys::Oid::from(pg_sys::F_INT8EQ),
                order.into_datum().unwrap_or(Datum::from(0)),
            );
            let scan = pg_sys::index_beginscan(rel, index, &raw mut pg_sys::SnapshotSelfData, 1, 0);
            pg_sys::index_rescan(scan, &mut key, 1, std::ptr::null_mut(), 0);
            let mut found = None;
            while pg_sys::index_getnext_slot(
                scan,
                pg_sys::ScanDirection::ForwardScanDirection,
                slot,
            ) {
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
            found
        } else {
            // A DBA took the primary key off id: ask as PostgreSQL's check
            // does (operators named, whatever the search path).
            let query = format!(
                "SELECT 1 FROM ONLY olaclick.orders x
                 WHERE restaurant_id OPERATOR(pg_catalog.=) {restaurant} AND id OPERATOR(pg_catalog.=) {order}
                 FOR KEY SHARE OF x"
            );
            Spi::get_one::<i32>(&query).ok().flatten().map(|_| None)
        };
        if let Some(index) = index {
            pg_sys::index_close(index, pg_sys::NoLock as _);
        }
        pg_sys::table_close(rel, pg_sys::NoLock as _);
        result
    }
}

/// `UPDATE olaclick.orders SET total = total + delta WHERE id = order AND
/// status = 'initiated'`, as READ COMMITTED runs it, without SQL: the order
/// is found by its primary key and locked FOR NO KEY UPDATE in its newest
/// version (waiting for a concurrent writer, then judging what it left, as
/// the UPDATE's recheck would), and updated through
/// `ExecSimpleRelationUpdate`: BEFORE ROW triggers (orders_guard, which lets
/// olaclick's own total change through), constraints, the heap, indexes and
/// AFTER ROW triggers. Statement-level triggers don't fire: history and the
/// audit of derived rows are olaclick's own business (src/totals.rs). The
/// caller runs this as the table's owner, inside the Totals scope, under
/// READ COMMITTED (a transaction snapshot wants the SQL path's 40001).
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
    let target = target(Table::Orders);
    // SAFETY: Executor documents the set-up; the search slot holds only the
    // primary key the index scan reads; the found tuple is locked before it
    // is read or replaced; the EPQ state lives across the update.
    unsafe {
        let exec = Executor::open(target.relid);
        let (rel, estate) = (exec.rel, exec.estate);
        let desc = (*rel).rd_att;
        let natts = (*desc).natts as usize;
        let attno = |name: &CStr| pg_sys::SPI_fnumber(desc, name.as_ptr()) as usize - 1;
        let (id, total, status, restaurant) = (
            attno(c"id"),
            attno(c"total"),
            attno(c"status"),
            attno(c"restaurant_id"),
        );
        let search = exec.slot();
        *(*search).tts_values.add(id) = order.into_datum().unwrap_or(Datum::from(0));
        *(*search).tts_isnull.add(id) = false;
        pg_sys::ExecStoreVirtualTuple(search);
        let found = pg_sys::table_slot_create(rel, &mut (*estate).es_tupleTable);
        // The primary key, whatever the table's replica identity is set to.
        let index = pg_sys::RelationGetPrimaryKeyIndex(rel);
        if index == Oid::INVALID {
            crate::error::refuse(
                PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
                "olaclick.orders has no primary key".into(),
                "olaclick finds an order by its primary key to move its total.".into(),
                "Restore the primary key of olaclick.orders (id).".into(),
            );
        }
        if !pg_sys::RelationFindReplTupleByIndex(
            rel,
            index,
            pg_sys::LockTupleMode::LockTupleNoKeyExclusive,
            search,
            found,
        ) {
            exec.finish();
            return (Total::Missing, None);
        }
        let replaced = version_of(order, found);
        pg_sys::slot_getallattrs(found);
        let label = pgrx::enum_helper::lookup_enum_by_oid(pg_sys::Oid::from(
            (*(*found).tts_values.add(status)).value() as u32,
        ))
        .0;
        if label != "initiated" {
            let restaurant =
                i32::from_datum(*(*found).tts_values.add(restaurant), false).unwrap_or_default();
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
        let old_total = pgrx::AnyNumeric::from_datum(*(*found).tts_values.add(total), false)
            .unwrap_or_else(|| pgrx::AnyNumeric::from(0));
        let new_total = old_total + delta.clone();
        *(*new).tts_values.add(total) = new_total.into_datum().unwrap_or(Datum::from(0));
        *(*new).tts_isnull.add(total) = false;
        pg_sys::ExecStoreVirtualTuple(new);
        let mut epq: pg_sys::EPQState = std::mem::zeroed();
        pg_sys::EvalPlanQualInit(
            &mut epq,
            estate,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            -1,
        );
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

/// One row of a statement's transition table (or a copy of a row olaclick
/// wrote), read into a slot of its own.
pub struct TransitionRow {
    slot: *mut pg_sys::TupleTableSlot,
    desc: pg_sys::TupleDesc,
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

    /// Calls `each` with every row of `table` (a trigger's tg_newtable or
    /// tg_oldtable, shaped like `relation`), in order, while it returns
    /// `true`; returns whether it saw them all.
    ///
    /// # Safety
    /// As for `only`.
    pub unsafe fn each(
        table: *mut pg_sys::Tuplestorestate,
        relation: pg_sys::Relation,
        mut each: impl FnMut(&TransitionRow) -> bool,
    ) -> bool {
        if table.is_null() {
            return true;
        }
        let desc = (*relation).rd_att;
        let row = TransitionRow {
            slot: pg_sys::MakeSingleTupleTableSlot(desc, &pg_sys::TTSOpsMinimalTuple),
            desc,
        };
        // Rewound before and after, as in `only`; each row is copied into the
        // slot, so what `each` takes from it outlives the next fetch.
        pg_sys::tuplestore_rescan(table);
        let mut all = true;
        while pg_sys::tuplestore_gettupleslot(table, true, true, row.slot) {
            pg_sys::slot_getallattrs(row.slot);
            if !each(&row) {
                all = false;
                break;
            }
        }
        pg_sys::tuplestore_rescan(table);
        all
    }

    /// Every row of `table` (a trigger's tg_newtable or tg_oldtable,
    /// shaped like `relation`), in order, each in a slot of its own.
    ///
    /// # Safety
    /// As for `only`.
    pub unsafe fn all(
        table: *mut pg_sys::Tuplestorestate,
        relation: pg_sys::Relation,
    ) -> Vec<TransitionRow> {
        let mut rows = Vec::new();
        TransitionRow::each(table, relation, |row| {
            rows.push(TransitionRow::copy_of(row.slot, row.desc));
            true
        });
        rows
    }

    /// A row of its own with the contents of `slot` (shaped like `desc`).
    ///
    /// # Safety
    /// `slot` is a filled slot whose descriptor is `desc`.
    pub unsafe fn copy_of(
        slot: *mut pg_sys::TupleTableSlot,
        desc: pg_sys::TupleDesc,
    ) -> TransitionRow {
        let own = pg_sys::MakeSingleTupleTableSlot(desc, &pg_sys::TTSOpsMinimalTuple);
        pg_sys::ExecCopySlot(own, slot);
        pg_sys::slot_getallattrs(own);
        TransitionRow { slot: own, desc }
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
