//! Every difference between the PostgreSQL versions olaclick builds for
//! (15, 16, 17, 18), in one place: the rest of the code calls these.
//!
//! Each `cfg` names the PostgreSQL change it follows. 16 has no server to
//! test against on Debian (docs/install.md) but builds: keep it that way.

use pgrx::pg_sys;

/// The attributes of a tuple descriptor, dropped ones included, in order.
///
/// # Safety
/// `desc` is a valid tuple descriptor that outlives the slice.
pub unsafe fn attrs<'a>(desc: pg_sys::TupleDesc) -> &'a [pg_sys::FormData_pg_attribute] {
    let natts = (*desc).natts as usize;
    #[cfg(not(feature = "pg18"))]
    {
        (*desc).attrs.as_slice(natts)
    }
    // PostgreSQL 18 put an array of `natts` CompactAttributes first in the
    // descriptor and the attributes right after it: TupleDescAttr() is that
    // address, and they are contiguous.
    #[cfg(feature = "pg18")]
    {
        if natts == 0 {
            return &[];
        }
        let first = (*desc)
            .compact_attrs
            .as_ptr()
            .add(natts)
            .cast::<pg_sys::FormData_pg_attribute>();
        std::slice::from_raw_parts(first, natts)
    }
}

/// Whether a CHECK constraint is enforced on the rows written. PostgreSQL 18
/// added NOT ENFORCED constraints, which ExecRelCheck skips; before, every
/// one (NOT VALID included) is enforced on new rows.
///
/// # Safety
/// `check` is an entry of a live relation's `TupleConstr`.
pub unsafe fn check_enforced(check: &pg_sys::ConstrCheck) -> bool {
    #[cfg(feature = "pg18")]
    {
        check.ccenforced
    }
    #[cfg(not(feature = "pg18"))]
    {
        let _ = check;
        true
    }
}

/// Sets the compiled CHECK expressions ExecConstraints uses (renamed
/// `ri_CheckConstraintExprs` in PostgreSQL 18, when NOT NULL constraints
/// got expressions of their own). An entry is NULL for a constraint not
/// enforced, as ExecRelCheck leaves it.
///
/// # Safety
/// `rri` valid; `exprs`: one entry per CHECK of its relation, in query memory.
pub unsafe fn set_check_exprs(rri: *mut pg_sys::ResultRelInfo, exprs: *mut *mut pg_sys::ExprState) {
    #[cfg(feature = "pg18")]
    {
        (*rri).ri_CheckConstraintExprs = exprs;
    }
    #[cfg(not(feature = "pg18"))]
    {
        (*rri).ri_ConstraintExprs = exprs;
    }
}

/// Gives `estate` a one-entry range table: `rte`, with the permission entry
/// PostgreSQL 16 moved out of the RTE (RTEPermissionInfo)
/// and, from 18, the set of unpruned relations. As the
/// logical replication worker builds it (worker.c,
/// create_edata_for_relation); the entry asks for no column, as in 15.
///
/// # Safety
/// `estate` is a fresh executor state; `rte` a palloc'd RTE_RELATION entry.
pub unsafe fn init_range_table(estate: *mut pg_sys::EState, rte: *mut pg_sys::RangeTblEntry) {
    let range_table = pg_sys::lappend(std::ptr::null_mut(), rte.cast());
    #[cfg(feature = "pg15")]
    pg_sys::ExecInitRangeTable(estate, range_table);
    #[cfg(not(feature = "pg15"))]
    {
        let mut perminfos = std::ptr::null_mut();
        pg_sys::addRTEPermissionInfo(&mut perminfos, rte);
        #[cfg(any(feature = "pg16", feature = "pg17"))]
        pg_sys::ExecInitRangeTable(estate, range_table, perminfos);
        #[cfg(feature = "pg18")]
        pg_sys::ExecInitRangeTable(
            estate,
            range_table,
            perminfos,
            pg_sys::bms_make_singleton(1),
        );
    }
}

/// An EvalPlanQual state with no plan, as ExecSimpleRelationUpdate needs
/// (PostgreSQL 16 added the result relations argument).
///
/// # Safety
/// `estate` is a valid executor state that outlives `epq`.
pub unsafe fn epq_init(epq: *mut pg_sys::EPQState, estate: *mut pg_sys::EState) {
    use std::ptr::null_mut;
    #[cfg(feature = "pg15")]
    pg_sys::EvalPlanQualInit(epq, estate, null_mut(), null_mut(), -1);
    #[cfg(not(feature = "pg15"))]
    pg_sys::EvalPlanQualInit(epq, estate, null_mut(), null_mut(), -1, null_mut());
}

/// The sequence of identity column `attnum` of `rel`, or InvalidOid
/// (PostgreSQL 17 takes the relation rather than its oid).
///
/// # Safety
/// `rel` is open.
pub unsafe fn identity_sequence(rel: pg_sys::Relation, attnum: i16) -> pg_sys::Oid {
    #[cfg(any(feature = "pg15", feature = "pg16"))]
    {
        pg_sys::getIdentitySequence((*rel).rd_id, attnum, true)
    }
    #[cfg(not(any(feature = "pg15", feature = "pg16")))]
    {
        pg_sys::getIdentitySequence(rel, attnum, true)
    }
}

