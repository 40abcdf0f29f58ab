-- bench/life_lines.sql (one order's life as ORMs write it) as a pooled
-- application sends it (bench/pooler): the tenant set with SET LOCAL in each
-- of the three transactions, as olaclick.tenant_scope = transaction requires.
\set r random(1, 50)
\set c (:r - 1) * 200 + random(1, 200)
\set b (:r - 1) * 10 + random(1, 10)
\set p (:r - 1) * 100 + random(1, 98)
BEGIN;
SET LOCAL olaclick.restaurant_id = :r;
INSERT INTO olaclick.orders (restaurant_id, client_id, branch_id) VALUES (:r, :c, :b) RETURNING id AS order_id \gset
INSERT INTO olaclick.order_details (order_id, product_id, quantity, price) VALUES (:order_id, :p, 1, 10.00);
INSERT INTO olaclick.order_details (order_id, product_id, quantity, price) VALUES (:order_id, :p + 1, 2, 5.50);
INSERT INTO olaclick.order_details (order_id, product_id, quantity, price) VALUES (:order_id, :p + 2, 1, 3.25);
COMMIT;
BEGIN;
SET LOCAL olaclick.restaurant_id = :r;
UPDATE olaclick.orders SET status = 'sent' WHERE id = :order_id;
COMMIT;
BEGIN;
SET LOCAL olaclick.restaurant_id = :r;
UPDATE olaclick.orders SET status = 'delivered' WHERE id = :order_id;
COMMIT;
