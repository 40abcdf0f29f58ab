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
mod schema;
mod security;
mod tenancy;
mod tenant_scope;
mod versions;
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
        one(&format!(
            "INSERT INTO olaclick.orders (restaurant_id, client_id, branch_id) VALUES ({}, {}, {}) RETURNING id",
            self.restaurant, self.client, self.branch
        ))
    }

    /// Another product of this tenant, at `price` (SQL: '12.50', 'NULL'...).
    pub fn new_product(&self, price: &str) -> i32 {
        one(&format!(
            "INSERT INTO olaclick.products (restaurant_id, name, price) VALUES ({}, 'p', {price}) RETURNING id",
            self.restaurant
        ))
    }
}
