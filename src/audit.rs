//! The audit log: one `olaclick.audit_log` row per inserted, updated or
//! deleted row of every business table, and one per TRUNCATE, in the same
//! transaction.
//!
//! One trigger per statement, not per row. A statement that changed one row
//! (what ORMs send) or a few (up to `NATIVE_ROWS`) is logged natively: each
//! row's jsonb is built from the transition table and appended through
//! `src/native/`, with no SQL run. A statement that changed more copies
//! them from its transition tables in one kept INSERT ... SELECT, so a bulk
//! statement costs one plan execution, not one per row. Both paths write the
//! same rows. An UPDATE row that changes nothing is not logged; a logged
//! UPDATE lists the columns it changed.
//!
//! What is logged: `users.password_hash` is always removed from the logged
//! rows, and DBAs can remove more columns or turn a table's auditing off in
//! `olaclick.audit_settings` (through the functions in `sql/audit.sql`). The
//! settings are read once per backend and kept (`src/audit_settings.rs`).
//! Rows olaclick derives from the application's changes (history rows, the
//! total updates that follow line changes) are logged only with
//! `olaclick.audit_derived = on`: each is implied by a logged change of the
//! application (an order's insert or status update, a line's change).

use pgrx::pg_sys::{self, Datum};
use pgrx::prelude::*;
use pgrx::IntoDatum;

use crate::audit_settings::{self, Settings};
use crate::error::Error;
use crate::gucs;
use crate::native::{self, TransitionRow};
use crate::plans::{register_transition_tables, run_kept, Key};
use crate::restore::restoring;
use crate::sandbox;
use crate::scope::{self, Writer};

/// The tenant of a logged row: its restaurant_id, or its id for restaurants.
macro_rules! tenant {
    ($row:literal) => {
        concat!(
            "coalesce(",
            $row,
            "->>'restaurant_id', CASE WHEN $1 = 'restaurants' THEN ",
            $row,
            "->>'id' END)::integer"
        )
    };
}

// Every set-based statement takes ($1 table name, $2 actor, $3 role,
// $4 excluded columns).
const LOG_INSERT: &str = concat!(
    "INSERT INTO olaclick.audit_log (restaurant_id, table_name, op, new_row, actor_user_id, db_role)
     SELECT ",
    tenant!("r.j"),
    ", $1, 'INSERT', r.j - $4, $2, $3
     FROM (SELECT to_jsonb(t) AS j FROM new_rows t) r"
);

const LOG_DELETE: &str = concat!(
    "INSERT INTO olaclick.audit_log (restaurant_id, table_name, op, old_row, actor_user_id, db_role)
     SELECT ",
    tenant!("r.j"),
    ", $1, 'DELETE', r.j - $4, $2, $3
     FROM (SELECT to_jsonb(t) AS j FROM old_rows t) r"
);

// PostgreSQL appends the old and the new version of each updated row to the
// two transition tables in the same call, so the n-th old row and the n-th new
// row are the same row; pairing them by position also covers an UPDATE that
// changes the primary key.
const LOG_UPDATE: &str = concat!(
    "WITH o AS (SELECT row_number() OVER () AS n, to_jsonb(t) AS j FROM old_rows t),
          r AS (SELECT row_number() OVER () AS n, to_jsonb(t) AS j FROM new_rows t)
     INSERT INTO olaclick.audit_log (restaurant_id, table_name, op, old_row, new_row, changed_cols,
                                     actor_user_id, db_role)
     SELECT ", tenant!("r.j"), ", $1, 'UPDATE', o.j - $4, r.j - $4,
            ARRAY(SELECT c.key FROM jsonb_each(r.j) c WHERE c.value IS DISTINCT FROM o.j -> c.key ORDER BY 1),
            $2, $3
     FROM o JOIN r USING (n)
     WHERE o.j IS DISTINCT FROM r.j"
);

/// `audit_log.op`: what happened to the logged row (the table's CHECK
/// allows exactly these).
#[derive(Clone, Copy)]
enum Op {
    Insert,
    Update,
    Delete,
    Truncate,
}

impl Op {
    fn as_str(self) -> &'static str {
        match self {
            Op::Insert => "INSERT",
            Op::Update => "UPDATE",
            Op::Delete => "DELETE",
            Op::Truncate => "TRUNCATE",
        }
    }
}

/// A statement that changed up to this many rows of a table is logged
/// natively, row by row through one executor; more, by one set-based
/// statement. Below it, that statement's fixed cost (an SPI execution,
/// about 65 µs) outweighs its rows; above it, the native path would hold
/// every row and its jsonb in memory until the statement's log is written.
pub(crate) const NATIVE_ROWS: i64 = 32;

