-- Sample rows, loaded through the gateway: ids come from the VSchema's sequences, each row
-- goes to the shard its customer_id hashes to, and the lookup rows are written for you.
--   psql -h 127.0.0.1 -p 15432 -U postgres -f examples/sharded_data.sql

INSERT INTO products (sku, title, price) VALUES
    ('apple', 'Apple', 0.50), ('bread', 'Bread', 2.25), ('cheese', 'Cheese', 7.90);

INSERT INTO customers (customer_id, email, name, region, score) VALUES
    (1, 'ada@example.com', 'Ada', 'north', 90),
    (2, 'bob@example.com', 'Bob', 'south', 40),
    (3, 'cy@example.com', 'Cy', 'north', 75),
    (4, NULL, 'Dee', NULL, 60),
    (5, 'eve@example.com', 'Eve', 'east', 85);

INSERT INTO orders (customer_id, amount, status) VALUES
    (1, 12.50, 'paid'), (1, 3.00, 'new'), (2, 40.00, 'shipped'), (3, 7.90, 'paid'),
    (5, 19.99, 'paid');

INSERT INTO order_lines (customer_id, order_id, sku, qty) VALUES
    (1, 1, 'apple', 3), (1, 1, 'bread', 1), (2, 2, 'cheese', 2), (5, 3, 'apple', 10);
