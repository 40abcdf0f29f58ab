//! Internal failures of the extension's own machinery. Business refusals never
//! travel through this type: they are raised with `ereport!` and a contract
//! SQLSTATE, because an `Err` out of a trigger reaches the client as XX000.

use pgrx::datum::TryFromDatumError;
use pgrx::heap_tuple::PgHeapTupleError;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;

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
#[track_caller]
pub fn refuse(code: PgSqlErrorCode, message: String, detail: String, hint: String) -> ! {
    ErrorReport::new(code, message, "olaclick")
        .set_detail(detail)
        .set_hint(hint)
        .report(PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}
