//! `#[pg_test]`s: each runs inside its own transaction, rolled back at the end.
//! Sequences do not roll back, so tests use `RETURNING id`, never literal ids.

use pgrx::prelude::*;

mod audit;
mod catalogue;
mod demo;
mod drop_guard;
mod hostile;
mod native_safety;
mod orders;
mod retention;
mod schema;
mod security;
mod tenancy;
mod tenant_scope;
// Table shapes only PostgreSQL 18 can make.
#[cfg(feature = "pg18")]
mod pg18;
mod write_path;

/// Runs `sql` in a subtransaction and returns `SQLSTATE: message` if it
/// failed, `None` if it succeeded. The subtransaction (a PL/pgSQL exception
/// block) keeps the test's transaction usable after the error.
pub fn try_sql(sql: &str) -> Option<String> {
    // Created once per session (whoever creates it owns it; tests switch roles).
    Spi::run(
        "DO $do$ BEGIN
           IF to_regprocedure('pg_temp.olaclick_try(text)') IS NULL THEN
             CREATE FUNCTION pg_temp.olaclick_try(sql text) RETURNS text
             LANGUAGE plpgsql AS $$
             BEGIN EXECUTE sql; RETURN NULL;
             EXCEPTION WHEN OTHERS THEN RETURN SQLSTATE || ': ' || SQLERRM;
             END $$;
           END IF;
         END $do$",
    )
    .unwrap();
    Spi::get_one_with_args::<String>("SELECT pg_temp.olaclick_try($1)", &[sql.into()]).unwrap()
}

/// Asserts that `sql` fails with `sqlstate`, and returns the message.
#[track_caller]
pub fn assert_fails(sql: &str, sqlstate: &str) -> String {
    match try_sql(sql) {
        None => panic!("expected {sqlstate}, but it succeeded: {sql}"),
        Some(error) => {
            assert!(
                error.starts_with(sqlstate),
                "expected {sqlstate}, got {error}\n  for: {sql}"
            );
            error
        }
    }
}

#[track_caller]
pub fn assert_ok(sql: &str) {
    if let Some(error) = try_sql(sql) {
        panic!("expected success, got {error}\n  for: {sql}");
    }
}

/// The single value `sql` returns. Runs without a row limit: with one (as
/// `Spi::get_one` has), the executor stops an `INSERT ... RETURNING` after its
/// first row and statement-level AFTER triggers never fire.
pub fn one<T: pgrx::IntoDatum + pgrx::FromDatum>(sql: &str) -> T {
    Spi::connect_mut(|client| client.update(sql, None, &[])?.first().get_one::<T>())
        .unwrap()
        .unwrap_or_else(|| panic!("NULL from {sql}"))
}

/// Native writes on, or off (the SQL path), for the rest of the test's
/// transaction (`olaclick.native_writes`, a setting for tests).
pub fn native_writes(on: bool) {
    Spi::run(&format!("SET LOCAL olaclick.native_writes = {on}")).unwrap();
}

/// Acts as `role` for the rest of the test's transaction, for `restaurant`
/// (row-level security) or for no tenant.
pub fn act_as(role: &str, restaurant: Option<i32>) {
    Spi::run(&format!("SET LOCAL ROLE {role}")).unwrap();
    match restaurant {
        Some(r) => Spi::run(&format!("SET LOCAL olaclick.restaurant_id = '{r}'")).unwrap(),
        None => Spi::run("RESET olaclick.restaurant_id").unwrap(),
    }
}

pub fn back_to_superuser() {
    Spi::run("RESET ROLE").unwrap();
    Spi::run("RESET olaclick.restaurant_id").unwrap();
}

/// The UPDATE that moves `order` to `status`.
pub fn set_status(order: i64, status: &str) -> String {
    format!("UPDATE olaclick.orders SET status = '{status}' WHERE id = {order}")
}

/// `order`'s total, as text ('12.50').
pub fn total(order: i64) -> String {
    one(&format!(
        "SELECT total::text FROM olaclick.orders WHERE id = {order}"
    ))
}

/// `order`'s status, as text.
pub fn status(order: i64) -> String {
    one(&format!(
        "SELECT status::text FROM olaclick.orders WHERE id = {order}"
    ))
}

/// `order`'s history, its statuses in order ('initiated,sent'; '' for none).
pub fn history(order: i64) -> String {
    Spi::get_one::<String>(&format!(
        "SELECT string_agg(status::text, ',' ORDER BY id) FROM olaclick.order_status_history WHERE order_id = {order}"
    ))
    .unwrap()
    .unwrap_or_default()
}

/// How many lines `order` has.
pub fn line_count(order: i64) -> i64 {
    one(&format!(
        "SELECT count(*) FROM olaclick.order_details WHERE order_id = {order}"
    ))
}

/// How many rows olaclick's `table` has (that this role sees).
pub fn rows(table: &str) -> i64 {
    one(&format!("SELECT count(*) FROM olaclick.{table}"))
}

/// olaclick's business tables, from their one home (olaclick.business_tables()).
pub fn business_tables() -> Vec<String> {
    one::<Vec<String>>("SELECT olaclick.business_tables()")
}

/// A restaurant with one user, branch, client and product. Returns their ids.
pub struct Tenant {
    pub restaurant: i32,
    pub user: i32,
    pub branch: i32,
    pub client: i32,
    pub product: i32,
}

pub fn tenant(name: &str) -> Tenant {
    let restaurant: i32 = one(&format!(
        "INSERT INTO olaclick.restaurants (name) VALUES ('{name}') RETURNING id"
    ));
    let user: i32 = one(&format!(
        "INSERT INTO olaclick.users (restaurant_id, username, email, password_hash, status)
         VALUES ({restaurant}, 'u_{name}_{restaurant}', 'u_{name}_{restaurant}@x.test', 'h', 'A') RETURNING id"
    ));
    let branch: i32 = one(&format!(
        "INSERT INTO olaclick.branches (restaurant_id, name, address) VALUES ({restaurant}, 'b', 'a') RETURNING id"
    ));
    let client: i32 = one(&format!(
        "INSERT INTO olaclick.clients (restaurant_id, name, email) VALUES ({restaurant}, 'c', 'c@x.test') RETURNING id"
    ));
    let product: i32 = one(&format!(
        "INSERT INTO olaclick.products (restaurant_id, name, price) VALUES ({restaurant}, 'p', 12.50) RETURNING id"
    ));
    Tenant {
        restaurant,
        user,
        branch,
        client,
        product,
    }
}

impl Tenant {
    pub fn order(&self) -> i64 {
        one(&format!("{} RETURNING id", self.order_sql()))
    }

    /// The INSERT of a new order of this tenant (its client and branch).
    pub fn order_sql(&self) -> String {
        format!(
            "INSERT INTO olaclick.orders (restaurant_id, client_id, branch_id) VALUES ({}, {}, {})",
            self.restaurant, self.client, self.branch
        )
    }

    /// The INSERT of a line of `quantity` x this tenant's product into
    /// `order`, at the product's price.
    pub fn line_sql(&self, order: i64, quantity: i32) -> String {
        format!(
            "INSERT INTO olaclick.order_details (order_id, product_id, quantity) VALUES ({order}, {}, {quantity})",
            self.product
        )
    }

    /// Another product of this tenant, at `price` (SQL: '12.50', 'NULL'...).
    pub fn new_product(&self, price: &str) -> i32 {
        one(&format!(
            "INSERT INTO olaclick.products (restaurant_id, name, price) VALUES ({}, 'p', {price}) RETURNING id",
            self.restaurant
        ))
    }
}