const ARGS: &[PgBuiltInOids] = &[
    PgBuiltInOids::TEXTOID,
    PgBuiltInOids::INT4OID,
    PgBuiltInOids::TEXTOID,
    PgBuiltInOids::TEXTARRAYOID,
];

/// Whether the row changes under way are olaclick's own, derived from the
/// application's: history rows, and total updates that follow line changes.
fn derived() -> bool {
    scope::is_open(Writer::Totals) || scope::is_open(Writer::History)
}

/// AFTER INSERT / UPDATE / DELETE (with transition tables old_rows and/or
/// new_rows) and AFTER TRUNCATE, FOR EACH STATEMENT, on every business table.
#[pg_trigger]
fn audit<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, impl WhoAllocated>>, Error> {
    // Restored rows were logged when first written; the log is restored too.
    if restoring() || (derived() && !gucs::AUDIT_DERIVED.get()) {
        return Ok(None::<PgHeapTuple<'a, AllocatedByRust>>);
    }
    let table = trigger.table_name()?;
    let relation = trigger.trigger_data().tg_relation;
    if table == audit_settings::TABLE {
        audit_settings::changed(trigger.relid()?);
    }
    let entry = Entry::now(&table);
    let op = trigger.op()?;
    let data = trigger.trigger_data();
    // SAFETY: the trigger's own transition tables.
    let changed = unsafe { native::rows(data.tg_oldtable) + native::rows(data.tg_newtable) };
    if changed == 0 && !matches!(op, PgTriggerOperation::Truncate) {
        return Ok(None);
    }
    sandbox::as_owner(relation, || {
        let settings = audit_settings::of(&table);
        if !settings.enabled {
            return Ok(());
        }
        // SAFETY: the trigger's own transition tables.
        let rows = unsafe { native::rows(data.tg_oldtable).max(native::rows(data.tg_newtable)) };
        if rows > NATIVE_ROWS {
            return entry.log_set(trigger, op, &settings);
        }
        // SAFETY: the trigger's own transition tables and relation.
        let (olds, news) = unsafe {
            (
                TransitionRow::all(data.tg_oldtable, relation),
                TransitionRow::all(data.tg_newtable, relation),
            )
        };
        match op {
            PgTriggerOperation::Truncate => entry.write(Op::Truncate, None, None, None, None),
            PgTriggerOperation::Insert => news
                .iter()
                .for_each(|new| entry.log_row(&settings, Op::Insert, None, Some(new))),
            PgTriggerOperation::Delete => olds
                .iter()
                .for_each(|old| entry.log_row(&settings, Op::Delete, Some(old), None)),
            // The n-th old row and the n-th new row are the same row (see
            // LOG_UPDATE).
            PgTriggerOperation::Update => olds
                .iter()
                .zip(&news)
                .for_each(|(old, new)| entry.log_row(&settings, Op::Update, Some(old), Some(new))),
        }
        entry.done();
        Ok(())
    })?;
    Ok(None)
}

/// Logs a row olaclick inserted natively into `table` (a derived history
/// row), as the table's audit trigger would have.
pub fn log_inserted(table: &str, row: Datum, tenant: Option<i32>) {
    let settings = audit_settings::of(table);
    if !settings.enabled {
        return;
    }
    let entry = Entry::now(table);
    let new = jsonb_without(to_jsonb(row), settings.excluded_array());
    entry.write(Op::Insert, tenant, None, Some(new), None);
    entry.done();
}

/// Logs an UPDATE olaclick made natively to `table` (a derived total
/// update), as the table's audit trigger would have.
pub fn log_updated(table: &str, old: &TransitionRow, new: &TransitionRow) {
    let settings = audit_settings::of(table);
    if !settings.enabled {
        return;
    }
    let entry = Entry::now(table);
    entry.log_row(&settings, Op::Update, Some(old), Some(new));
    entry.done();
}

/// Who and what an audit row is about, and where natively logged rows go.
struct Entry<'t> {
    table: &'t str,
    actor: Option<i32>,
    role: String,
    /// The audit log, opened by the first row written natively; closed by
    /// `done`.
    log: std::cell::RefCell<Option<native::Appender>>,
}

