//! The audit log: one `olaclick.audit_log` row per inserted, updated or
//! deleted row of every business table, and one per TRUNCATE, in the same
//! transaction.
//!
//! One trigger per statement, not per row: each statement's rows are copied
//! from its transition tables in one kept INSERT ... SELECT, so a bulk
//! statement costs one plan execution, not one per row. An UPDATE row that
//! changes nothing is not logged; a logged UPDATE lists the columns it changed.
//! `users.password_hash` is always removed from the logged rows, and DBAs can
//! remove more columns or turn a table's auditing off in
//! `olaclick.audit_settings` (through the functions in `sql/audit.sql`).

use pgrx::prelude::*;

use crate::error::{refuse, Error};
use crate::gucs;
use crate::plans::{register_transition_tables, run_kept, Key, Stmt};
use crate::restore::restoring;
use crate::sandbox;
use crate::scope::{self, Writer};

/// The table's settings, as one row even when it has none ($1: table name).
macro_rules! settings {
    () => {
        "s AS (SELECT coalesce(bool_and(enabled), true) OR $1 = 'audit_settings' AS enabled,
                      coalesce(max(excluded_columns), '{}') || '{password_hash}'::text[] AS excluded
               FROM olaclick.audit_settings WHERE table_name = $1)"
    };
}

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

const LOG_INSERT: &str = concat!(
    "WITH ",
    settings!(),
    "
     INSERT INTO olaclick.audit_log (restaurant_id, table_name, op, new_row, actor_user_id, db_role)
     SELECT ",
    tenant!("r.j"),
    ", $1, 'INSERT', r.j - s.excluded, $2, $3
     FROM s, LATERAL (SELECT to_jsonb(t) AS j FROM new_rows t) r
     WHERE s.enabled"
);

const LOG_DELETE: &str = concat!(
    "WITH ",
    settings!(),
    "
     INSERT INTO olaclick.audit_log (restaurant_id, table_name, op, old_row, actor_user_id, db_role)
     SELECT ",
    tenant!("r.j"),
    ", $1, 'DELETE', r.j - s.excluded, $2, $3
     FROM s, LATERAL (SELECT to_jsonb(t) AS j FROM old_rows t) r
     WHERE s.enabled"
);

// PostgreSQL appends the old and the new version of each updated row to the
// two transition tables in the same call, so the n-th old row and the n-th new
// row are the same row; pairing them by position also covers an UPDATE that
// changes the primary key.
const LOG_UPDATE: &str = concat!(
    "WITH ", settings!(), ",
          o AS (SELECT row_number() OVER () AS n, to_jsonb(t) AS j FROM old_rows t),
          r AS (SELECT row_number() OVER () AS n, to_jsonb(t) AS j FROM new_rows t)
     INSERT INTO olaclick.audit_log (restaurant_id, table_name, op, old_row, new_row, changed_cols,
                                     actor_user_id, db_role)
     SELECT ", tenant!("r.j"), ", $1, 'UPDATE', o.j - s.excluded, r.j - s.excluded,
            ARRAY(SELECT c.key FROM jsonb_each(r.j) c WHERE c.value IS DISTINCT FROM o.j -> c.key ORDER BY 1),
            $2, $3
     FROM s, o JOIN r USING (n)
     WHERE s.enabled AND o.j IS DISTINCT FROM r.j"
);

static LOG_TRUNCATE: Stmt = Stmt {
    sql: concat!(
        "WITH ",
        settings!(),
        "
         INSERT INTO olaclick.audit_log (table_name, op, actor_user_id, db_role)
         SELECT $1, 'TRUNCATE', $2, $3 FROM s WHERE s.enabled"
    ),
    args: ARGS,
};

/// Every audit statement takes ($1 table name, $2 actor, $3 role).
const ARGS: &[PgBuiltInOids] = &[
    PgBuiltInOids::TEXTOID,
    PgBuiltInOids::INT4OID,
    PgBuiltInOids::TEXTOID,
];

