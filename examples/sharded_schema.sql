-- The schema of examples/vschema_sharded.json, created through the gateway: each table goes
-- where the VSchema puts it (customers, orders, order_lines, products and the email lookup on
-- every shard of `shop`; the sku lookup and the sequences on the unsharded tablegroup).
--   psql -h 127.0.0.1 -p 15432 -U postgres -f examples/sharded_schema.sql

-- Sequences of the VSchema: one nextval reserves a block of 1000 ids (the VSchema's cache).
CREATE SEQUENCE customers_id_seq INCREMENT BY 1000;
CREATE SEQUENCE orders_id_seq INCREMENT BY 1000;
CREATE SEQUENCE order_lines_id_seq INCREMENT BY 1000;

CREATE TABLE customers (
    customer_id bigint PRIMARY KEY,
    email text,
    name text NOT NULL,
    region text,
    score int
);
CREATE TABLE orders (
    order_id bigint NOT NULL,
    customer_id bigint NOT NULL,
    amount numeric(10,2),
    status text NOT NULL,
    PRIMARY KEY (customer_id, order_id)
);
CREATE TABLE order_lines (
    order_line_id bigint NOT NULL,
    customer_id bigint NOT NULL,
    order_id bigint NOT NULL,
    sku text NOT NULL,
    qty int NOT NULL,
    PRIMARY KEY (customer_id, order_line_id)
);
CREATE TABLE products (sku text PRIMARY KEY, title text NOT NULL, price numeric(10,2));

-- Lookup vindexes' tables: email -> keyspace id (sharded by email), sku -> keyspace ids.
CREATE TABLE customer_email_idx (email text PRIMARY KEY, keyspace_id bytea NOT NULL);
CREATE TABLE order_line_sku_idx (
    sku text NOT NULL,
    order_line_id bigint NOT NULL,
    keyspace_id bytea NOT NULL,
    PRIMARY KEY (sku, order_line_id)
);
