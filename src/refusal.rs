//! Every refusal olaclick raises, in one place: a constructor per kind, each
//! with its SQLSTATE (`Kind::sqlstate`), message, detail and hint. Callers
//! write `Refusal::lines_frozen(..).raise()`; nothing else builds an error a
//! client sees. docs/guarantees.md's table "Every refusal" lists each kind
//! with its SQLSTATE, and a test (src/tests/catalogue.rs) checks that the
//! two agree.

use pgrx::prelude::*;

/// The kinds of refusal, each with one SQLSTATE.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    NewOrderNotInitiated,
    StatusMove,
    UnknownStatus,
    NullStatus,
    LinesFrozen,
    TotalWritten,
    Truncate,
    AppendOnly,
    HistoryOfLiveOrder,
    OrderMissing,
    ProductOfAnotherRestaurant,
    CreatorNotAUser,
    UserIsCreator,
    HistoryOrderGone,
    DropWithOrders,
    DropGuardCalled,
    PrepareAfterOrderChange,
    BadId,
    JsonbStringTooLong,
    PurgeWithoutTime,
    PurgeIntoLog,
    PurgeArchiveDenied,
    PurgeArchiveSchemaUnsupported,
    MaintainSince,
    TableMissing,
    NotATable,
    ColumnMissing,
    ColumnType,
    Internal,
}

// ALL and sqlstate serve the catalogue's test.
#[cfg_attr(not(any(test, feature = "pg_test")), allow(dead_code))]
impl Kind {
    /// Every kind, for the catalogue's test.
    pub const ALL: [Kind; 29] = [
        Kind::NewOrderNotInitiated,
        Kind::StatusMove,
        Kind::UnknownStatus,
        Kind::NullStatus,
        Kind::LinesFrozen,
        Kind::TotalWritten,
        Kind::Truncate,
        Kind::AppendOnly,
        Kind::HistoryOfLiveOrder,
        Kind::OrderMissing,
        Kind::ProductOfAnotherRestaurant,
        Kind::CreatorNotAUser,
        Kind::UserIsCreator,
        Kind::HistoryOrderGone,
        Kind::DropWithOrders,
        Kind::DropGuardCalled,
        Kind::PrepareAfterOrderChange,
        Kind::BadId,
        Kind::JsonbStringTooLong,
        Kind::PurgeWithoutTime,
        Kind::PurgeIntoLog,
        Kind::PurgeArchiveDenied,
        Kind::PurgeArchiveSchemaUnsupported,
        Kind::MaintainSince,
        Kind::TableMissing,
        Kind::NotATable,
        Kind::ColumnMissing,
        Kind::ColumnType,
        Kind::Internal,
    ];

    pub fn code(self) -> PgSqlErrorCode {
        use PgSqlErrorCode::*;
        match self {
            Kind::NewOrderNotInitiated
            | Kind::StatusMove
            | Kind::LinesFrozen
            | Kind::TotalWritten => ERRCODE_CHECK_VIOLATION,
            Kind::UnknownStatus => ERRCODE_INVALID_TEXT_REPRESENTATION,
            Kind::NullStatus => ERRCODE_NOT_NULL_VIOLATION,
            Kind::Truncate | Kind::AppendOnly | Kind::HistoryOfLiveOrder => {
                ERRCODE_INSUFFICIENT_PRIVILEGE
            }
            Kind::OrderMissing
            | Kind::ProductOfAnotherRestaurant
            | Kind::CreatorNotAUser
            | Kind::UserIsCreator
            | Kind::HistoryOrderGone => ERRCODE_FOREIGN_KEY_VIOLATION,
            Kind::DropWithOrders => ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST,
            Kind::DropGuardCalled => ERRCODE_E_R_I_E_EVENT_TRIGGER_PROTOCOL_VIOLATED,
            Kind::PrepareAfterOrderChange => ERRCODE_FEATURE_NOT_SUPPORTED,
            Kind::BadId | Kind::PurgeIntoLog | Kind::MaintainSince => {
                ERRCODE_INVALID_PARAMETER_VALUE
            }
            Kind::JsonbStringTooLong => ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            Kind::PurgeWithoutTime => ERRCODE_NULL_VALUE_NOT_ALLOWED,
            Kind::PurgeArchiveDenied => ERRCODE_INSUFFICIENT_PRIVILEGE,
            Kind::PurgeArchiveSchemaUnsupported => ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            Kind::TableMissing => ERRCODE_UNDEFINED_TABLE,
            Kind::NotATable => ERRCODE_WRONG_OBJECT_TYPE,
            Kind::ColumnMissing => ERRCODE_UNDEFINED_COLUMN,
            Kind::ColumnType => ERRCODE_DATATYPE_MISMATCH,
            Kind::Internal => ERRCODE_INTERNAL_ERROR,
        }
    }

