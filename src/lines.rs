//! Order lines (`order_details`) as they are inserted (contract rule 5).
//!
//! Application SQL may leave out the line's tenant and its price: the tenant is
//! copied from the order (the composite keys then check the product), and the
//! price is the product's current price. A line that gives both costs no SPI
//! call at all, which keeps bulk inserts fast.
//!
//! An order's tenant never changes (moving an order to another restaurant is
//! refused by its lines' and history's keys), so this backend remembers the
//! tenant of the orders it inserted or looked up: a line that gives its price
//! but not its tenant, as ORMs send it, costs no SPI call either. A wrong
//! tenant can't slip through a stale entry: the line's composite key
//! (restaurant_id, order_id) is still checked against the order (23503).

use std::cell::RefCell;
use std::collections::HashMap;

use pgrx::prelude::*;
use pgrx::AnyNumeric;

use crate::error::{refuse, Error};
use crate::plans::Stmt;
use crate::restore::restoring;
use crate::sandbox;

/// The order's tenant, and the product's price if the product is the tenant's.
static ORDER_AND_PRICE: Stmt = Stmt {
    sql: "SELECT o.restaurant_id, p.price
          FROM olaclick.orders o
          LEFT JOIN olaclick.products p ON p.restaurant_id = o.restaurant_id AND p.id = $2
          WHERE o.id = $1",
    args: &[PgBuiltInOids::INT8OID, PgBuiltInOids::INT4OID],
};

/// How many order tenants a backend remembers; past it, it starts afresh.
const KNOWN_TENANTS: usize = 4096;

thread_local! {
    static TENANT_OF: RefCell<HashMap<i64, i32>> = RefCell::new(HashMap::new());
}

/// Remembers that `order` belongs to `restaurant` (called for every order
/// inserted, by src/status.rs).
pub fn remember_tenant(order: i64, restaurant: i32) {
    TENANT_OF.with(|known| {
        let mut known = known.borrow_mut();
        if known.len() >= KNOWN_TENANTS {
            known.clear();
        }
        known.insert(order, restaurant);
    });
}

/// BEFORE INSERT ON order_details FOR EACH ROW.
#[pg_trigger]
fn order_details_defaults<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, impl WhoAllocated>>, Error> {
    let mut line = trigger
        .new()
        .ok_or(Error::WrongEvent("order_details_defaults"))?
        .into_owned();
    let given_tenant = line.get_by_name::<i32>("restaurant_id")?;
    let given_price = line.get_by_name::<AnyNumeric>("price")?;
    if (given_tenant.is_some() && given_price.is_some()) || restoring() {
        return Ok(Some(line));
    }
    // NULL ids are left for the NOT NULL constraints to report.
    let (Some(order), Some(product)) = (
        line.get_by_name::<i64>("order_id")?,
        line.get_by_name::<i32>("product_id")?,
    ) else {
        return Ok(Some(line));
    };
    if given_price.is_some() {
        if let Some(restaurant) = TENANT_OF.with(|known| known.borrow().get(&order).copied()) {
            line.set_by_name("restaurant_id", restaurant)?;
            return Ok(Some(line));
        }
    }
    // Read as the owner: row-level security decides which lines the caller
    // may write (the policy's WITH CHECK on the line), not what the order's
    // tenant or the product's price is.
    let found = sandbox::as_owner(trigger.trigger_data().tg_relation, || {
        Spi::connect_mut(|client| {
            ORDER_AND_PRICE.first(client, &[order.into(), product.into()], |row| {
                row.get_two::<i32, AnyNumeric>()
            })
        })
    })?;
    let Some((Some(restaurant), price)) = found else {
        refuse(
            PgSqlErrorCode::ERRCODE_FOREIGN_KEY_VIOLATION,
            format!("order {order} does not exist"),
            format!("An order line was inserted for order_id = {order}."),
            "Insert the order first, or check the order id.".into(),
        );
    };
    remember_tenant(order, restaurant);
    if given_tenant.is_none() {
        line.set_by_name("restaurant_id", restaurant)?;
    }
    if given_price.is_none() {
        match price {
            Some(price) => line.set_by_name("price", price)?,
            None => refuse(
                PgSqlErrorCode::ERRCODE_FOREIGN_KEY_VIOLATION,
                format!("product {product} is not a product of restaurant {restaurant}"),
                format!(
                    "A line of order {order} (restaurant {restaurant}) names product {product}."
                ),
                "Use one of the order's restaurant's products.".into(),
            ),
        }
    }
    Ok(Some(line))
}
