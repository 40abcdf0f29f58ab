-- The statements tests/native/run sends through the native path and through
-- the SQL path (olaclick.native_writes = off), on each table shape: what an
-- application and its ORM send (one row per statement, upserts, MERGE,
-- writable CTEs, multi-row statements, a role under row-level security).
-- Every statement's outcome is printed, errors as their SQLSTATE only, so
-- the two paths' outputs can be compared line for line.
\set VERBOSITY sqlstate
\set ON_ERROR_STOP 0
\pset footer off
SET olaclick.user_id = '1';

-- One order as an ORM writes it.
INSERT INTO olaclick.orders (restaurant_id, client_id, branch_id) VALUES (1, 1, 1) RETURNING id AS o1 \gset
INSERT INTO olaclick.order_details (order_id, product_id, quantity) VALUES (:o1, 1, 2);
INSERT INTO olaclick.order_details (order_id, product_id, quantity, price) VALUES (:o1, 2, 1, 4.25);
INSERT INTO olaclick.order_details (order_id, product_id, quantity, price, restaurant_id) VALUES (:o1, 3, 3, 1.10, 1);
UPDATE olaclick.order_details SET quantity = 4 WHERE order_id = :o1 AND product_id = 2;
DELETE FROM olaclick.order_details WHERE order_id = :o1 AND product_id = 3;
-- Upsert over the order's lines, some new, some existing.
INSERT INTO olaclick.order_details AS d (order_id, product_id, quantity) VALUES (:o1, 1, 1), (:o1, 3, 2), (:o1, 4, 1)
  ON CONFLICT (order_id, product_id) DO UPDATE SET quantity = d.quantity + excluded.quantity;
-- MERGE with matched and not-matched rows.
MERGE INTO olaclick.order_details d
USING (VALUES (:o1::bigint, 1, 5), (:o1::bigint, 5, 1)) v (o, p, q) ON d.order_id = v.o AND d.product_id = v.p
WHEN MATCHED THEN UPDATE SET quantity = v.q
WHEN NOT MATCHED THEN INSERT (order_id, product_id, quantity) VALUES (v.o, v.p, v.q);
-- A writable CTE touching the order twice.
WITH a AS (INSERT INTO olaclick.order_details (order_id, product_id, quantity) VALUES (:o1, 6, 1) RETURNING 1),
     b AS (UPDATE olaclick.order_details SET quantity = quantity + 1 WHERE order_id = :o1 AND product_id = 4 RETURNING 1),
     c AS (DELETE FROM olaclick.order_details WHERE order_id = :o1 AND product_id = 5 RETURNING 1)
SELECT (SELECT count(*) FROM a) + (SELECT count(*) FROM b) + (SELECT count(*) FROM c) AS touched;
-- A total numeric(14,2) can't hold: 22003, nothing written.
INSERT INTO olaclick.order_details (order_id, product_id, quantity) VALUES (:o1, 7, 5000);
SELECT total, (SELECT sum(quantity * price) FROM olaclick.order_details WHERE order_id = :o1) AS lines
FROM olaclick.orders WHERE id = :o1;
-- A function used by a CHECK a DBA added (shape "check_function") is replaced.
SELECT to_regprocedure('public.total_ok(numeric)') IS NOT NULL AS has_check \gset
\if :has_check
CREATE OR REPLACE FUNCTION public.total_ok(t numeric) RETURNS boolean LANGUAGE sql IMMUTABLE RETURN t < 120;
INSERT INTO olaclick.order_details (order_id, product_id, quantity) VALUES (:o1, 8, 1);
\endif
UPDATE olaclick.orders SET status = 'sent' WHERE id = :o1;
INSERT INTO olaclick.order_details (order_id, product_id, quantity) VALUES (:o1, 9, 1);
UPDATE olaclick.order_details SET quantity = 9 WHERE order_id = :o1;
UPDATE olaclick.orders SET total = 1 WHERE id = :o1;
UPDATE olaclick.orders SET status = 'delivered' WHERE id = :o1;
UPDATE olaclick.orders SET status = 'delivered' WHERE id = :o1;

-- Several orders per statement (the set-based path).
WITH o AS (INSERT INTO olaclick.orders (restaurant_id, client_id, branch_id)
           SELECT 1, 1, 1 FROM generate_series(1, 3) RETURNING id)
INSERT INTO olaclick.order_details (order_id, product_id, quantity)
SELECT o.id, p, 1 FROM o, generate_series(1, 2) p;
UPDATE olaclick.order_details SET quantity = quantity + 1 WHERE order_id > :o1;
UPDATE olaclick.orders SET status = 'sent' WHERE id > :o1 AND id < :o1 + 3;
DELETE FROM olaclick.orders WHERE id = :o1 + 3;

-- Transactions: two statements on one order, a rollback (restaurant 2's
-- user acting).
SET olaclick.user_id = '2';
BEGIN;
INSERT INTO olaclick.orders (restaurant_id, client_id, branch_id) VALUES (2, 2, 2) RETURNING id AS o2 \gset
INSERT INTO olaclick.order_details (order_id, product_id, quantity) VALUES (:o2, 11, 1);
INSERT INTO olaclick.order_details (order_id, product_id, quantity) VALUES (:o2, 12, 2);
COMMIT;
BEGIN;
INSERT INTO olaclick.order_details (order_id, product_id, quantity) VALUES (:o2, 13, 1);
ROLLBACK;
BEGIN ISOLATION LEVEL REPEATABLE READ;
INSERT INTO olaclick.order_details (order_id, product_id, quantity) VALUES (:o2, 13, 3);
COMMIT;

-- The application role, under row-level security: a hidden order answers as
-- a missing one.
SET olaclick.user_id = '1';
SET ROLE olaclick_native_app;
SET olaclick.restaurant_id = '1';
INSERT INTO olaclick.orders (restaurant_id, client_id, branch_id) VALUES (1, 1, 1) RETURNING id AS o3 \gset
INSERT INTO olaclick.order_details (order_id, product_id, quantity) VALUES (:o3, 1, 1);
INSERT INTO olaclick.order_details (order_id, product_id, quantity, price) VALUES (:o3, 2, 1, 2.00);
INSERT INTO olaclick.order_details (order_id, product_id, quantity) VALUES (:o2, 1, 1);
INSERT INTO olaclick.order_details (order_id, product_id, quantity) VALUES (999999, 1, 1);
UPDATE olaclick.orders SET status = 'sent' WHERE id = :o3;
UPDATE olaclick.clients SET name = 'renamed' WHERE id = 1;
RESET ROLE;
RESET olaclick.restaurant_id;

-- Changes to other tables; an UPDATE that changes nothing.
UPDATE olaclick.restaurants SET name = 'R1 renamed' WHERE id = 1;
UPDATE olaclick.products SET price = price WHERE restaurant_id = 1;
UPDATE olaclick.orders SET status = status WHERE id = :o2;
SELECT count(*) AS inconsistencies FROM olaclick.check_consistency();