/// Begins a scan of `index` (PostgreSQL 18 added the instrumentation
/// argument for EXPLAIN ANALYZE; none here).
///
/// # Safety
/// Both relations are open and locked; `snapshot` is registered.
pub unsafe fn index_beginscan(
    heap: pg_sys::Relation,
    index: pg_sys::Relation,
    snapshot: pg_sys::Snapshot,
    nkeys: i32,
) -> pg_sys::IndexScanDesc {
    #[cfg(not(feature = "pg18"))]
    {
        pg_sys::index_beginscan(heap, index, snapshot, nkeys, 0)
    }
    #[cfg(feature = "pg18")]
    {
        pg_sys::index_beginscan(heap, index, snapshot, std::ptr::null_mut(), nkeys, 0)
    }
}

/// Lets an index release what its inserts kept, as ExecCloseIndices does:
/// from PostgreSQL 17, BRIN keeps its range map's buffers pinned across
/// the inserts of a statement (aminsertcleanup); left pinned, they leak to
/// the end of the transaction ("resource was not closed"). Before 17
/// nothing is kept.
///
/// # Safety
/// `index` is open, `info` its IndexInfo from ExecOpenIndices.
pub unsafe fn index_insert_cleanup(index: pg_sys::Relation, info: *mut pg_sys::IndexInfo) {
    #[cfg(any(feature = "pg17", feature = "pg18"))]
    pg_sys::index_insert_cleanup(index, info);
    #[cfg(not(any(feature = "pg17", feature = "pg18")))]
    let _ = (index, info);
}

/// PostgreSQL's record of the setting named `name`, if defined. PostgreSQL
/// 16 (settings in a hash table) returns a palloc'd array
/// and its length; the records themselves never move.
pub fn guc_record(name: &std::ffi::CStr) -> Option<*mut pg_sys::config_generic> {
    // SAFETY: get_guc_variables() gives `n` valid pointers to records with
    // NUL-terminated names; read in the backend's only thread.
    unsafe {
        #[cfg(feature = "pg15")]
        let (vars, n) = (pg_sys::get_guc_variables(), pg_sys::GetNumConfigOptions());
        #[cfg(not(feature = "pg15"))]
        let (vars, n) = {
            let mut n = 0;
            (pg_sys::get_guc_variables(&mut n), n)
        };
        let found = std::slice::from_raw_parts(vars, n as usize)
            .iter()
            .copied()
            .find(|&var| std::ffi::CStr::from_ptr((*var).name) == name);
        #[cfg(not(feature = "pg15"))]
        pg_sys::pfree(vars.cast());
        found
    }
}

/// Makes `pg_catalog` (then `pg_temp`) the whole search path until the
/// returned guard is dropped (on success; an error's abort restores it).
///
/// Up to 16, an override search path: it leaves the search_path setting
/// alone, which measured a third of a millisecond cheaper per order's life
/// in bench/run than setting it. PostgreSQL 17 removed overrides and sets the setting instead, at a new nesting level as a
/// function's SET clause does (RestrictSearchPath); 17 also caches search
/// paths, which is what made the override worth having.
pub fn pin_search_path() -> SearchPathPinned {
    #[cfg(any(feature = "pg15", feature = "pg16"))]
    {
        let mut path = pg_sys::OverrideSearchPath {
            schemas: std::ptr::null_mut(),
            addCatalog: true,
            addTemp: false,
            generation: 0,
        };
        // SAFETY: PushOverrideSearchPath copies `path`; the (sub)transaction
        // abort pops an override left by an error.
        unsafe { pg_sys::PushOverrideSearchPath(&mut path) };
        SearchPathPinned(())
    }
    #[cfg(not(any(feature = "pg15", feature = "pg16")))]
    {
        // SAFETY: a new GUC nesting level, popped by the guard on success
        // and by the (sub)transaction abort on an error.
        unsafe {
            let level = pg_sys::NewGUCNestLevel();
            pg_sys::RestrictSearchPath();
            SearchPathPinned(level)
        }
    }
}

/// Restores the search path `pin_search_path` replaced.
pub struct SearchPathPinned(
    #[cfg(any(feature = "pg15", feature = "pg16"))] (),
    #[cfg(not(any(feature = "pg15", feature = "pg16")))] i32,
);

impl Drop for SearchPathPinned {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        // SAFETY: undoes exactly what pin_search_path did, on success.
        unsafe {
            #[cfg(any(feature = "pg15", feature = "pg16"))]
            pg_sys::PopOverrideSearchPath();
            #[cfg(not(any(feature = "pg15", feature = "pg16")))]
            pg_sys::AtEOXact_GUC(true, self.0);
        }
    }
}
