//! Years of audit log: its months are made ahead by `maintain()` and leave
//! whole through `audit_purge()` (the SQL they run is sql/partitions.sql;
//! docs/audit.md says how to schedule them).
//!
//! Both run their SQL as the log's owner (only the owner may create, attach
//! and detach its partitions) with the purge scope open, the one scope in
//! which the log's guards let rows move or go (src/immutable.rs) and its
//! partitions be detached or dropped (src/drop_guard.rs). Both are revoked
//! from PUBLIC: a DBA grants EXECUTE to the role that runs retention.

use pgrx::prelude::*;

use crate::refusal::Refusal;
use crate::sandbox;
use crate::scope::{self, Writer};

/// The owner of olaclick.audit_log, and whether it is partitioned (0.4.0's
/// SQL; the library also serves 0.1.0-0.3.0's, whose log is one table).
fn log() -> Result<(pg_sys::Oid, bool), pgrx::spi::Error> {
    sandbox::pinned(|| {
        Spi::connect(|client| {
            let row = client
                .select(
                    "SELECT c.relowner, c.relkind = 'p' FROM pg_catalog.pg_class c
                 WHERE c.oid = 'olaclick.audit_log'::pg_catalog.regclass",
                    None,
                    &[],
                )?
                .first()
                .get_two::<pg_sys::Oid, bool>()?;
            Ok((
                row.0.unwrap_or(pg_sys::Oid::INVALID),
                row.1.unwrap_or(false),
            ))
        })
    })
}

/// SPI's own errors are internal; PostgreSQL's (a missing archive table, a
/// lock not granted in time) keep their SQLSTATE on the way out.
fn or_raise<T>(result: Result<T, pgrx::spi::Error>, what: &str, then: &str) -> T {
    result
        .unwrap_or_else(|e| Refusal::internal(format!("olaclick.{what} failed: {e}"), then).raise())
}

/// `olaclick.maintain(since)`: makes the audit log's partitions of this
/// month and the next three (and of every month from `since`, when given),
/// moves rows that landed in the default partition into their month, and
/// attaches the log kept from before 0.4.0 after an upgrade. Idempotent and
/// cheap when there is nothing to do; one line per thing done.
#[pg_extern]
fn maintain(
    since: default!(Option<TimestampWithTimeZone>, "NULL"),
) -> SetOfIterator<'static, String> {
    if let Some(since) = since {
        since_is_sane(since);
    }
    let _upkeep = scope::enter(Writer::AuditPurge);
    let (owner, _) = or_raise(log(), "maintain", "Nothing was changed.");
    let done = sandbox::as_role(owner, || {
        sandbox::pinned(|| {
            Spi::connect_mut(|client| -> Result<Vec<String>, pgrx::spi::Error> {
                client
                    .update(
                        "SELECT step FROM olaclick.audit_log_upkeep($1) step",
                        None,
                        &[since.into()],
                    )?
                    .map(|row| row.get::<String>(1).map(Option::unwrap_or_default))
                    .collect()
            })
        })
    });
    SetOfIterator::new(or_raise(done, "maintain", "Nothing was changed."))
}

/// The months `maintain(since)` makes are one partition each, all made in
/// one transaction (and those before now with the log locked against
/// writers): `since` must be a finite moment at most ten years back.
fn since_is_sane(since: TimestampWithTimeZone) {
    let sane = Spi::get_one_with_args::<bool>(
        "SELECT pg_catalog.isfinite($1) AND $1 OPERATOR(pg_catalog.>=) (pg_catalog.now() OPERATOR(pg_catalog.-) interval '10 years')",
        &[since.into()],
    );
    if sane != Ok(Some(true)) {
        Refusal::maintain_since(&since.to_string()).raise();
    }
}

/// Where `audit_purge` puts what it removes.
enum Archive {
    None,
    /// A table with the log's columns, written with the caller's rights
    /// (quoted, qualified name).
    Table(String),
    /// A schema the removed months move into, owned by the caller.
    Schema(String),
}

