//! Which shapes of olaclick's tables are written natively, decided once per
//! relcache entry, and where each column olaclick writes is.
//!
//! The native path hands datums of the types olaclick created its columns
//! with to the executor below INSERT and UPDATE. Nothing there coerces a
//! value to a column of another type, applies a
//! rule, computes a generated column, checks a forced row-level security
//! policy or fires a statement-level or column-specific trigger. So it writes
//! a table only while the table has the shape it was built for: a plain heap
//! table without rules or children (or, for the audit log, partitioned, its
//! rows routed as INSERT routes them, to partitions of that shape), every column olaclick writes present
//! with its type, no domain column, `id` a bigint (an identity for the
//! tables olaclick appends to; for orders, the only key of a plain unique
//! btree index), no stored generated column, and no trigger but olaclick's
//! own, foreign-key checks and a DBA's AFTER ROW triggers without a column
//! list or transition tables (those fire natively as they would for SQL).
//! What depends on the writing role (its privileges, forced row-level
//! security) is judged per write, in executor.rs.
//! After any other DDL a DBA may run (docs/guarantees.md lists it), the write
//! takes the SQL path, which PostgreSQL plans for whatever the table became.
//!
//! The decision is kept with the relation's relcache entry: it is forgotten
//! when the entry is invalidated (any DDL on the table, its triggers or its
//! indexes), and made again from the relation opened and locked for the write,
//! so it always describes the table being written.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{c_char, CStr};
use std::rc::Rc;

use pgrx::pg_sys::{self, Datum, Oid};

use super::Table;
use crate::refusal::Refusal;

/// What the native path knows of a table with the shape it writes.
pub struct Shape {
    /// Zero-based offset of each of `Table::columns()`, in that order.
    columns: Vec<usize>,
    /// Per column of `Table::columns()`: the length coercion INSERT and
    /// UPDATE apply for the column's typmod (numeric(14,2)), if any.
    coercions: Vec<Option<Coercion>>,
    /// Zero-based offset of `id`.
    pub id: usize,
    /// The identity sequence behind `id` (history and audit log).
    pub sequence: Oid,
    /// The unique index on `id` alone (orders).
    pub id_index: Oid,
}

#[derive(Clone, Copy)]
struct Coercion {
    function: Oid,
    typmod: i32,
    /// 2 (value, typmod) or 3 (value, typmod, is explicit).
    nargs: i32,
}

impl Shape {
    /// The zero-based offset of the table's `i`-th column of
    /// `Table::columns()`.
    pub fn column(&self, i: usize) -> usize {
        self.columns[i]
    }

    /// `value` for the table's `i`-th column of `Table::columns()`, with the
    /// column's typmod applied as an assignment would (22003 for a total
    /// numeric(14,2) can't hold, as the SQL path raises it).
    ///
    /// # Safety
    /// `value` is a non-NULL datum of the column's type.
    pub unsafe fn coerce(&self, i: usize, value: Datum) -> Datum {
        let Some(c) = self.coercions[i] else {
            return value;
        };
        let typmod = Datum::from(c.typmod);
        if c.nargs == 2 {
            pg_sys::OidFunctionCall2Coll(c.function, Oid::INVALID, value, typmod)
        } else {
            pg_sys::OidFunctionCall3Coll(
                c.function,
                Oid::INVALID,
                value,
                typmod,
                Datum::from(false),
            )
        }
    }
}

thread_local! {
    /// The decision per relation: `None` for a shape the native path doesn't
    /// write.
    static SHAPES: RefCell<HashMap<Oid, Option<Rc<Shape>>>> = RefCell::new(HashMap::new());
    /// The relation of each table, by name.
    static RELIDS: RefCell<HashMap<Table, Oid>> = RefCell::new(HashMap::new());
    /// Bumped by every invalidation `forget` handles: a decision made while
    /// one arrived (the catalog lookups of `decide` can take invalidations
    /// in) is used once but not kept.
    static GENERATION: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    /// Per partition of the audit log: whether a row routed to it is written
    /// natively (`leaf_written_natively`).
    static LEAVES: RefCell<HashMap<Oid, bool>> = RefCell::new(HashMap::new());
    /// olaclick.order_status's oid.
    static ORDER_STATUS: std::cell::Cell<Oid> = const { std::cell::Cell::new(Oid::INVALID) };
}

