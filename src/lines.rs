//! Order lines (`order_details`).
//!
//! Tenancy of a line is declared by keys on (restaurant_id, order_id) and
//! (restaurant_id, product_id); application SQL need not repeat the tenant, so
//! this trigger copies it from the order when the insert leaves it out.

use pgrx::prelude::*;

use crate::error::{refuse, Error};
use crate::plans::Stmt;

static ORDER_TENANT: Stmt = Stmt {
    sql: "SELECT restaurant_id FROM olaclick.orders WHERE id = $1",
    args: &[PgBuiltInOids::INT8OID],
};

/// BEFORE INSERT FOR EACH ROW on `olaclick.order_details`.
#[pg_trigger]
fn order_details_before_insert<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, impl WhoAllocated>>, Error> {
    let mut line = trigger
        .new()
        .ok_or(Error::WrongEvent("order_details_before_insert"))?
        .into_owned();
    if line.get_by_name::<i32>("restaurant_id")?.is_none() {
        // NULL order_id is left for the NOT NULL constraint to report.
        if let Some(order_id) = line.get_by_name::<i64>("order_id")? {
            let restaurant_id = Spi::connect_mut(|client| {
                ORDER_TENANT.run(client, &[order_id.into()], |rows| match rows.is_empty() {
                    true => Ok(None),
                    false => rows.first().get_one::<i32>(),
                })
            })?;
            match restaurant_id {
                Some(restaurant_id) => line.set_by_name("restaurant_id", restaurant_id)?,
                None => refuse(
                    PgSqlErrorCode::ERRCODE_FOREIGN_KEY_VIOLATION,
                    format!("order {order_id} does not exist"),
                    format!("An order line was inserted for order_id = {order_id}."),
                    "Insert the order first, or check the order id.".into(),
                ),
            }
        }
    }
    Ok(Some(line))
}
