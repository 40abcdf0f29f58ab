-- Two restaurants with a user, branch and client each, and ten products each
-- (restaurant 1's product 7 costs the most numeric(12,2) holds; product 8
-- costs 100). Ids are the same in every fresh database.
INSERT INTO olaclick.restaurants (name) VALUES ('R1'), ('R2');
INSERT INTO olaclick.users (restaurant_id, username, email, password_hash, status)
VALUES (1, 'u1', 'u1@x.test', 'h', 'A'), (2, 'u2', 'u2@x.test', 'h', 'A');
INSERT INTO olaclick.branches (restaurant_id, name, address) VALUES (1, 'b1', 'a1'), (2, 'b2', 'a2');
INSERT INTO olaclick.clients (restaurant_id, name, email) VALUES (1, 'c1', 'c1@x.test'), (2, 'c2', 'c2@x.test');
INSERT INTO olaclick.products (restaurant_id, name, price)
SELECT 1, 'p' || i, CASE i WHEN 7 THEN 9999999999.99 WHEN 8 THEN 100 ELSE i + 0.5 END
FROM generate_series(1, 10) i ORDER BY i;
INSERT INTO olaclick.products (restaurant_id, name, price)
SELECT 2, 'p' || i, i + 0.25 FROM generate_series(11, 20) i ORDER BY i;