/// Forgets what was decided about `relid` (every table, for InvalidOid).
pub fn forget(relid: Oid) {
    GENERATION.with(|g| g.set(g.get() + 1));
    let all = relid == Oid::INVALID;
    // Taken out first, dropped after the borrow ends.
    let forgotten: Vec<_> = SHAPES.with(|shapes| {
        let mut shapes = shapes.borrow_mut();
        let keys: Vec<Oid> = shapes
            .keys()
            .copied()
            .filter(|k| all || *k == relid)
            .collect();
        keys.iter().filter_map(|k| shapes.remove(k)).collect()
    });
    drop(forgotten);
    RELIDS.with(|relids| relids.borrow_mut().retain(|_, r| !all && *r != relid));
    LEAVES.with(|leaves| leaves.borrow_mut().retain(|r, _| !all && *r != relid));
    // The enum is dropped and made again with its tables (DROP and CREATE
    // EXTENSION): looked up again after any change of a table (a syscache
    // lookup, cheap).
    ORDER_STATUS.with(|t| t.set(Oid::INVALID));
}

fn olaclick_schema() -> Oid {
    // SAFETY: a catalog lookup by name; raises 3F000 if the schema is gone.
    unsafe { pg_sys::get_namespace_oid(c"olaclick".as_ptr(), false) }
}

/// The oid of `table`, looked up by name in olaclick's schema once; 42P01
/// if it is missing.
pub fn relid(table: Table) -> Oid {
    if let Some(found) = RELIDS.with(|r| r.borrow().get(&table).copied()) {
        return found;
    }
    // SAFETY: a catalog lookup by name; InvalidOid when missing.
    let relid = unsafe { pg_sys::get_relname_relid(table.name().as_ptr(), olaclick_schema()) };
    if relid == Oid::INVALID {
        Refusal::table_missing(&table.name().to_string_lossy()).raise();
    }
    RELIDS.with(|r| r.borrow_mut().insert(table, relid));
    relid
}

/// olaclick.order_status's oid (InvalidOid if it is gone: no column matches).
pub fn order_status_type() -> Oid {
    let kept = ORDER_STATUS.with(|t| t.get());
    if kept != Oid::INVALID {
        return kept;
    }
    // SAFETY: a syscache lookup by name and namespace; InvalidOid if missing.
    let found = unsafe {
        pg_sys::GetSysCacheOid(
            pg_sys::SysCacheIdentifier::TYPENAMENSP as i32,
            pg_sys::Anum_pg_type_oid as i16,
            Datum::from(c"order_status".as_ptr()),
            Datum::from(olaclick_schema()),
            Datum::from(0),
            Datum::from(0),
        )
    };
    ORDER_STATUS.with(|t| t.set(found));
    found
}

/// How `rel` (`table`, open and locked) is written natively; `None` when it
/// has a shape the native path doesn't write, or native writes are off.
///
/// # Safety
/// `rel` is open and locked by this transaction.
pub unsafe fn of(table: Table, rel: pg_sys::Relation) -> Option<Rc<Shape>> {
    if !crate::gucs::NATIVE_WRITES.get() {
        return None;
    }
    let relid = (*rel).rd_id;
    if let Some(kept) = SHAPES.with(|s| s.borrow().get(&relid).cloned()) {
        return kept;
    }
    let generation = GENERATION.with(|g| g.get());
    let decided = decide(table, rel).map(Rc::new);
    if GENERATION.with(|g| g.get()) == generation {
        SHAPES.with(|s| s.borrow_mut().insert(relid, decided.clone()));
    }
    decided
}