impl<'t> Entry<'t> {
    /// A change of `table` made now: the acting user (olaclick.user_id) and
    /// the role whose statement made it. Rows are written as the table
    /// owner, so that role is recorded, also for rows olaclick derived.
    fn now(table: &'t str) -> Entry<'t> {
        Entry {
            table,
            actor: gucs::user_id(),
            role: sandbox::acting_role(),
            log: std::cell::RefCell::new(None),
        }
    }

    /// Closes the audit log if a row was written to it.
    fn done(self) {
        if let Some(log) = self.log.into_inner() {
            log.finish();
        }
    }

    /// Logs a statement's many rows from its transition tables, in SQL.
    fn log_set(
        &self,
        trigger: &PgTrigger,
        op: PgTriggerOperation,
        settings: &Settings,
    ) -> Result<(), Error> {
        let (sql, op_key) = match op {
            PgTriggerOperation::Insert => (LOG_INSERT, 0),
            PgTriggerOperation::Update => (LOG_UPDATE, 1),
            PgTriggerOperation::Delete => (LOG_DELETE, 2),
            _ => return Err(Error::WrongEvent("audit")),
        };
        let _audit = scope::enter(Writer::Audit);
        let excluded = settings.excluded.clone();
        Spi::connect_mut(|client| {
            register_transition_tables(trigger);
            let key = Key::PerTable(trigger.relid()?.to_u32(), op_key);
            let args = [
                self.table.into(),
                self.actor.into(),
                self.role.as_str().into(),
                excluded.into(),
            ];
            run_kept(key, sql, ARGS, client, &args, |_| Ok(()))?;
            Ok(())
        })
    }

    /// Logs one row change natively, as the set-based statements would.
    fn log_row(
        &self,
        settings: &Settings,
        op: Op,
        old: Option<&TransitionRow>,
        new: Option<&TransitionRow>,
    ) {
        let changed = match (old, new) {
            (Some(old), Some(new)) => {
                let changed = changed_columns(old, new);
                if changed.is_empty() {
                    return;
                }
                Some(changed)
            }
            _ => None,
        };
        let row = new.or(old).expect("a logged row change has a row");
        let tenant = row.integer(c"restaurant_id").or_else(|| {
            (self.table == "restaurants")
                .then(|| row.integer(c"id"))
                .flatten()
        });
        let json = |r: &TransitionRow| {
            crate::row_jsonb::of(r, &settings.excluded).unwrap_or_else(|| {
                jsonb_without(to_jsonb(r.composite()), settings.excluded_array())
            })
        };
        self.write(
            op,
            tenant,
            old.map(json),
            new.map(json),
            changed.map(text_array),
        );
    }

    /// Appends the audit row.
    fn write(
        &self,
        op: Op,
        tenant: Option<i32>,
        old: Option<Datum>,
        new: Option<Datum>,
        changed: Option<Datum>,
    ) {
        // SAFETY: reads the transaction's id (assigning one, as
        // txid_current() does) and start time (now()).
        let (txid, at) = unsafe {
            (
                pg_sys::GetTopFullTransactionId().value as i64,
                pg_sys::GetCurrentTransactionStartTimestamp(),
            )
        };
        let mut log = self.log.borrow_mut();
        let log = log.get_or_insert_with(|| native::Appender::open(native::Table::AuditLog));
        // In native::Table::AuditLog's column order.
        log.append(&[
            tenant.into_datum(),
            self.table.into_datum(),
            op.as_str().into_datum(),
            old,
            new,
            changed,
            self.actor.into_datum(),
            self.role.as_str().into_datum(),
            txid.into_datum(),
            Some(Datum::from(at)),
        ]);
    }
}

/// The columns whose values differ, sorted as the set-based path sorts them
/// (by name, in the database's collation).
fn changed_columns(old: &TransitionRow, new: &TransitionRow) -> Vec<String> {
    let mut changed: Vec<String> = old
        .columns()
        .zip(new.columns())
        .filter(|((_, typ, a), (_, _, b))| match (a, b) {
            (None, None) => false,
            (Some(a), Some(b)) => !equal(*typ, *a, *b),
            _ => true,
        })
        .map(|((name, _, _), _)| name.to_string_lossy().into_owned())
        .collect();
    changed.sort_by(|a, b| {
        // SAFETY: two valid byte strings and their lengths.
        let order = unsafe {
            pg_sys::varstr_cmp(
                a.as_ptr().cast(),
                a.len() as _,
                b.as_ptr().cast(),
                b.len() as _,
                pg_sys::DEFAULT_COLLATION_OID,
            )
        };
        order.cmp(&0)
    });
    changed
}

/// Equality by the type's own `=`, as jsonb compares the values it holds
/// (1.0 equals 1.00 for numeric).
fn equal(typ: pg_sys::Oid, a: Datum, b: Datum) -> bool {
    // SAFETY: the type cache entry lives for the backend; its equality
    // function takes two values of the type.
    unsafe {
        let entry = pg_sys::lookup_type_cache(typ, pg_sys::TYPECACHE_EQ_OPR_FINFO as _);
        if (*entry).eq_opr_finfo.fn_oid == pg_sys::Oid::INVALID {
            // No equality (a json column a DBA added): compare what the
            // set-based statements compare, the values' jsonb.
            let (a, b) = (value_to_jsonb(typ, a), value_to_jsonb(typ, b));
            return pgrx::direct_function_call::<bool>(pg_sys::jsonb_eq, &[Some(a), Some(b)])
                .unwrap_or(false);
        }
        let result = pg_sys::FunctionCall2Coll(
            &mut (*entry).eq_opr_finfo,
            pg_sys::DEFAULT_COLLATION_OID,
            a,
            b,
        );
        result.value() != 0
    }
}

/// `to_jsonb(row)`, called through the function manager the way a query
/// would, with the call expression telling it the argument is a row.
fn to_jsonb(row: Datum) -> Datum {
    thread_local! {
        static TO_JSONB: std::cell::Cell<*mut pg_sys::FmgrInfo> = const { std::cell::Cell::new(std::ptr::null_mut()) };
    }
    // The FmgrInfo and its expression are allocated once in TopMemoryContext
    // and live for the backend; to_jsonb reads the argument's type from the
    // expression, and a composite datum carries its own row type.
    // SAFETY: as just said; `row` is a composite datum of the caller's.
    unsafe {
        let mut finfo = TO_JSONB.with(|f| f.get());
        if finfo.is_null() {
            let top = pg_sys::TopMemoryContext;
            let previous = pg_sys::MemoryContextSwitchTo(top);
            finfo = pg_sys::palloc0(std::mem::size_of::<pg_sys::FmgrInfo>()).cast();
            pg_sys::fmgr_info_cxt(pg_sys::Oid::from(pg_sys::F_TO_JSONB), finfo, top);
            let arg = pg_sys::makeNullConst(pg_sys::RECORDOID, -1, pg_sys::Oid::INVALID);
            let args = pg_sys::lappend(std::ptr::null_mut(), arg.cast());
            (*finfo).fn_expr = pg_sys::makeFuncExpr(
                pg_sys::Oid::from(pg_sys::F_TO_JSONB),
                pg_sys::JSONBOID,
                args,
                pg_sys::Oid::INVALID,
                pg_sys::Oid::INVALID,
                pg_sys::CoercionForm::COERCE_EXPLICIT_CALL,
            )
            .cast();
            pg_sys::MemoryContextSwitchTo(previous);
            TO_JSONB.with(|f| f.set(finfo));
        }
        pg_sys::FunctionCall1Coll(finfo, pg_sys::Oid::INVALID, row)
    }
}

/// `to_jsonb(value)` for a value of type `typ`, as `to_jsonb(row)` converts
/// each of the row's columns. Only for columns whose type has no equality
/// (rare): the function's lookup is made per call.
fn value_to_jsonb(typ: pg_sys::Oid, value: Datum) -> Datum {
    // SAFETY: to_jsonb reads its argument's type from the call expression,
    // built here for `typ`; everything is palloc'd in the current context.
    unsafe {
        let mut finfo: pg_sys::FmgrInfo = std::mem::zeroed();
        pg_sys::fmgr_info(pg_sys::Oid::from(pg_sys::F_TO_JSONB), &mut finfo);
        let arg = pg_sys::makeNullConst(typ, -1, pg_sys::Oid::INVALID);
        finfo.fn_expr = pg_sys::makeFuncExpr(
            pg_sys::Oid::from(pg_sys::F_TO_JSONB),
            pg_sys::JSONBOID,
            pg_sys::lappend(std::ptr::null_mut(), arg.cast()),
            pg_sys::Oid::INVALID,
            pg_sys::Oid::INVALID,
            pg_sys::CoercionForm::COERCE_EXPLICIT_CALL,
        )
        .cast();
        pg_sys::FunctionCall1Coll(&mut finfo, pg_sys::Oid::INVALID, value)
    }
}

/// `json - excluded` (jsonb minus a text[] of keys).
fn jsonb_without(json: Datum, excluded: Datum) -> Datum {
    // SAFETY: jsonb_delete_array takes a jsonb and a text[], both non-NULL.
    unsafe {
        pgrx::direct_function_call_as_datum(
            pg_sys::jsonb_delete_array,
            &[Some(json), Some(excluded)],
        )
        .unwrap_or(json)
    }
}

fn text_array(items: Vec<String>) -> Datum {
    items
        .into_datum()
        .expect("a Vec<String> always makes a text[]")
}
