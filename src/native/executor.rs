//! The executor state of one native write, set up as logical replication's
//! apply worker sets it up, and the CHECK constraints and column defaults of
//! each target, planned once per backend.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::c_char;
use std::rc::Rc;

use pgrx::pg_sys::{self, Oid};
use pgrx::PgBox;

use super::shape::{self, Shape};
use super::Table;

/// A target's CHECK constraints and column defaults, read from the catalog
/// and simplified once per backend: what PostgreSQL does again for every
/// ResultRelInfo (ExecRelCheck: stringToNode and expression_planner for each
/// constraint) and every default (build_column_default, ExecPrepareExpr),
/// which was most of the cost of a natively written row's set-up. Each
/// write compiles these trees into its own executor state; an executor
/// holds its `Rc` until it is finished, so a relcache invalidation that
/// forgets the entry mid-write frees nothing in use.
pub struct Planned {
    /// Owns the trees below.
    context: pg_sys::MemoryContext,
    /// One per CHECK constraint, in the order of the relation's
    /// `constr->check` (what `ri_ConstraintExprs` is indexed by).
    pub checks: Vec<*mut pg_sys::Expr>,
    /// Per column: its default, or null (none, or a dropped column).
    pub defaults: Vec<*mut pg_sys::Expr>,
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
    static PLANNED: RefCell<HashMap<Oid, Rc<Planned>>> = RefCell::new(HashMap::new());
    /// Bumped by `forget`: trees planned while an invalidation arrived
    /// (planning reads the catalog) are used once but not kept.
    static GENERATION: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Forgets the planned constraints and defaults of `relid` (every table's,
/// for InvalidOid). Called from invalidation callbacks: frees memory, reads
/// nothing.
pub fn forget(relid: Oid) {
    GENERATION.with(|g| g.set(g.get() + 1));
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
    let generation = GENERATION.with(|g| g.get());
    let context = pg_sys::AllocSetContextCreateInternal(
        pg_sys::CurrentMemoryContext,
        c"olaclick planned target".as_ptr(),
        pg_sys::ALLOCSET_SMALL_MINSIZE as _,
        pg_sys::ALLOCSET_SMALL_INITSIZE as _,
        pg_sys::ALLOCSET_SMALL_MAXSIZE as _,
    );
    let old = pg_sys::MemoryContextSwitchTo(context);
    // Every enforced one, validated or not: PostgreSQL enforces a NOT VALID
    // constraint on the rows written after it was added. A NOT ENFORCED one
    // (18) has no expression, as ExecRelCheck leaves it (ExecInitExpr of
    // NULL is NULL, and a NULL entry is skipped).
    let checks = (0..ncheck)
        .map(|i| {
            let check = &*(*constr).check.add(i);
            if !crate::compat::check_enforced(check) {
                return std::ptr::null_mut();
            }
            pg_sys::expression_planner(pg_sys::stringToNode(check.ccbin).cast())
        })
        .collect();
    let defaults = (0..natts)
        .map(|i| {
            let attr = crate::compat::attrs(desc)[i];
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
    if GENERATION.with(|g| g.get()) == generation {
        PLANNED.with(|p| p.borrow_mut().insert(relid, planned.clone()));
    }
    planned
}

/// The executor state one native write needs, as logical replication's apply
/// worker sets it up (replication/logical/worker.c): an EState with a
/// one-entry range table, a ResultRelInfo for the open relation registered
/// where the trigger machinery looks for it, and the table's indexes open.
/// On an ERROR, transaction abort releases the relation, locks and memory.
pub struct Executor {
    pub rel: pg_sys::Relation,
    pub estate: *mut pg_sys::EState,
    pub rri: *mut pg_sys::ResultRelInfo,
    /// The trees this executor's constraints and defaults are compiled from.
    pub planned: Rc<Planned>,
    /// For a partitioned table (the audit log), where its rows are routed.
    route: Option<Route>,
}

/// Tuple routing as the apply worker sets it up for a partitioned target
/// (worker.c, apply_handle_tuple_routing): a ModifyTableState with no plan,
/// which ExecFindPartition needs for the operation and the root, and the
/// routing state that opens each partition the first time a row goes to it.
struct Route {
    mtstate: *mut pg_sys::ModifyTableState,
    proute: *mut PartitionTupleRouting,
}

/// executor/execPartition.h, the same from 15 to 18; not in pgrx's
/// bindings. The routing state is private to execPartition.c.
#[repr(C)]
struct PartitionTupleRouting {
    _private: [u8; 0],
}

// Called through pg_guard_ffi_boundary, as pgrx's own bindings are: an
// ERROR raised inside becomes a Rust panic that unwinds olaclick's frames
// (closing its scopes) before PostgreSQL aborts the transaction.
extern "C-unwind" {
    fn ExecSetupPartitionTupleRouting(
        estate: *mut pg_sys::EState,
        rel: pg_sys::Relation,
    ) -> *mut PartitionTupleRouting;
    fn ExecFindPartition(
        mtstate: *mut pg_sys::ModifyTableState,
        root: *mut pg_sys::ResultRelInfo,
        proute: *mut PartitionTupleRouting,
        slot: *mut pg_sys::TupleTableSlot,
        estate: *mut pg_sys::EState,
    ) -> *mut pg_sys::ResultRelInfo;
    fn ExecCleanupTupleRouting(
        mtstate: *mut pg_sys::ModifyTableState,
        proute: *mut PartitionTupleRouting,
    );
}

impl Executor {
    /// Opens `table` for a native write, or `None` (the table locked all the
    /// same) when its shape is one the native path doesn't write.
    ///
    /// # Safety
    /// `finish` must be called on the executor returned, on success.
    pub unsafe fn open(table: Table) -> Option<(Executor, Rc<Shape>)> {
        let relid = shape::relid(table);
        let rel = pg_sys::table_open(relid, pg_sys::RowExclusiveLock as _);
        let Some(shape) = shape::of(table, rel).filter(|_| may_write(table, relid)) else {
            pg_sys::table_close(rel, pg_sys::NoLock as _);
            return None;
        };
        let estate = pg_sys::CreateExecutorState();
        let mut rte = PgBox::<pg_sys::RangeTblEntry>::alloc_node(pg_sys::NodeTag::T_RangeTblEntry);
        rte.rtekind = pg_sys::RTEKind::RTE_RELATION;
        rte.relid = relid;
        rte.relkind = (*(*rel).rd_rel).relkind;
        rte.rellockmode = pg_sys::RowExclusiveLock as _;
        crate::compat::init_range_table(estate, rte.into_pg());
        let rri =
            PgBox::<pg_sys::ResultRelInfo>::alloc_node(pg_sys::NodeTag::T_ResultRelInfo).into_pg();
        pg_sys::InitResultRelInfo(rri, rel, 1, std::ptr::null_mut(), 0);
        (*estate).es_opened_result_relations =
            pg_sys::lappend((*estate).es_opened_result_relations, rri.cast());
        (*estate).es_output_cid = pg_sys::GetCurrentCommandId(true);
        // A partitioned table stores nothing: each partition's indexes are
        // opened with it, as INSERT opens them (ExecInitPartitionInfo).
        let route = if (*(*rel).rd_rel).relkind == pg_sys::RELKIND_PARTITIONED_TABLE as c_char {
            let mtstate =
                PgBox::<pg_sys::ModifyTableState>::alloc_node(pg_sys::NodeTag::T_ModifyTableState)
                    .into_pg();
            (*mtstate).ps.state = estate;
            (*mtstate).operation = pg_sys::CmdType::CMD_INSERT;
            (*mtstate).resultRelInfo = rri;
            let proute =
                pg_sys::ffi::pg_guard_ffi_boundary(|| ExecSetupPartitionTupleRouting(estate, rel));
            Some(Route { mtstate, proute })
        } else {
            pg_sys::ExecOpenIndices(rri, false);
            None
        };
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
            crate::compat::set_check_exprs(rri, exprs);
            pg_sys::MemoryContextSwitchTo(old);
        }
        Some((
            Executor {
                rel,
                estate,
                rri,
                planned,
                route,
            },
            shape,
        ))
    }

    /// A virtual slot of the table's row type, all NULL.
    ///
    /// # Safety
    /// `self` is open; the slot lives until `finish`.
    pub unsafe fn slot(&self) -> *mut pg_sys::TupleTableSlot {
        let slot =
            pg_sys::ExecInitExtraTupleSlot(self.estate, (*self.rel).rd_att, &pg_sys::TTSOpsVirtual);
        pg_sys::ExecClearTuple(slot);
        let natts = (*(*self.rel).rd_att).natts as usize;
        std::slice::from_raw_parts_mut((*slot).tts_isnull, natts).fill(true);
        slot
    }

    /// Where the row in `slot` (of the table's row type) is written: the
    /// table, or for a partitioned one the partition INSERT would route it
    /// to (opened and locked on first use, as INSERT opens it); `None` when
    /// that partition's shape is one the native path doesn't write.
    ///
    /// # Safety
    /// `self` is open; `slot` holds a row of the table's row type.
    pub unsafe fn target(
        &self,
        slot: *mut pg_sys::TupleTableSlot,
    ) -> Option<*mut pg_sys::ResultRelInfo> {
        let Some(route) = &self.route else {
            return Some(self.rri);
        };
        // Raises PostgreSQL's own 23514 when no partition takes the row.
        let leaf = pg_sys::ffi::pg_guard_ffi_boundary(|| {
            ExecFindPartition(route.mtstate, self.rri, route.proute, slot, self.estate)
        });
        shape::leaf_written_natively(self.rel, (*leaf).ri_RelationDesc).then_some(leaf)
    }

    /// Frees the executor state; the table stays locked until commit.
    ///
    /// # Safety
    /// No slot or datum of this executor is used afterwards.
    pub unsafe fn finish(self) {
        // Not ExecCloseIndices: it releases each index's lock, which the
        // next native write of the transaction would take again through
        // the shared lock table. The indexes stay locked until commit, as
        // the table does, and as the planner keeps the indexes of a table
        // any UPDATE or DELETE targets (get_relation_info, same lock mode).
        let (descs, count) = ((*self.rri).ri_IndexRelationDescs, (*self.rri).ri_NumIndices);
        if !descs.is_null() && count > 0 {
            // ExecOpenIndices filled `count` entries of both arrays (NULL
            // where an index was skipped).
            let infos =
                std::slice::from_raw_parts((*self.rri).ri_IndexRelationInfo, count as usize);
            for (i, &index) in std::slice::from_raw_parts(descs, count as usize)
                .iter()
                .enumerate()
            {
                if !index.is_null() {
                    crate::compat::index_insert_cleanup(index, infos[i]);
                    pg_sys::index_close(index, pg_sys::NoLock as _);
                }
            }
        }
        // The partitions routed to: their indexes closed (with their
        // insert cleanup, 17+), the partitions kept locked until commit.
        if let Some(route) = &self.route {
            pg_sys::ffi::pg_guard_ffi_boundary(|| {
                ExecCleanupTupleRouting(route.mtstate, route.proute)
            });
        }
        // Not ExecCloseResultRelations: it would close `rel`, which is ours.
        pg_sys::ExecResetTupleTable((*self.estate).es_tupleTable, false);
        pg_sys::FreeExecutorState(self.estate);
        pg_sys::table_close(self.rel, pg_sys::NoLock as _);
    }
}

/// Whether the current role (the tables' owner, as the caller switched to
/// it) may write `table` as SQL would let it, with no row-level security
/// policy to apply: INSERT (UPDATE for orders) granted, and row-level
/// security not binding it (it doesn't bind a superuser or a BYPASSRLS role
/// even when forced, as olaclick's tables are). Otherwise the SQL path
/// checks both, as for any statement.
fn may_write(table: Table, relid: Oid) -> bool {
    let mode = match table {
        Table::Orders => pg_sys::ACL_UPDATE,
        _ => pg_sys::ACL_INSERT,
    };
    // SAFETY: catalog and role lookups; no error with noError = true.
    unsafe {
        pg_sys::pg_class_aclcheck(relid, pg_sys::GetUserId(), mode as _)
            == pg_sys::AclResult::ACLCHECK_OK
            && pg_sys::check_enable_rls(relid, Oid::INVALID, true)
                != pg_sys::CheckEnableRlsResult::RLS_ENABLED as i32
    }
}