/// # Safety
/// As for `of`.
unsafe fn decide(table: Table, rel: pg_sys::Relation) -> Option<Shape> {
    let form = &*(*rel).rd_rel;
    // Forced row-level security is judged per write (executor.rs): it
    // binds the writing role only when that role is not a superuser and has
    // no BYPASSRLS, which is the owner's business, not the table's shape.
    // The audit log is partitioned by month (0.4.0): its rows are routed
    // to their partition as INSERT routes them (executor.rs), and each
    // partition is judged as it is written (`leaf_written_natively`).
    let routed = table == Table::AuditLog
        && form.relkind == pg_sys::RELKIND_PARTITIONED_TABLE as c_char
        && !form.relhasrules;
    if !routed
        && (form.relkind != pg_sys::RELKIND_RELATION as c_char
            || form.relam != pg_sys::HEAP_TABLE_AM_OID
            || form.relhasrules
            || form.relhassubclass)
    {
        return None;
    }
    // A partition partitioned in its turn routes on its own key, which may
    // be `id`, drawn only once the row's partition is known: the SQL path
    // (INSERT computes the identity first). Attaching or detaching one
    // invalidates this relation's entry, so the decision is made again.
    if routed {
        let parts = pg_sys::RelationGetPartitionDesc(rel, true);
        // `is_leaf` has `nparts` entries (and may be null when there are none).
        if !parts.is_null()
            && (*parts).nparts > 0
            && std::slice::from_raw_parts((*parts).is_leaf, (*parts).nparts as usize)
                .iter()
                .any(|leaf| !leaf)
        {
            return None;
        }
    }
    let desc = (*rel).rd_att;
    let attrs = crate::compat::attrs(desc);
    // Generated columns, stored or (18) virtual: INSERT computes the one and
    // expands the other inside CHECK constraints; the SQL path does both.
    if attrs.iter().any(|a| !a.attisdropped && a.attgenerated != 0) {
        return None;
    }
    let find = |name: &CStr| {
        attrs
            .iter()
            .position(|a| !a.attisdropped && CStr::from_ptr(a.attname.data.as_ptr()) == name)
    };
    // A domain column the write leaves out is coerced from NULL by INSERT
    // (its NOT NULL or CHECK can refuse the row); the native path doesn't.
    if attrs.iter().any(|a| {
        !a.attisdropped && pg_sys::get_typtype(a.atttypid) == pg_sys::TYPTYPE_DOMAIN as c_char
    }) {
        return None;
    }
    let mut columns = Vec::new();
    let mut coercions = Vec::new();
    for (name, typ) in table.columns() {
        let i = find(name)?;
        if attrs[i].atttypid != typ.oid() {
            return None;
        }
        columns.push(i);
        coercions.push(coercion(attrs[i].atttypid, attrs[i].atttypmod)?);
    }
    let id = find(c"id")?;
    if attrs[id].atttypid != pg_sys::INT8OID {
        return None;
    }
    let (mut sequence, mut id_index) = (Oid::INVALID, Oid::INVALID);
    match table {
        Table::History | Table::AuditLog => {
            if attrs[id].attidentity == 0 {
                return None;
            }
            sequence = crate::compat::identity_sequence(rel, id as i16 + 1);
            if sequence == Oid::INVALID {
                return None;
            }
        }
        Table::Orders => id_index = index_on(rel, id)?,
    }
    if !triggers_fire_natively(rel) {
        return None;
    }
    Some(Shape {
        columns,
        coercions,
        id,
        sequence,
        id_index,
    })
}

/// Whether a row of the partitioned `root` that INSERT routes to partition
/// `leaf` is written there natively: `leaf` a plain heap table with the
/// root's row layout (no column to convert: one attached with its columns in
/// another order, or with dropped ones, takes SQL) and no trigger that
/// fires differently natively. Its own CHECK constraints, indexes and
/// triggers are applied by the executor, as for INSERT. Kept per partition
/// until its relcache entry is invalidated (a partition's DDL invalidates
/// its own entry, not always the root's).
///
/// # Safety
/// `root` and `leaf` are open and locked by this transaction.
pub unsafe fn leaf_written_natively(root: pg_sys::Relation, leaf: pg_sys::Relation) -> bool {
    let relid = (*leaf).rd_id;
    if let Some(kept) = LEAVES.with(|l| l.borrow().get(&relid).copied()) {
        return kept;
    }
    let generation = GENERATION.with(|g| g.get());
    let form = &*(*leaf).rd_rel;
    let written = form.relkind == pg_sys::RELKIND_RELATION as c_char
        && form.relam == pg_sys::HEAP_TABLE_AM_OID
        && !form.relhasrules
        && !form.relhassubclass
        && pg_sys::convert_tuples_by_name((*root).rd_att, (*leaf).rd_att).is_null()
        && triggers_fire_natively(leaf);
    if GENERATION.with(|g| g.get()) == generation {
        LEAVES.with(|l| l.borrow_mut().insert(relid, written));
    }
    written
}

/// The length coercion an assignment to a column of `typ(typmod)` applies:
/// `Some(None)` for none, `None` for one the native path doesn't apply.
fn coercion(typ: Oid, typmod: i32) -> Option<Option<Coercion>> {
    if typmod < 0 {
        return Some(None);
    }
    let mut function = Oid::INVALID;
    // SAFETY: catalog lookups; `function` is written before it is read.
    unsafe {
        match pg_sys::find_typmod_coercion_function(typ, &mut function) {
            pg_sys::CoercionPathType::COERCION_PATH_NONE => Some(None),
            pg_sys::CoercionPathType::COERCION_PATH_FUNC => Some(Some(Coercion {
                function,
                typmod,
                nargs: pg_sys::get_func_nargs(function),
            })),
            _ => None,
        }
    }
}

