-- bench/life_lines.sql (one order's life as ORMs write it) as the application
-- sends it logged in as a member of olaclick_app (bench/scale): row-level
-- security shows and accepts only the tenant's rows, so it names its tenant
-- first (a session SET: olaclick.tenant_scope is session by default).
\set r random(1, 50)
\set c (:r - 1) * 200 + random(1, 200)
\set b (:r - 1) * 10 + random(1, 10)
\set p (:r - 1) * 100 + random(1, 98)
SET olaclick.restaurant_id = :r;
BEGIN;
INSERT INTO olaclick.orders (restaurant_id, client_id, branch_id) VALUES (:r, :c, :b) RETURNING id AS order_id \gset
INSERT INTO olaclick.order_details (order_id, product_id, quantity, price) VALUES (:order_id, :p, 1, 10.00);
INSERT INTO olaclick.order_details (order_id, product_id, quantity, price) VALUES (:order_id, :p + 1, 2, 5.50);
INSERT INTO olaclick.order_details (order_id, product_id, quantity, price) VALUES (:order_id, :p + 2, 1, 3.25);
COMMIT;
UPDATE olaclick.orders SET status = 'sent' WHERE id = :order_id;
UPDATE olaclick.orders SET status = 'delivered' WHERE id = :order_id;
