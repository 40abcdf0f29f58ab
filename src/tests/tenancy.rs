//! A row that belongs to a restaurant never points at another restaurant's
//! row: every cross-tenant reference fails with 23503.
#[pgrx::pg_schema]
mod tests {
    use crate::tests::{assert_fails, assert_ok, one, tenant};
    use pgrx::prelude::*;

    #[pg_test]
    fn an_order_takes_client_branch_and_creator_of_its_own_restaurant() {
        let a = tenant("a");
        let b = tenant("b");
        let insert = |client: i32, branch: i32, user: i32| {
            format!(
                "INSERT INTO olaclick.orders (restaurant_id, client_id, branch_id, created_by_user_id)
                 VALUES ({}, {client}, {branch}, {user})",
                a.restaurant
            )
        };
        assert_ok(&insert(a.client, a.branch, a.user));
        assert_fails(&insert(b.client, a.branch, a.user), "23503");
        assert_fails(&insert(a.client, b.branch, a.user), "23503");
        assert_fails(&insert(a.client, a.branch, b.user), "23503");
    }

    #[pg_test]
    fn a_line_takes_a_product_of_its_order_restaurant() {
        let a = tenant("a");
        let b = tenant("b");
        let order = a.order();
        assert_fails(
            &format!("INSERT INTO olaclick.order_details (order_id, product_id, quantity, price) VALUES ({order}, {}, 1, 1)", b.product),
            "23503",
        );
        // Naming the other tenant outright does not help either.
        assert_fails(
            &format!("INSERT INTO olaclick.order_details (order_id, product_id, quantity, price, restaurant_id) VALUES ({order}, {}, 1, 1, {})", b.product, b.restaurant),
            "23503",
        );
        assert_fails(
            &format!("INSERT INTO olaclick.order_details (order_id, product_id, quantity, price, created_by_user_id) VALUES ({order}, {}, 1, 1, {})", a.product, b.user),
            "23503",
        );
        assert_ok(&format!(
            "INSERT INTO olaclick.order_details (order_id, product_id, quantity, price) VALUES ({order}, {}, 2, 3)",
            a.product
        ));
        let restaurant: i32 = one(&format!(
            "SELECT restaurant_id FROM olaclick.order_details WHERE order_id = {order}"
        ));
        assert_eq!(
            restaurant, a.restaurant,
            "the line's tenant is copied from its order"
        );
    }

    #[pg_test]
    fn a_line_of_a_missing_order_is_a_foreign_key_violation() {
        let a = tenant("a");
        let message = assert_fails(
            &format!("INSERT INTO olaclick.order_details (order_id, product_id, quantity, price) VALUES (-1, {}, 1, 1)", a.product),
            "23503",
        );
        assert!(message.contains("order -1 does not exist"), "{message}");
    }

    #[pg_test]
    fn every_creator_belongs_to_the_row_restaurant() {
        let a = tenant("a");
        let b = tenant("b");
        for (table, columns, values) in [
            ("branches", "name, address", "'x', 'y'"),
            ("clients", "name, email", "'x', 'cross@x.test'"),
            ("products", "name, price", "'x', 1"),
        ] {
            assert_fails(
                &format!("INSERT INTO olaclick.{table} (restaurant_id, {columns}, created_by_user_id) VALUES ({}, {values}, {})", a.restaurant, b.user),
                "23503",
            );
            assert_ok(&format!(
                "INSERT INTO olaclick.{table} (restaurant_id, {columns}, created_by_user_id) VALUES ({}, {values}, {})",
                a.restaurant, a.user
            ));
        }
        assert_fails(
            &format!(
                "UPDATE olaclick.restaurants SET created_by_user_id = {} WHERE id = {}",
                b.user, a.restaurant
            ),
            "23503",
        );
        assert_ok(&format!(
            "UPDATE olaclick.restaurants SET created_by_user_id = {} WHERE id = {}",
            a.user, a.restaurant
        ));
    }

    #[pg_test]
    fn moving_an_order_to_another_restaurant_is_refused() {
        let a = tenant("a");
        let b = tenant("b");
        let order = a.order();
        assert_fails(
            &format!(
                "UPDATE olaclick.orders SET restaurant_id = {} WHERE id = {order}",
                b.restaurant
            ),
            "23503",
        );
    }

    #[pg_test]
    fn a_restaurant_creator_must_exist_and_stay() {
        let a = tenant("a");
        let message = assert_fails(
            &format!(
                "UPDATE olaclick.restaurants SET created_by_user_id = -5 WHERE id = {}",
                a.restaurant
            ),
            "23503",
        );
        assert!(
            message.contains("user -5 is not a user of restaurant"),
            "{message}"
        );
        assert_ok(&format!(
            "UPDATE olaclick.restaurants SET created_by_user_id = {} WHERE id = {}",
            a.user, a.restaurant
        ));
        assert_fails(
            &format!("DELETE FROM olaclick.users WHERE id = {}", a.user),
            "23503",
        );
        let b = tenant("b");
        assert_fails(
            &format!(
                "UPDATE olaclick.users SET restaurant_id = {} WHERE id = {}",
                b.restaurant, a.user
            ),
            "23503",
        );
        // Deleting the restaurant takes its creator and everything else along.
        a.order();
        assert_ok(&format!(
            "DELETE FROM olaclick.restaurants WHERE id = {}",
            a.restaurant
        ));
        assert_eq!(
            one::<i64>(&format!(
                "SELECT count(*) FROM olaclick.users WHERE restaurant_id = {}",
                a.restaurant
            )),
            0
        );
    }

    /// pg_dump's settings alone do not open the restore path: only a COPY does.
    #[pg_test]
    fn restore_settings_outside_copy_change_nothing() {
        let a = tenant("a");
        Spi::run("SET LOCAL row_security = off").unwrap();
        Spi::run("SELECT set_config('search_path', '', true)").unwrap();
        assert_fails(
            &format!(
                "UPDATE olaclick.restaurants SET created_by_user_id = -5 WHERE id = {}",
                a.restaurant
            ),
            "23503",
        );
    }
}
