-- The same restaurants, branches, clients and products in every benchmark
-- database, with ids the pgbench scripts can compute.
INSERT INTO olaclick.restaurants (id, name) SELECT r, 'Restaurant ' || r FROM generate_series(1, 50) r;
INSERT INTO olaclick.branches (id, restaurant_id, name, address)
SELECT (r - 1) * 10 + k, r, 'Sucursal ' || k, 'Avenida ' || k FROM generate_series(1, 50) r, generate_series(1, 10) k;
INSERT INTO olaclick.clients (id, restaurant_id, name, email)
SELECT (r - 1) * 200 + k, r, 'Cliente ' || k, 'c' || k || '_r' || r || '@mail.com' FROM generate_series(1, 50) r, generate_series(1, 200) k;
INSERT INTO olaclick.products (id, restaurant_id, name, price)
SELECT (r - 1) * 100 + k, r, 'Producto ' || k, 10 + k FROM generate_series(1, 50) r, generate_series(1, 100) k;
