//! `DROP EXTENSION olaclick` must not silently destroy business data.
//!
//! An event trigger on `ddl_command_start` runs before anything is dropped.
//! Only C can see the statement's parse tree there, which is how this guard
//! knows that *this* extension is the one being dropped (`DROP EXTENSION a, b`
//! included) without refusing drops of unrelated extensions.

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::error::refuse;
use crate::gucs;

#[no_mangle]
pub extern "C" fn pg_finfo_olaclick_drop_guard() -> &'static pg_sys::Pg_finfo_record {
    static V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1
}

/// `olaclick.drop_guard()`, an `event_trigger` function (see `sql/finalize.sql`).
#[no_mangle]
#[pg_guard]
pub unsafe extern "C-unwind" fn olaclick_drop_guard(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    let context = (*fcinfo).context;
    if context.is_null() || !pgrx::is_a(context, pg_sys::NodeTag::T_EventTriggerData) {
        error!("olaclick.drop_guard() can only be called as an event trigger");
    }
    let event = context as *mut pg_sys::EventTriggerData;
    if drops_olaclick((*event).parsetree) && !gucs::ALLOW_DROP.get() && holds_orders() {
        refuse(
            PgSqlErrorCode::ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST,
            "cannot drop extension olaclick while it holds orders".into(),
            "DROP EXTENSION olaclick would destroy every table of the data model with its rows.".into(),
            "Dump the data first (pg_dump), then SET olaclick.allow_drop = on in this session to drop it anyway."
                .into(),
        );
    }
    pg_sys::Datum::from(0)
}

unsafe fn drops_olaclick(parsetree: *mut pg_sys::Node) -> bool {
    if parsetree.is_null() || !pgrx::is_a(parsetree, pg_sys::NodeTag::T_DropStmt) {
        return false;
    }
    let stmt = parsetree as *mut pg_sys::DropStmt;
    if (*stmt).removeType != pg_sys::ObjectType::OBJECT_EXTENSION {
        return false;
    }
    let names = pgrx::PgList::<pg_sys::Node>::from_pg((*stmt).objects);
    let named = names.iter_ptr().any(|name| {
        pgrx::is_a(name, pg_sys::NodeTag::T_String)
            && std::ffi::CStr::from_ptr((*(name as *mut pg_sys::String)).sval).to_bytes()
                == b"olaclick"
    });
    named
}

fn holds_orders() -> bool {
    Spi::get_one::<bool>("SELECT EXISTS (SELECT 1 FROM olaclick.orders)")
        .ok()
        .flatten()
        .unwrap_or(false)
}
