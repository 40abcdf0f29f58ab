//! Internal failures of the extension's own machinery. Business refusals never
//! travel through this type: they are raised with `ereport!` and a contract
//! SQLSTATE, because an `Err` out of a trigger reaches the client as XX000.

use pgrx::datum::TryFromDatumError;
use pgrx::heap_tuple::PgHeapTupleError;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;

use crate::refusal::Refusal;

#[derive(thiserror::Error, Debug)]
pub enum Error {
    #[error("olaclick: {0}")]
    Spi(#[from] pgrx::spi::Error),
    #[error("olaclick: {0}")]
    Tuple(#[from] PgHeapTupleError),
    #[error("olaclick: {0}")]
    Datum(#[from] TryFromDatumError),
    #[error("olaclick: {0}")]
    Trigger(#[from] PgTriggerError),
    #[error("olaclick: {0}")]
    Time(#[from] pgrx::datetime::FromTimeError),
    #[error("olaclick: trigger {0} fired on the wrong event")]
    WrongEvent(&'static str),
}

/// Refuses the statement with a contract SQLSTATE, a message a person can act
/// on, the row it is about (detail) and what is allowed instead (hint).
/// Called only by `Refusal::raise` (src/refusal.rs, the catalogue).
#[track_caller]
pub fn refuse(code: PgSqlErrorCode, message: String, detail: String, hint: String) -> ! {
    ErrorReport::new(code, message, "olaclick")
        .set_detail(detail)
        .set_hint(hint)
        .report(PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}

/// Column `name` of `row` (a row of olaclick.`table`) as `T`. A column a
/// DBA renamed, dropped or retyped is refused, naming the table and the
/// column (42703 missing, 42804 another type), never read as what it isn't
/// and never an XX000.
pub fn column<'t, T, A>(row: &'t PgHeapTuple<'_, A>, table: &str, name: &str) -> Option<T>
where
    T: FromDatum + IntoDatum + pgrx::datum::UnboxDatum<As<'t> = T> + 't,
    A: WhoAllocated,
{
    row.get_by_name::<T>(name)
        .unwrap_or_else(|e| refuse_column(table, name, e))
}

/// Sets column `name` of `row` (a row of olaclick.`table`), refused as
/// `column` refuses.
pub fn set_column<T: IntoDatum>(
    row: &mut PgHeapTuple<'_, AllocatedByRust>,
    table: &str,
    name: &str,
    value: T,
) {
    row.set_by_name(name, value)
        .unwrap_or_else(|e| refuse_column(table, name, e))
}

fn refuse_column(table: &str, name: &str, error: TryFromDatumError) -> ! {
    match error {
        TryFromDatumError::NoSuchAttributeName(_) | TryFromDatumError::NoSuchAttributeNumber(_) => {
            Refusal::column_missing(table, name).raise()
        }
        other => Refusal::column_type(table, name, &other.to_string()).raise(),
    }
}