    /// The five-character SQLSTATE, as clients and docs show it.
    pub fn sqlstate(self) -> String {
        let code = self.code() as i32;
        // PostgreSQL packs each of the five characters in 6 bits.
        (0..5)
            .map(|i| (((code >> (6 * i)) & 0x3f) as u8 + b'0') as char)
            .collect()
    }
}

/// One refusal, ready to raise.
pub struct Refusal {
    pub kind: Kind,
    pub message: String,
    pub detail: String,
    pub hint: String,
}

const HISTORY_HINT: &str =
    "History is written by olaclick when orders are inserted or change status, and is deleted with its order.";
const AUDIT_HINT: &str =
    "The audit log is written by olaclick; olaclick.audit_purge() archives and removes old rows.";
const REPORT: &str = "Report this with the statement that caused it.";

fn new(kind: Kind, message: String, detail: String, hint: impl Into<String>) -> Refusal {
    Refusal {
        kind,
        message,
        detail,
        hint: hint.into(),
    }
}

impl Refusal {
    /// Raises the refusal: the statement fails with its SQLSTATE.
    #[track_caller]
    pub fn raise(self) -> ! {
        crate::error::refuse(self.kind.code(), self.message, self.detail, self.hint)
    }

    pub fn new_order_not_initiated(order: i64, restaurant: i32, status: &str) -> Refusal {
        new(
            Kind::NewOrderNotInitiated,
            format!("a new order must start as initiated, not {status}"),
            format!("Order {order} of restaurant {restaurant} was inserted with status {status}."),
            "Insert the order without a status, then move it forward with UPDATE.",
        )
    }

    /// `next`: the only status `from` may move to (`None`: `from` is final).
    pub fn status_move(
        order: i64,
        restaurant: i32,
        from: &str,
        to: &str,
        next: Option<&str>,
    ) -> Refusal {
        new(
            Kind::StatusMove,
            format!("order status cannot move from {from} to {to}"),
            format!("Order {order} of restaurant {restaurant} is {from}."),
            match next {
                Some(next) => format!("From {from} the only next status is {next}."),
                None => format!("{from} is final: the order's status can't change any more."),
            },
        )
    }

    pub fn unknown_status(order: i64, restaurant: i32, label: &str) -> Refusal {
        new(
            Kind::UnknownStatus,
            format!("olaclick does not know the order status \"{label}\""),
            format!("Order {order} of restaurant {restaurant}."),
            "olaclick.order_status was changed by hand; restore its labels.",
        )
    }

    pub fn null_status(order: i64, restaurant: i32) -> Refusal {
        new(
            Kind::NullStatus,
            "null value in column \"status\" of relation \"orders\" violates not-null constraint"
                .into(),
            format!("Order {order} of restaurant {restaurant} was written with a NULL status."),
            "Leave status out of an INSERT (it starts as initiated); UPDATE it to the next status.",
        )
    }

    pub fn lines_frozen(order: i64, restaurant: i32, status: &str) -> Refusal {
        new(
            Kind::LinesFrozen,
            format!("the lines of order {order} are frozen: the order is {status}"),
            format!("Order {order} of restaurant {restaurant} is {status}; only initiated orders take line changes."),
            "Change an order's lines before it is sent.",
        )
    }

    pub fn total_written(order: i64, restaurant: i32, was: &str, to: &str) -> Refusal {
        new(
            Kind::TotalWritten,
            "orders.total is the sum of the order's lines and can't be written directly".into(),
            format!("Order {order} of restaurant {restaurant}: total {was} can't be set to {to}."),
            "Insert, update or delete rows of olaclick.order_details; the total follows them.",
        )
    }

    /// TRUNCATE of the lines: it would skip the triggers that keep totals
    /// and frozen lines (history and the log refuse it as append-only).
    pub fn truncate_lines() -> Refusal {
        new(
            Kind::Truncate,
            "olaclick.order_details can't be truncated".into(),
            "TRUNCATE bypasses the triggers that keep orders.total equal to the lines and keep sent orders' lines.".into(),
            "DELETE the lines (or the orders) instead.",
        )
    }

    /// An UPDATE, DELETE or TRUNCATE of history or audit rows.
    pub fn append_only(table: &str, action: &str) -> Refusal {
        new(
            Kind::AppendOnly,
            format!("olaclick.{table} is append-only: {action} is not allowed"),
            format!("A statement tried to {action} rows of olaclick.{table}."),
            if table.starts_with("audit_log") {
                AUDIT_HINT
            } else {
                HISTORY_HINT
            },
        )
    }

