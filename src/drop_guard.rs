//! Dropping olaclick must not silently destroy business data.
//!
//! An event trigger on `ddl_command_start` runs before anything is dropped,
//! and is enabled ALWAYS, so `session_replication_role = replica` does not
//! switch it off. It refuses, while any order exists, every statement that
//! would take the orders with it:
//! - `DROP EXTENSION olaclick` (also in a list with other extensions);
//! - `DROP SCHEMA olaclick` (CASCADE drops the extension);
//! - `ALTER EXTENSION olaclick DROP ...` (detaching a member table, the first
//!   step of dropping it on its own) and `DROP TABLE` of a table in the schema;
//! - `DROP OWNED BY` the extension's owner.
//!
//! And always, for every role, it keeps the audit log's partitions in the
//! log (`judge_log_partitions`): a month leaves only through audit_purge().
//!
//! Only C can see the statement's parse tree there, which is how the guard
//! tells these from drops of anything else. `SET olaclick.allow_drop = on` is
//! the one way through; extension scripts (`ALTER EXTENSION ... UPDATE`) are
//! not judged.

use std::ffi::CStr;

use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::PgList;

use crate::gucs;
use crate::refusal::Refusal;
use crate::sandbox;
use crate::scope::{self, Writer};

const SCHEMA: &[u8] = b"olaclick";

#[no_mangle]
pub extern "C" fn pg_finfo_olaclick_drop_guard() -> &'static pg_sys::Pg_finfo_record {
    static V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1
}

/// `olaclick.drop_guard()`, an `event_trigger` function (see `sql/finalize.sql`).
#[no_mangle]
#[pg_guard]
/// # Safety
/// Called by PostgreSQL's function manager with a valid `fcinfo`.
pub unsafe extern "C-unwind" fn olaclick_drop_guard(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    let context = (*fcinfo).context;
    if context.is_null() || !pgrx::is_a(context, pg_sys::NodeTag::T_EventTriggerData) {
        Refusal::drop_guard_called().raise();
    }
    // olaclick's own upkeep and purge detach and drop the log's partitions.
    if pg_sys::creating_extension || scope::is_open(Writer::AuditPurge) {
        return pg_sys::Datum::from(0);
    }
    let event = context as *mut pg_sys::EventTriggerData;
    // Append-only, for every role and whether or not orders exist: a
    // partition of the log leaves only through audit_purge().
    if let Some(refusal) = judge_log_partitions((*event).parsetree) {
        refusal.raise();
    }
    if gucs::ALLOW_DROP.get() {
        return pg_sys::Datum::from(0);
    }
    if let Some(what) = drops_olaclick((*event).parsetree) {
        if holds_orders() {
            Refusal::drop_with_orders(&what).raise();
        }
    }
    pg_sys::Datum::from(0)
}

/// What the statement would drop of olaclick's, in words, if anything.
///
/// # Safety
/// `parsetree` is null or a valid parse tree node.
unsafe fn drops_olaclick(parsetree: *mut pg_sys::Node) -> Option<String> {
    if parsetree.is_null() {
        return None;
    }
    if pgrx::is_a(parsetree, pg_sys::NodeTag::T_DropStmt) {
        let stmt = &*(parsetree as *mut pg_sys::DropStmt);
        let objects = PgList::<pg_sys::Node>::from_pg(stmt.objects);
        return match stmt.removeType {
            pg_sys::ObjectType::OBJECT_EXTENSION if objects.iter_ptr().any(|n| is_olaclick(n)) => {
                Some("drop extension olaclick".into())
            }
            pg_sys::ObjectType::OBJECT_SCHEMA if objects.iter_ptr().any(|n| is_olaclick(n)) => {
                Some("drop schema olaclick".into())
            }
            pg_sys::ObjectType::OBJECT_TABLE => objects
                .iter_ptr()
                .find(|&name| in_olaclick_schema(name as *mut pg_sys::List))
                .map(|_| "drop a table of olaclick".into()),
            _ => None,
        };
    }
    if pgrx::is_a(parsetree, pg_sys::NodeTag::T_AlterExtensionContentsStmt) {
        let stmt = &*(parsetree as *mut pg_sys::AlterExtensionContentsStmt);
        let named = !stmt.extname.is_null() && CStr::from_ptr(stmt.extname).to_bytes() == SCHEMA;
        return (named && stmt.action < 0)
            .then(|| "detach a member from extension olaclick".into());
    }
    if pgrx::is_a(parsetree, pg_sys::NodeTag::T_DropOwnedStmt) {
        let stmt = &*(parsetree as *mut pg_sys::DropOwnedStmt);
        let owner = extension_owner()?;
        let roles = PgList::<pg_sys::RoleSpec>::from_pg(stmt.roles);
        return roles
            .iter_ptr()
            .any(|role| pg_sys::get_rolespec_oid(role, true) == owner)
            .then(|| "drop the objects of olaclick's owner".into());
    }
    None
}