/// The unique btree index whose only key is `id` (offset `id`) with the
/// default operator class, valid, immediate, without predicate or
/// expressions: what `WHERE id = $1` finds exactly one row by.
///
/// # Safety
/// `rel` is open and locked.
unsafe fn index_on(rel: pg_sys::Relation, id: usize) -> Option<Oid> {
    let indexes = pgrx::PgList::<pg_sys::Oid>::from_pg(pg_sys::RelationGetIndexList(rel));
    let family = pg_sys::get_opclass_family(pg_sys::GetDefaultOpClass(
        pg_sys::INT8OID,
        pg_sys::BTREE_AM_OID,
    ));
    let mut found = None;
    for oid in indexes.iter_oid() {
        let index = pg_sys::index_open(oid, pg_sys::AccessShareLock as _);
        let form = &*(*index).rd_index;
        let suits = form.indisunique
            && form.indimmediate
            && form.indisvalid
            && form.indisready
            && form.indislive
            && form.indnkeyatts == 1
            && (*(*index).rd_rel).relam == pg_sys::BTREE_AM_OID
            && *form.indkey.values.as_ptr() == id as i16 + 1
            && *(*index).rd_opfamily == family
            && *(*index).rd_opcintype == pg_sys::INT8OID
            && pg_sys::RelationGetIndexPredicate(index).is_null()
            && pg_sys::RelationGetIndexExpressions(index).is_null();
        pg_sys::index_close(index, pg_sys::NoLock as _);
        if suits {
            found = Some(oid);
            break;
        }
    }
    found
}

/// Begins a scan of orders `rel` for order `order` through `index`, the
/// unique index on id that `Shape::id_index` names (its only key a bigint
/// with the default btree class), under `snapshot`. The caller ends it.
///
/// # Safety
/// `rel` and `index` are open; `snapshot` outlives the scan.
pub unsafe fn scan_by_id(
    rel: pg_sys::Relation,
    index: pg_sys::Relation,
    snapshot: pg_sys::Snapshot,
    order: i64,
) -> pg_sys::IndexScanDesc {
    let mut key: pg_sys::ScanKeyData = std::mem::zeroed();
    pg_sys::ScanKeyInit(
        &mut key,
        1,
        pg_sys::BTEqualStrategyNumber as _,
        pg_sys::Oid::from(pg_sys::F_INT8EQ),
        Datum::from(order),
    );
    let scan = crate::compat::index_beginscan(rel, index, snapshot, 1);
    // index_rescan copies the key into the scan.
    pg_sys::index_rescan(scan, &mut key, 1, std::ptr::null_mut(), 0);
    scan
}

/// Whether every trigger of `rel` fires (or is meant to be skipped) when
/// the native path writes: foreign-key checks, triggers calling the
/// extension's own functions (the statement-level ones the native path
/// skips are olaclick's own business: the caller writes their rows), and
/// AFTER ROW triggers without a column list or transition tables. A DBA's
/// BEFORE ROW trigger takes the SQL path: it may cancel the row (which the
/// caller would still audit) or change its keys (whose checks the total
/// update leaves out when only the total changes).
///
/// # Safety
/// `rel` is open and locked.
unsafe fn triggers_fire_natively(rel: pg_sys::Relation) -> bool {
    let desc = (*rel).trigdesc;
    if desc.is_null() {
        return true;
    }
    let extension = pg_sys::get_extension_oid(c"olaclick".as_ptr(), true);
    let triggers = std::slice::from_raw_parts((*desc).triggers, (*desc).numtriggers as usize);
    triggers.iter().all(|t| {
        pg_sys::RI_FKey_trigger_type(t.tgfoid) != pg_sys::RI_TRIGGER_NONE as i32
            || pg_sys::getExtensionOfObject(pg_sys::ProcedureRelationId, t.tgfoid) == extension
            || (t.tgtype as u32 & pg_sys::TRIGGER_TYPE_ROW != 0
                && t.tgtype as u32 & pg_sys::TRIGGER_TYPE_BEFORE == 0
                && t.tgnattr == 0
                && t.tgoldtable.is_null()
                && t.tgnewtable.is_null())
    })
}