    pub fn history_of_live_order(order: i64) -> Refusal {
        new(
            Kind::HistoryOfLiveOrder,
            "olaclick.order_status_history is append-only: delete is not allowed".into(),
            format!("A statement tried to delete history of order {order}, which still exists."),
            HISTORY_HINT,
        )
    }

    /// A line for an order that doesn't exist or that the caller can't see:
    /// the same answer for both, so ids can't be probed across tenants.
    pub fn order_missing(order: i64) -> Refusal {
        new(
            Kind::OrderMissing,
            format!("order {order} does not exist"),
            format!("An order line was inserted for order_id = {order}."),
            "Insert the order first, or check the order id.",
        )
    }

    pub fn product_of_another_restaurant(product: i32, order: i64, restaurant: i32) -> Refusal {
        new(
            Kind::ProductOfAnotherRestaurant,
            format!("product {product} is not a product of restaurant {restaurant}"),
            format!("A line of order {order} (restaurant {restaurant}) names product {product}."),
            "Use one of the order's restaurant's products.",
        )
    }

    /// `owner`: the restaurant the user belongs to, if the user exists.
    pub fn creator_not_a_user(user: i32, restaurant: i32, owner: Option<i32>) -> Refusal {
        new(
            Kind::CreatorNotAUser,
            format!("user {user} is not a user of restaurant {restaurant}"),
            match owner {
                Some(owner) => format!("User {user} belongs to restaurant {owner}."),
                None => format!("There is no user {user}."),
            },
            "A restaurant's created_by_user_id must name one of its own users.",
        )
    }

    pub fn user_is_creator(user: i32, restaurant: i32) -> Refusal {
        new(
            Kind::UserIsCreator,
            format!("user {user} is the creator of restaurant {restaurant}"),
            format!("restaurants.created_by_user_id = {user} for restaurant {restaurant}."),
            "Set the restaurant's created_by_user_id to another of its users (or NULL) first, or deactivate the user (status 'I' or 'B').",
        )
    }

    /// A history row whose order its own statement removed first: what
    /// PostgreSQL's foreign-key check would say.
    pub fn history_order_gone(table: &str, key: &str, restaurant: i32, order: i64) -> Refusal {
        new(
            Kind::HistoryOrderGone,
            format!("insert or update on table \"{table}\" violates foreign key constraint \"{key}\""),
            format!("Key (restaurant_id, order_id)=({restaurant}, {order}) is not present in table \"orders\"."),
            "The order was deleted (or its key changed) by the same statement that changed it, before its history was written.",
        )
    }

    pub fn drop_with_orders(what: &str) -> Refusal {
        new(
            Kind::DropWithOrders,
            format!("cannot {what} while olaclick holds orders"),
            format!("{what} would destroy olaclick's tables with their rows."),
            "Dump the data first (pg_dump), then SET olaclick.allow_drop = on in this session to drop it anyway.",
        )
    }

    pub fn drop_guard_called() -> Refusal {
        new(
            Kind::DropGuardCalled,
            "olaclick.drop_guard() can only be called as an event trigger".into(),
            "It was called directly.".into(),
            "It runs by itself before DDL that would drop olaclick's data.",
        )
    }

    pub fn prepare_after_order_change() -> Refusal {
        new(
            Kind::PrepareAfterOrderChange,
            "cannot PREPARE a transaction that changed olaclick orders".into(),
            "Its cache invalidation would be lost: PostgreSQL can't NOTIFY from a prepared transaction.".into(),
            "Commit the transaction directly.",
        )
    }

    /// A setting that must hold a positive integer id.
    pub fn bad_id(setting: &str, text: &str) -> Refusal {
        new(
            Kind::BadId,
            format!("{setting} must be a positive integer id, not \"{text}\""),
            format!("{setting} is \"{text}\"."),
            format!("SET {setting} to the id, or RESET it to act without one."),
        )
    }

    pub fn jsonb_string_too_long(limit: usize) -> Refusal {
        new(
            Kind::JsonbStringTooLong,
            "string too long to represent as jsonb string".into(),
            format!(
                "Due to an implementation restriction, jsonb strings cannot exceed {limit} bytes."
            ),
            "Leave the column out of the audit: olaclick.audit_exclude(table_name, columns).",
        )
    }

    pub fn purge_without_time() -> Refusal {
        new(
            Kind::PurgeWithoutTime,
            "olaclick.audit_purge: older_than must not be NULL".into(),
            "older_than is NULL.".into(),
            "Give the time before which audit rows go, e.g. now() - interval '1 year'.",
        )
    }