/// The refusal, if the statement would take rows out of the audit log or
/// give it a partition olaclick can't guard:
/// - `ALTER TABLE ... DETACH PARTITION` on the log or one of its partitions;
/// - `DROP TABLE` / `DROP FOREIGN TABLE` of a partition at any depth;
/// - `DROP SCHEMA` of a schema other than olaclick holding a partition, and
///   `DROP OWNED BY` a role owning one outside olaclick (olaclick's own
///   schema and owner are judged as dropping the extension, which takes the
///   log with it);
/// - a foreign table made a partition (`ATTACH PARTITION`,
///   `CREATE FOREIGN TABLE ... PARTITION OF`).
///
/// # Safety
/// `parsetree` is null or a valid parse tree node.
unsafe fn judge_log_partitions(parsetree: *mut pg_sys::Node) -> Option<Refusal> {
    if parsetree.is_null() {
        return None;
    }
    let schema = pg_sys::get_namespace_oid(c"olaclick".as_ptr(), true);
    if schema == pg_sys::Oid::INVALID {
        return None;
    }
    let log = pg_sys::get_relname_relid(c"audit_log".as_ptr(), schema);
    if log == pg_sys::Oid::INVALID {
        return None;
    }
    let in_log = |oid: pg_sys::Oid| oid == log || descends_from(oid, log);
    if pgrx::is_a(parsetree, pg_sys::NodeTag::T_AlterTableStmt) {
        let stmt = &*(parsetree as *mut pg_sys::AlterTableStmt);
        if !in_log(relation_oid(stmt.relation)) {
            return None;
        }
        for cmd in PgList::<pg_sys::AlterTableCmd>::from_pg(stmt.cmds).iter_ptr() {
            // Both take a PartitionCmd naming the partition.
            let part = || relation_oid((*((*cmd).def as *mut pg_sys::PartitionCmd)).name);
            match (*cmd).subtype {
                pg_sys::AlterTableType::AT_DetachPartition => {
                    return Some(Refusal::log_partition_removed(
                        "detach partition",
                        &relation_name(part()),
                    ));
                }
                pg_sys::AlterTableType::AT_AttachPartition if is_foreign(part()) => {
                    return Some(Refusal::log_partition_foreign(&relation_name(part())));
                }
                _ => {}
            }
        }
        return None;
    }
    if pgrx::is_a(parsetree, pg_sys::NodeTag::T_CreateForeignTableStmt) {
        let stmt = &*(parsetree as *mut pg_sys::CreateForeignTableStmt);
        let parents = PgList::<pg_sys::RangeVar>::from_pg(stmt.base.inhRelations);
        let relation = stmt.base.relation;
        return (!stmt.base.partbound.is_null()
            && parents
                .iter_ptr()
                .any(|parent| in_log(relation_oid(parent))))
        .then(|| {
            let name = CStr::from_ptr((*relation).relname).to_string_lossy();
            Refusal::log_partition_foreign(&name)
        });
    }
    if pgrx::is_a(parsetree, pg_sys::NodeTag::T_DropStmt) {
        let stmt = &*(parsetree as *mut pg_sys::DropStmt);
        let objects = PgList::<pg_sys::Node>::from_pg(stmt.objects);
        return match stmt.removeType {
            pg_sys::ObjectType::OBJECT_TABLE | pg_sys::ObjectType::OBJECT_FOREIGN_TABLE => objects
                .iter_ptr()
                .map(|names| {
                    relation_oid(pg_sys::makeRangeVarFromNameList(names as *mut pg_sys::List))
                })
                .find(|&oid| descends_from(oid, log))
                .map(|oid| Refusal::log_partition_removed("drop partition", &relation_name(oid))),
            pg_sys::ObjectType::OBJECT_SCHEMA => {
                let schemas: Vec<pg_sys::Oid> = objects
                    .iter_ptr()
                    .filter(|&n| pgrx::is_a(n, pg_sys::NodeTag::T_String))
                    .map(|n| pg_sys::get_namespace_oid((*(n as *mut pg_sys::String)).sval, true))
                    .collect();
                partition_outside(log, schema, &schemas, &[]).map(|part| {
                    Refusal::log_partition_removed("drop the schema of partition", &part)
                })
            }
            _ => None,
        };
    }
    if pgrx::is_a(parsetree, pg_sys::NodeTag::T_DropOwnedStmt) {
        let stmt = &*(parsetree as *mut pg_sys::DropOwnedStmt);
        let roles: Vec<pg_sys::Oid> = PgList::<pg_sys::RoleSpec>::from_pg(stmt.roles)
            .iter_ptr()
            .map(|role| pg_sys::get_rolespec_oid(role, true))
            .collect();
        return partition_outside(log, schema, &[], &roles)
            .map(|part| Refusal::log_partition_removed("drop the owner of partition", &part));
    }
    None
}