/// `olaclick.audit_purge(older_than, archive_to)`: removes the audit rows
/// logged before `older_than` and returns how many went. On 0.4.0's
/// partitioned log a month goes whole: the rows of the month `older_than`
/// falls in stay until all of it is older. Whole months are detached and
/// dropped, or moved into `archive_to` when it names a schema; when it names
/// a table, the rows are copied into it (with the caller's rights: a purge
/// can't write where its caller can't) and deleted. What is left of the log
/// kept from before 0.4.0 and of the default partition goes by DELETE. The
/// one way rows leave the log; revoked from PUBLIC.
#[pg_extern]
fn audit_purge(
    older_than: Option<TimestampWithTimeZone>,
    archive_to: default!(Option<&str>, "NULL"),
) -> i64 {
    let Some(older_than) = older_than else {
        Refusal::purge_without_time().raise();
    };
    const THEN: &str = "The purge was rolled back; no row was removed.";
    let _purge = scope::enter(Writer::AuditPurge);
    let (owner, partitioned) = or_raise(log(), "audit_purge", THEN);
    let archive = or_raise(archive(archive_to), "audit_purge", THEN);
    // SAFETY: the current user, read on the backend's only thread.
    let caller = unsafe { pg_sys::GetUserId() };
    // The rows that go by DELETE, handed to the caller's statement.
    let mut rows = "SELECT * FROM olaclick.audit_purge_rows($1)";
    let by_delete = |client: &mut pgrx::spi::SpiClient<'_>, rows: &str, into: Option<&str>| {
        let sql = match into {
            None => format!("WITH d AS ({rows}) SELECT count(*) FROM d"),
            Some(table) => format!(
                "WITH d AS ({rows}), a AS (INSERT INTO {table} SELECT * FROM d RETURNING 1)
                 SELECT count(*) FROM a"
            ),
        };
        sandbox::pinned(|| {
            client
                .update(sql.as_str(), None, &[older_than.into()])?
                .first()
                .get_one::<i64>()
                .map(Option::unwrap_or_default)
        })
    };
    let purged = Spi::connect_mut(|client| -> Result<i64, pgrx::spi::Error> {
        if !partitioned {
            // 0.1.0-0.3.0's SQL: one DELETE, as those versions purged, with
            // the log owner's rights from 0.3.0 (audit_purge_rows), with the
            // caller's before it.
            if client
                .select(
                    "SELECT pg_catalog.to_regprocedure('olaclick.audit_purge_rows(timestamptz)') IS NULL",
                    None,
                    &[],
                )?
                .first()
                .get_one::<bool>()?
                == Some(true)
            {
                rows = "DELETE FROM olaclick.audit_log WHERE at < $1 RETURNING *";
            }
            return match &archive {
                Archive::None => by_delete(client, rows, None),
                Archive::Table(table) => by_delete(client, rows, Some(table)),
                Archive::Schema(schema) => {
                    Refusal::purge_archive_schema_unsupported(schema).raise()
                }
            };
        }
        // Archiving into a table copies every row that goes, months included,
        // before the months are dropped.
        let copied = match &archive {
            Archive::Table(table) => by_delete(client, rows, Some(table))?,
            _ => 0,
        };
        let (schema, to) = match &archive {
            Archive::Schema(schema) => (Some(schema.as_str()), Some(caller)),
            _ => (None, None),
        };
        let months = sandbox::as_role(owner, || {
            sandbox::pinned(|| {
                client
                    .update(
                        "SELECT olaclick.audit_log_remove(olaclick.audit_purge_bound($1), $2, $3::pg_catalog.regrole)",
                        None,
                        &[older_than.into(), schema.into(), to.into()],
                    )?
                    .first()
                    .get_one::<i64>()
                    .map(Option::unwrap_or_default)
            })
        })?;
        // What is left before the bound: the default partition's and the
        // pre-0.4.0 log's rows (an archive schema takes whole partitions only).
        let rest = match &archive {
            Archive::None => by_delete(client, rows, None)?,
            _ => 0,
        };
        Ok(copied + months + rest)
    });
    or_raise(purged, "audit_purge", THEN)
}

/// What `archive_to` names, as the caller means it (their search_path, temp
/// tables included): a table (refused if it is the log or one of its
/// partitions), else a schema the caller may create in (a schema's name,
/// as written or quoted, matched without parsing: a qualified table name
/// never names one), else PostgreSQL's own 42P01 for the missing table.
fn archive(archive_to: Option<&str>) -> Result<Archive, pgrx::spi::Error> {
    let Some(name) = archive_to else {
        return Ok(Archive::None);
    };
    Spi::connect(|client| {
        let schema = client
            .select(
                "SELECT n.nspname::text, pg_catalog.has_schema_privilege(n.oid, 'CREATE')
                 FROM (SELECT) one LEFT JOIN pg_catalog.pg_namespace n
                   ON (n.nspname OPERATOR(pg_catalog.=) $1
                       OR pg_catalog.quote_ident(n.nspname) OPERATOR(pg_catalog.=) $1
                       OR (n.nspname OPERATOR(pg_catalog.=) pg_catalog.lower($1)
                           AND pg_catalog.strpos($1, '\"') OPERATOR(pg_catalog.=) 0))
                  AND pg_catalog.to_regclass($1) IS NULL",
                None,
                &[name.into()],
            )?
            .first()
            .get_two::<String, bool>()?;
        if let (Some(schema), Some(may_create)) = schema {
            // The months would stay where the log's are, no longer guarded.
            if schema == "olaclick" {
                Refusal::purge_into_log(name).raise();
            }
            if !may_create {
                Refusal::purge_archive_denied(&schema).raise();
            }
            return Ok(Archive::Schema(schema));
        }
        let (table, is_log) = client
            .select(
                "SELECT pg_catalog.format('%I.%I', n.nspname, c.relname),
                        'olaclick.audit_log'::pg_catalog.regclass OPERATOR(pg_catalog.=) ANY
                            (SELECT a.relid FROM pg_catalog.pg_partition_ancestors(c.oid) a)
                 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
                 WHERE c.oid OPERATOR(pg_catalog.=) $1::pg_catalog.regclass",
                None,
                &[name.into()],
            )?
            .first()
            .get_two::<String, bool>()?;
        if is_log == Some(true) {
            Refusal::purge_into_log(name).raise();
        }
        Ok(Archive::Table(table.unwrap_or_default()))
    })
}