    pub fn purge_into_log(archive_to: &str) -> Refusal {
        new(
            Kind::PurgeIntoLog,
            "olaclick.audit_purge: archive_to can't be the audit log itself".into(),
            format!("archive_to is {archive_to}."),
            "Archive into a table of your own with audit_log's columns, e.g. CREATE TABLE audit_archive (LIKE olaclick.audit_log).",
        )
    }

    /// A partition of the audit log detached or dropped by hand
    /// (src/drop_guard.rs): its rows would leave the log.
    pub fn log_partition_removed(action: &str, partition: &str) -> Refusal {
        new(
            Kind::AppendOnly,
            format!("olaclick.audit_log is append-only: {action} {partition} is not allowed"),
            format!("A statement tried to {action} {partition}, taking its rows out of olaclick.audit_log."),
            "Partitions of the log leave only through olaclick.audit_purge(older_than[, archive_to]), which can archive them into a schema of yours.",
        )
    }

    /// A foreign table made a partition of the log: olaclick can't keep
    /// rows it doesn't store append-only (nor guard the table: foreign tables
    /// take no TRUNCATE trigger and no row-level security).
    pub fn log_partition_foreign(table: &str) -> Refusal {
        new(
            Kind::NotATable,
            format!("olaclick.audit_log's partitions must be tables: {table} is a foreign table"),
            format!("A statement tried to make the foreign table {table} a partition of olaclick.audit_log, whose rows olaclick keeps append-only."),
            "Archive old months with olaclick.audit_purge(older_than, archive_to) and move the archive where you like.",
        )
    }

    pub fn purge_archive_denied(schema: &str) -> Refusal {
        new(
            Kind::PurgeArchiveDenied,
            format!("olaclick.audit_purge: permission denied to archive into schema {schema}"),
            format!("The role running audit_purge has no CREATE privilege on schema {schema}, where the removed months would go."),
            "Grant it CREATE on that schema, or archive into a schema of its own.",
        )
    }

    pub fn purge_archive_schema_unsupported(schema: &str) -> Refusal {
        new(
            Kind::PurgeArchiveSchemaUnsupported,
            format!("olaclick.audit_purge: can't archive into schema {schema} before 0.4.0"),
            "This database's olaclick SQL keeps the audit log in one table, which archives into a table only.".into(),
            "Run ALTER EXTENSION olaclick UPDATE, or name a table with audit_log's columns.",
        )
    }

    pub fn maintain_since(since: &str) -> Refusal {
        new(
            Kind::MaintainSince,
            "olaclick.maintain: since must be a moment at most ten years back".into(),
            format!("since is {since}; every month from it is a partition made in one transaction."),
            "Give a later since: older months are made for the rows that arrive for them (waiting in the default partition).",
        )
    }

    pub fn table_missing(table: &str) -> Refusal {
        new(
            Kind::TableMissing,
            format!("olaclick.{table} is missing"),
            "olaclick writes and reads this table itself and can't find it.".into(),
            "Reinstall the extension or restore the table.",
        )
    }

    /// One of olaclick's tables replaced by something that is not a table
    /// (a view, a partitioned table) where olaclick reads it directly.
    pub fn not_a_table(table: &str) -> Refusal {
        new(
            Kind::NotATable,
            format!("olaclick.{table} is not a table"),
            "olaclick reads this table itself, row by row.".into(),
            "Restore the table as olaclick creates it.",
        )
    }

    /// A column olaclick's code reads or writes by name, missing (a DBA
    /// renamed or dropped it).
    pub fn column_missing(table: &str, column: &str) -> Refusal {
        new(
            Kind::ColumnMissing,
            format!("olaclick.{table} has no column {column}"),
            format!("olaclick reads and writes olaclick.{table}.{column} by name."),
            "Restore the column as olaclick creates it; docs/guarantees.md lists the DDL olaclick's tables support.",
        )
    }

    /// A column olaclick's code reads by name, of a type it can't read.
    pub fn column_type(table: &str, column: &str, found: &str) -> Refusal {
        new(
            Kind::ColumnType,
            format!("olaclick.{table}.{column} does not have the type olaclick created it with"),
            format!("olaclick's triggers read this column by name: {found}."),
            "Restore the column as olaclick creates it; docs/guarantees.md lists the DDL olaclick's tables support.",
        )
    }

    /// A failure of olaclick's own machinery, never of the caller's data.
    pub fn internal(what: String, detail: &str) -> Refusal {
        new(Kind::Internal, what, detail.into(), REPORT)
    }
}
