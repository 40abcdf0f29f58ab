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
//! but not its tenant, as ORMs send it, costs no SPI call either. What is
//! remembered is forgotten with the orders table's relcache entry (a
//! TRUNCATE, a restore, DROP and CREATE EXTENSION), and a wrong tenant can't
//! slip through a stale entry anyway: the line's composite key
//! (restaurant_id, order_id) is still checked against the order (23503).
//!
//! The order and the product are looked up as the caller sees them, under
//! row-level security: an order of another tenant is refused exactly as a
//! missing one ("order N does not exist", 23503), so ids can't be probed
//! across tenants, and a remembered tenant is used only for a session acting
//! for that tenant (or a role row-level security doesn't apply to).

use std::cell::RefCell;
use std::collections::HashMap;

use pgrx::pg_sys::{self, Oid};
use pgrx::prelude::*;
use pgrx::AnyNumeric;

use crate::error::{column, set_column, Error};
use crate::plans::Stmt;
use crate::refusal::Refusal;
use crate::restore::restoring;

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
    /// The orders table the tenants were remembered from, and the tenants.
    static TENANT_OF: RefCell<(Oid, HashMap<i64, i32>)> = RefCell::new((Oid::INVALID, HashMap::new()));
}

/// Registered once per backend in `_PG_init`: what a transaction or
/// subtransaction remembered is forgotten when it aborts (its orders are
/// gone, and their ids may be given to other restaurants' orders).
pub fn init() {
    // SAFETY: plain function pointers, valid for the life of the library.
    unsafe {
        pg_sys::RegisterXactCallback(Some(on_xact_event), std::ptr::null_mut());
        pg_sys::RegisterSubXactCallback(Some(on_subxact_event), std::ptr::null_mut());
    }
}

#[pg_guard]
/// # Safety
/// Called by PostgreSQL's transaction machinery.
unsafe extern "C-unwind" fn on_xact_event(
    event: pg_sys::XactEvent::Type,
    _arg: *mut std::ffi::c_void,
) {
    if event == pg_sys::XactEvent::XACT_EVENT_ABORT
        || event == pg_sys::XactEvent::XACT_EVENT_PARALLEL_ABORT
    {
        forget_tenants(Oid::INVALID);
    }
}

#[pg_guard]
/// # Safety
/// Called by PostgreSQL's transaction machinery.
unsafe extern "C-unwind" fn on_subxact_event(
    event: pg_sys::SubXactEvent::Type,
    _sub: pg_sys::SubTransactionId,
    _parent: pg_sys::SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
    if event == pg_sys::SubXactEvent::SUBXACT_EVENT_ABORT_SUB {
        forget_tenants(Oid::INVALID);
    }
}

/// Remembers that `order` of table `orders` belongs to `restaurant` (called
/// for every order inserted, once its statement inserted it, by
/// src/status.rs, and for every order a line looked up).
pub fn remember_tenant(orders: Oid, order: i64, restaurant: i32) {
    TENANT_OF.with(|known| {
        let (table, known) = &mut *known.borrow_mut();
        if *table != orders || known.len() >= KNOWN_TENANTS {
            known.clear();
            *table = orders;
        }
        known.insert(order, restaurant);
    });
}

/// Forgets the remembered tenants if `relid` is the orders table they came
/// from (or InvalidOid: everything). Called from a relcache invalidation
/// callback: frees memory, reads nothing.
pub fn forget_tenants(relid: Oid) {
    TENANT_OF.with(|known| {
        let (table, known) = &mut *known.borrow_mut();
        if relid == Oid::INVALID || relid == *table {
            known.clear();
        }
    });
}

/// The remembered tenant of `order`, if this session may use it: it acts for
/// that tenant, or row-level security doesn't apply to it on the orders
/// table the tenant was remembered from.
fn remembered_tenant(order: i64) -> Option<i32> {
    let (orders, restaurant) = TENANT_OF.with(|known| {
        let known = known.borrow();
        known.1.get(&order).map(|r| (known.0, *r))
    })?;
    if crate::gucs::current_restaurant() == Some(restaurant) {
        return Some(restaurant);
    }
    // SAFETY: a catalog and role check; no error with noError = true.
    let rls = unsafe { pg_sys::check_enable_rls(orders, Oid::INVALID, true) };
    (rls != pg_sys::CheckEnableRlsResult::RLS_ENABLED as i32).then_some(restaurant)
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
    let given_tenant = column::<i32, _>(&line, "order_details", "restaurant_id");
    let given_price = column::<AnyNumeric, _>(&line, "order_details", "price");
    if (given_tenant.is_some() && given_price.is_some()) || restoring() {
        return Ok(Some(line));
    }
    // NULL ids are left for the NOT NULL constraints to report.
    let (Some(order), Some(product)) = (
        column::<i64, _>(&line, "order_details", "order_id"),
        column::<i32, _>(&line, "order_details", "product_id"),
    ) else {
        return Ok(Some(line));
    };
    if given_price.is_some() {
        if let Some(restaurant) = remembered_tenant(order) {
            set_column(&mut line, "order_details", "restaurant_id", restaurant);
            return Ok(Some(line));
        }
    }
    // As the caller: an order or a product row-level security hides is one
    // the caller can't name.
    let found = Spi::connect_mut(|client| {
        ORDER_AND_PRICE.first(client, &[order.into(), product.into()], |row| {
            row.get_two::<i32, AnyNumeric>()
        })
    })?;
    let Some((Some(restaurant), price)) = found else {
        Refusal::order_missing(order).raise();
    };
    remember_tenant(crate::native::orders_relid(), order, restaurant);
    if given_tenant.is_none() {
        set_column(&mut line, "order_details", "restaurant_id", restaurant);
    }
    if given_price.is_none() {
        match price {
            Some(price) => set_column(&mut line, "order_details", "price", price),
            None => Refusal::product_of_another_restaurant(product, order, restaurant).raise(),
        }
    }
    Ok(Some(line))
}