/// AFTER INSERT / UPDATE / DELETE (with transition tables old_rows and/or
/// new_rows) and AFTER TRUNCATE, FOR EACH STATEMENT, on every business table.
#[pg_trigger]
fn audit<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, impl WhoAllocated>>, Error> {
    // Restored rows were logged when first written; the log is restored too.
    if restoring() {
        return Ok(None::<PgHeapTuple<'a, AllocatedByRust>>);
    }
    let table = trigger.table_name()?;
    let actor = gucs::user_id();
    // Written as the table owner; the role whose statement made the change is
    // recorded, also for rows olaclick derived from it (history, totals).
    let role = sandbox::acting_role();
    let args = [table.as_str().into(), actor.into(), role.as_str().into()];
    let _audit = scope::enter(Writer::Audit);
    sandbox::as_owner(trigger.trigger_data().tg_relation, || {
        Spi::connect_mut(|client| {
            let op = trigger.op()?;
            if let PgTriggerOperation::Truncate = op {
                return Ok(LOG_TRUNCATE.run(client, &args, |_| Ok(()))?);
            }
            let (sql, op_key) = match op {
                PgTriggerOperation::Insert => (LOG_INSERT, 0),
                PgTriggerOperation::Update => (LOG_UPDATE, 1),
                PgTriggerOperation::Delete => (LOG_DELETE, 2),
                _ => return Err(Error::WrongEvent("audit")),
            };
            register_transition_tables(trigger);
            let key = Key::PerTable(trigger.relid()?.to_u32(), op_key);
            run_kept(key, sql, ARGS, client, &args, |_| Ok(()))?;
            Ok(())
        })
    })?;
    Ok(None)
}

/// `olaclick.audit_purge(older_than, archive_to)`: deletes the audit rows
/// logged before `older_than`, first copying them into `archive_to` (a table
/// with audit_log's columns) when it is given, and returns how many rows went.
/// The one way rows leave the log; revoked from PUBLIC, so only a role granted
/// EXECUTE purges.
///
/// The rows are deleted with the log owner's rights (`audit_purge_rows`, a
/// SECURITY DEFINER function in sql/audit.sql whose DELETE the append-only
/// guard lets through only while this function runs), and inserted into the
/// archive with the caller's: a purge can't write where its caller can't.
#[pg_extern]
fn audit_purge(
    older_than: Option<TimestampWithTimeZone>,
    archive_to: default!(Option<&str>, "NULL"),
) -> i64 {
    let Some(older_than) = older_than else {
        refuse(
            PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            "olaclick.audit_purge: older_than must not be NULL".into(),
            "older_than is NULL.".into(),
            "Give the time before which audit rows go, e.g. now() - interval '1 year'.".into(),
        );
    };
    let _purge = scope::enter(Writer::AuditPurge);
    let purged = Spi::connect_mut(|client| -> Result<Option<i64>, pgrx::spi::Error> {
        // The archive is named as the caller means it (their search_path, temp
        // tables included), then goes into the SQL fully qualified and quoted:
        // an identifier, never text.
        let target = match archive_to {
            None => None,
            Some(name) => client
                .select(
                    "SELECT pg_catalog.format('%I.%I', n.nspname, c.relname),
                            c.oid = 'olaclick.audit_log'::pg_catalog.regclass
                     FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                     WHERE c.oid = $1::pg_catalog.regclass",
                    None,
                    &[name.into()],
                )?
                .first()
                .get_two::<String, bool>()?
                .into(),
        };
        let sql = match target {
            None => "SELECT count(*) FROM olaclick.audit_purge_rows($1)".to_string(),
            Some((_, Some(true))) => refuse(
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                "olaclick.audit_purge: archive_to can't be the audit log itself".into(),
                format!("archive_to is {}.", archive_to.unwrap_or_default()),
                "Archive into a table of your own with audit_log's columns, e.g. CREATE TABLE audit_archive (LIKE olaclick.audit_log).".into(),
            ),
            Some((target, _)) => format!(
                "WITH a AS (INSERT INTO {} SELECT * FROM olaclick.audit_purge_rows($1) RETURNING 1)
                 SELECT count(*) FROM a",
                target.unwrap_or_default()
            ),
        };
        sandbox::pinned(|| {
            client
                .update(sql.as_str(), None, &[older_than.into()])?
                .first()
                .get_one::<i64>()
        })
    });
    // SPI's own errors are internal; PostgreSQL's (a missing or unsuitable
    // archive table) keep their SQLSTATE on the way out.
    match purged {
        Ok(count) => count.unwrap_or(0),
        Err(e) => refuse(
            PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            format!("olaclick.audit_purge failed: {e}"),
            "The purge was rolled back; no row was removed.".into(),
            "Report this with the statement that caused it.".into(),
        ),
    }
}