/// A partition of `log` (at any depth) outside schema `olaclick` that is in
/// one of `schemas` or owned by one of `roles`, by name.
fn partition_outside(
    log: pg_sys::Oid,
    olaclick: pg_sys::Oid,
    schemas: &[pg_sys::Oid],
    roles: &[pg_sys::Oid],
) -> Option<String> {
    Spi::get_one_with_args::<String>(
        "SELECT c.oid::pg_catalog.regclass::pg_catalog.text
           FROM pg_catalog.pg_partition_tree($1) t JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) t.relid
          WHERE t.level OPERATOR(pg_catalog.>) 0 AND c.relnamespace OPERATOR(pg_catalog.<>) $2
            AND (c.relnamespace OPERATOR(pg_catalog.=) ANY ($3) OR c.relowner OPERATOR(pg_catalog.=) ANY ($4))
          LIMIT 1",
        &[log.into(), olaclick.into(), schemas.to_vec().into(), roles.to_vec().into()],
    )
    .ok()
    .flatten()
}

/// Whether `oid` is a foreign table.
fn is_foreign(oid: pg_sys::Oid) -> bool {
    // SAFETY: a syscache lookup; '\0' for a missing relation.
    oid != pg_sys::Oid::INVALID
        && unsafe { pg_sys::get_rel_relkind(oid) }
            == pg_sys::RELKIND_FOREIGN_TABLE as std::ffi::c_char
}

/// Whether `oid` is a partition of `log`, or of one of its partitions.
fn descends_from(oid: pg_sys::Oid, log: pg_sys::Oid) -> bool {
    // SAFETY: a syscache lookup; false for a missing relation.
    oid != pg_sys::Oid::INVALID
        && unsafe { pg_sys::get_rel_relispartition(oid) }
        && Spi::get_one_with_args::<bool>(
            "SELECT $2 OPERATOR(pg_catalog.=) ANY (SELECT a.relid FROM pg_catalog.pg_partition_ancestors($1) a)",
            &[oid.into(), log.into()],
        ) == Ok(Some(true))
}

/// A relation's qualified name, as a DBA reads it in the error.
fn relation_name(oid: pg_sys::Oid) -> String {
    Spi::get_one_with_args::<String>("SELECT $1::pg_catalog.regclass::text", &[oid.into()])
        .ok()
        .flatten()
        .unwrap_or_else(|| "a partition".into())
}

/// The relation a name resolves to through the caller's search_path, or
/// InvalidOid; locks nothing.
///
/// # Safety
/// `relation` is a valid RangeVar.
unsafe fn relation_oid(relation: *mut pg_sys::RangeVar) -> pg_sys::Oid {
    pg_sys::RangeVarGetRelidExtended(
        relation,
        pg_sys::NoLock as _,
        pg_sys::RVROption::RVR_MISSING_OK,
        None,
        std::ptr::null_mut(),
    )
}

/// Whether `node` is the String "olaclick".
///
/// # Safety
/// `node` is a valid parse tree node.
unsafe fn is_olaclick(node: *mut pg_sys::Node) -> bool {
    pgrx::is_a(node, pg_sys::NodeTag::T_String)
        && CStr::from_ptr((*(node as *mut pg_sys::String)).sval).to_bytes() == SCHEMA
}

/// Whether a (possibly qualified) table name resolves to a table in schema
/// olaclick, through the caller's search_path as DROP TABLE would.
///
/// # Safety
/// `names` is a valid List of String nodes, as DROP TABLE's objects are.
unsafe fn in_olaclick_schema(names: *mut pg_sys::List) -> bool {
    let schema = pg_sys::get_namespace_oid(c"olaclick".as_ptr(), true);
    if schema == pg_sys::Oid::INVALID {
        return false;
    }
    let oid = relation_oid(pg_sys::makeRangeVarFromNameList(names));
    oid != pg_sys::Oid::INVALID && pg_sys::get_rel_namespace(oid) == schema
}

fn extension_owner() -> Option<pg_sys::Oid> {
    Spi::get_one::<pg_sys::Oid>(
        "SELECT extowner FROM pg_catalog.pg_extension WHERE extname = 'olaclick'",
    )
    .ok()
    .flatten()
}

/// Whether olaclick.orders exists and has a row, read as the extension's
/// owner: whoever asks, and whatever they may see, the rows are counted.
fn holds_orders() -> bool {
    let exists =
        Spi::get_one::<bool>("SELECT pg_catalog.to_regclass('olaclick.orders') IS NOT NULL");
    if exists != Ok(Some(true)) {
        return false;
    }
    let Some(owner) = extension_owner() else {
        return false;
    };
    sandbox::as_role(owner, || {
        Spi::get_one::<bool>("SELECT EXISTS (SELECT 1 FROM olaclick.orders)")
            .ok()
            .flatten()
            .unwrap_or(false)
    })
}
