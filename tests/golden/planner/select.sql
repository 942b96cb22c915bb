-- Routing on the sharding key
SELECT * FROM orders WHERE customer_id = 5
SELECT * FROM orders WHERE customer_id = -5
SELECT * FROM orders WHERE customer_id = '42'
SELECT * FROM orders WHERE 5 = customer_id
SELECT * FROM orders WHERE customer_id = 5 AND status = 'new'
SELECT * FROM orders WHERE customer_id = 5 ORDER BY order_id
SELECT count(*) FROM orders WHERE customer_id = 5
SELECT status, sum(total) FROM orders WHERE customer_id = 5 GROUP BY status ORDER BY 2 DESC LIMIT 1
SELECT * FROM orders WHERE customer_id = 5 AND customer_id = 6
SELECT * FROM orders WHERE customer_id = 5 AND customer_id = 5
SELECT * FROM orders WHERE customer_id = NULL
SELECT * FROM orders WHERE customer_id IN (NULL)
SELECT * FROM orders WHERE false
SELECT * FROM orders WHERE customer_id = 1.5
SELECT * FROM orders WHERE customer_id::text = '5'
SELECT * FROM orders WHERE customer_id = 5 OR customer_id = 6
SELECT * FROM orders o WHERE o.customer_id = 9
SELECT * FROM public.orders WHERE customer_id = 9
SELECT * FROM orders WHERE customer_id = $1
SELECT * FROM orders WHERE customer_id = $1 AND status = $2
-- IN lists and arrays
SELECT * FROM orders WHERE customer_id IN (1, 2, 3, 4, 5, 6, 7, 8)
SELECT * FROM orders WHERE customer_id IN (1, 2) AND status = 'paid'
SELECT * FROM orders WHERE customer_id IN (1, NULL, 3)
SELECT * FROM orders WHERE customer_id IN (1, 2, 3) ORDER BY order_id
SELECT * FROM orders WHERE customer_id IN (1, 2, 3) ORDER BY order_id LIMIT 2
SELECT * FROM orders WHERE customer_id NOT IN (1, 2, 3)
SELECT * FROM orders WHERE customer_id = ANY('{1,2,3,4}')
SELECT * FROM orders WHERE customer_id = ANY(ARRAY[1, 2, 3])
SELECT * FROM orders WHERE customer_id = ANY($1)
SELECT * FROM orders WHERE customer_id IN ($1, $2)
SELECT * FROM orders WHERE customer_id <> ALL('{1,2}')
SELECT count(*) FROM orders WHERE customer_id IN (1, 2, 3, 4)
-- Lookup vindexes
SELECT * FROM customers WHERE email = 'a@example.com'
SELECT * FROM customers WHERE email = 'a@example.com' AND customer_id = 3
SELECT * FROM customers WHERE email IN ('a@example.com', 'b@example.com')
SELECT * FROM order_lines WHERE sku = 'SKU001'
SELECT count(*), sum(qty) FROM order_lines WHERE sku = 'SKU001'
SELECT * FROM order_lines WHERE sku IN ('SKU001', 'SKU002') ORDER BY order_id
SELECT * FROM order_lines WHERE sku = 'SKU001' AND customer_id = 4
SELECT * FROM customers WHERE lower(email) = 'a@example.com'
-- Scatter, ORDER BY, LIMIT
SELECT * FROM orders
SELECT order_id FROM orders WHERE status = 'new'
SELECT * FROM orders ORDER BY order_id
SELECT * FROM orders ORDER BY total DESC NULLS LAST, order_id
SELECT order_id, total FROM orders ORDER BY total NULLS FIRST, order_id LIMIT 10
SELECT order_id, total FROM orders ORDER BY 2 DESC, 1 LIMIT 10 OFFSET 20
SELECT order_id AS id FROM orders ORDER BY id
SELECT order_id FROM orders ORDER BY placed, order_id
SELECT order_id FROM orders ORDER BY total * 2, order_id
SELECT order_id FROM orders ORDER BY note COLLATE "C", order_id
SELECT * FROM orders LIMIT 5
SELECT * FROM orders OFFSET 5
SELECT * FROM orders ORDER BY order_id LIMIT ALL
SELECT * FROM orders ORDER BY order_id LIMIT $1 OFFSET $2
SELECT * FROM orders ORDER BY order_id FETCH FIRST 3 ROWS ONLY
SELECT * FROM orders ORDER BY order_id FETCH FIRST 3 ROWS WITH TIES
SELECT * FROM orders ORDER BY order_id USING <
SELECT name FROM customers ORDER BY name, customer_id
SELECT name FROM customers ORDER BY name DESC, customer_id LIMIT 3
SELECT customer_id, name, email FROM customers WHERE tier = 'gold' ORDER BY created DESC, customer_id
SELECT * FROM orders FOR UPDATE
SELECT * FROM orders WHERE customer_id = 3 FOR UPDATE
-- DISTINCT
SELECT DISTINCT status FROM orders
SELECT DISTINCT status FROM orders ORDER BY status
SELECT DISTINCT status, note FROM orders ORDER BY status, note LIMIT 4
SELECT DISTINCT customer_id FROM orders
SELECT DISTINCT ON (status) status, order_id FROM orders ORDER BY status, order_id
SELECT DISTINCT status FROM orders ORDER BY order_id
-- Aggregates across shards
SELECT count(*) FROM orders
SELECT count(*), count(total), sum(total), avg(total), min(total), max(total) FROM orders
SELECT min(placed), max(note), min(status) FROM orders
SELECT bool_and(total > 100), bool_or(note IS NULL), every(total > 0) FROM orders
SELECT string_agg(status, ',') FROM orders
SELECT array_agg(order_id) FROM orders
SELECT count(*) FILTER (WHERE status = 'new') FROM orders
SELECT avg(qty), sum(qty), avg(price) FROM order_lines
SELECT status, count(*) FROM orders GROUP BY status
SELECT status, count(*) FROM orders GROUP BY 1
SELECT status, note, count(*), sum(total) FROM orders GROUP BY status, note
SELECT status, count(*) FROM orders GROUP BY status ORDER BY status
SELECT status, count(*) AS n FROM orders GROUP BY status ORDER BY n DESC, status
SELECT status, count(*) FROM orders GROUP BY status HAVING count(*) > 3
SELECT status, count(*) FROM orders GROUP BY status HAVING sum(total) > 1000 ORDER BY status LIMIT 2
SELECT status FROM orders GROUP BY status HAVING max(total) > 10
SELECT total IS NULL, count(*) FROM orders GROUP BY total IS NULL
SELECT placed, count(*) FROM orders WHERE status = 'new' GROUP BY placed ORDER BY placed DESC LIMIT 5
SELECT sum(total) / count(*) FROM orders
SELECT count(*) + 1 FROM orders
SELECT max(total) - min(total) AS spread FROM orders
SELECT round(avg(total), 2) FROM orders
SELECT status, round(avg(total), 2) AS a FROM orders GROUP BY status ORDER BY a
SELECT length(string_agg(status, ',')) FROM orders
SELECT coalesce(max(note), 'none') FROM orders
SELECT count(DISTINCT status) FROM orders
SELECT count(DISTINCT status), max(status) FROM orders
SELECT note, count(DISTINCT status) FROM orders GROUP BY note
SELECT count(DISTINCT customer_id) FROM orders
SELECT count(DISTINCT customer_id), sum(total) FROM orders
SELECT sum(DISTINCT customer_id) FROM orders
SELECT count(DISTINCT status), sum(total) FROM orders
SELECT string_agg(status, ',' ORDER BY status) FROM orders
SELECT array_agg(order_id ORDER BY order_id) FROM orders
SELECT stddev(total) FROM orders
SELECT json_agg(order_id) FROM orders
SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY total) FROM orders
SELECT status, count(*) FROM orders GROUP BY ROLLUP (status)
SELECT order_id, row_number() OVER (ORDER BY order_id) FROM orders
SELECT status, order_id FROM orders GROUP BY status
SELECT * , count(*) FROM orders GROUP BY status
-- Aggregates grouped by the sharding key (each group on one shard)
SELECT customer_id, count(*) FROM orders GROUP BY customer_id
SELECT customer_id, count(*), sum(total) FROM orders GROUP BY customer_id ORDER BY customer_id LIMIT 10
SELECT customer_id, count(*) FROM orders GROUP BY customer_id HAVING count(*) > 2
SELECT customer_id, status, count(*) FROM orders GROUP BY customer_id, status
SELECT customer_id, stddev(total) FROM orders GROUP BY customer_id
SELECT customer_id, string_agg(status, ',' ORDER BY status) FROM orders GROUP BY customer_id
-- Co-located joins
SELECT o.order_id, c.name FROM orders o JOIN customers c ON o.customer_id = c.customer_id
SELECT o.order_id, c.name FROM orders o JOIN customers c ON o.customer_id = c.customer_id WHERE c.customer_id = 7
SELECT o.order_id, c.name FROM orders o JOIN customers c ON c.customer_id = o.customer_id ORDER BY o.order_id LIMIT 3
SELECT o.order_id, c.name FROM orders o, customers c WHERE o.customer_id = c.customer_id AND c.tier = 'gold'
SELECT * FROM orders o JOIN order_lines l USING (customer_id) WHERE o.customer_id = 1
SELECT o.order_id, l.line_no FROM orders o JOIN order_lines l ON l.customer_id = o.customer_id AND l.order_id = o.order_id
SELECT c.tier, count(*), sum(o.total) FROM customers c JOIN orders o ON o.customer_id = c.customer_id GROUP BY c.tier
SELECT c.customer_id, count(o.order_id) FROM customers c LEFT JOIN orders o ON o.customer_id = c.customer_id GROUP BY c.customer_id
SELECT c.name, o.order_id FROM customers c LEFT JOIN orders o ON o.customer_id = c.customer_id ORDER BY c.customer_id, o.order_id
SELECT * FROM customers c FULL JOIN orders o ON o.customer_id = c.customer_id
-- Reference tables
SELECT * FROM products
SELECT * FROM products WHERE price > 10 ORDER BY sku
SELECT category, count(*) FROM products GROUP BY category
SELECT l.order_id, p.name FROM order_lines l JOIN products p ON p.sku = l.sku
SELECT l.order_id, p.name FROM order_lines l JOIN products p ON p.sku = l.sku WHERE l.customer_id = 3
SELECT p.category, sum(l.qty) FROM order_lines l JOIN products p ON p.sku = l.sku GROUP BY p.category ORDER BY p.category
SELECT * FROM order_lines WHERE sku IN (SELECT sku FROM products WHERE active)
SELECT * FROM order_lines l WHERE EXISTS (SELECT 1 FROM products p WHERE p.sku = l.sku AND p.category = 'tools')
-- Unsharded tablegroup
SELECT * FROM regions
SELECT * FROM regions WHERE region_id = 3
SELECT r.name, e.email FROM regions r, customer_email_idx e
SELECT 1
SELECT now() - now()
SELECT $1::int + 1
VALUES (1, 2), (3, 4)
SELECT * FROM generate_series(1, 3)
-- Joins across shards (nested loop)
SELECT c.name, r.name FROM customers c JOIN regions r ON r.region_id = c.region_id
SELECT c.name, r.name FROM customers c JOIN regions r ON r.region_id = c.region_id WHERE c.customer_id = 4
SELECT c.name, r.name FROM customers c JOIN regions r ON r.region_id = c.region_id ORDER BY c.customer_id LIMIT 5
SELECT r.name, count(*) FROM customers c JOIN regions r ON r.region_id = c.region_id GROUP BY r.name ORDER BY r.name
SELECT c.name, r.name FROM customers c LEFT JOIN regions r ON r.region_id = c.region_id
SELECT c.customer_id, count(o.order_id) FROM customers c LEFT JOIN orders o ON o.customer_id = c.score GROUP BY c.customer_id
SELECT o.order_id, l.qty FROM orders o JOIN order_lines l ON l.order_id = o.order_id WHERE o.customer_id = 3
SELECT o.order_id, l.qty FROM orders o JOIN order_lines l ON l.order_id = o.order_id WHERE o.customer_id IN (1, 2)
SELECT c.customer_id, o.order_id FROM customers c JOIN orders o ON o.order_id = c.customer_id
SELECT c.customer_id, e.email FROM customer_email_idx e JOIN customers c ON c.customer_id = e.email::bigint
SELECT name FROM customers c JOIN regions r ON r.region_id = c.region_id
SELECT * FROM customers c JOIN regions r ON r.region_id = c.region_id
SELECT c.name FROM customers c JOIN regions r ON r.region_id = c.region_id RIGHT JOIN orders o ON o.customer_id = c.customer_id
SELECT c.name, r.name FROM customers c LEFT JOIN regions r USING (region_id)
SELECT c.name FROM customers c NATURAL JOIN regions r
-- Subqueries
SELECT * FROM orders WHERE customer_id IN (SELECT customer_id FROM customers WHERE tier = 'gold')
SELECT * FROM customers WHERE customer_id NOT IN (SELECT customer_id FROM orders WHERE status = 'new')
SELECT order_id FROM orders WHERE total > (SELECT avg(total) FROM orders)
SELECT order_id, (SELECT max(total) FROM orders) FROM orders WHERE customer_id = 3
SELECT count(*) FROM orders WHERE EXISTS (SELECT 1 FROM customers WHERE tier = 'gold')
SELECT ARRAY(SELECT order_id FROM orders WHERE customer_id = 3)
SELECT c.name FROM customers c WHERE EXISTS (SELECT 1 FROM orders o WHERE o.customer_id = c.customer_id AND o.status = 'new')
SELECT c.name FROM customers c WHERE NOT EXISTS (SELECT 1 FROM orders o WHERE o.customer_id = c.customer_id)
SELECT c.customer_id, (SELECT count(*) FROM orders o WHERE o.customer_id = c.customer_id) FROM customers c
SELECT c.name FROM customers c WHERE EXISTS (SELECT 1 FROM orders o WHERE o.order_id = c.customer_id)
SELECT * FROM orders WHERE customer_id = 3 AND order_id IN (SELECT order_id FROM order_lines WHERE customer_id = 3)
SELECT * FROM orders WHERE (customer_id, order_id) IN (SELECT customer_id, order_id FROM order_lines)
SELECT * FROM orders WHERE total > ALL (SELECT total FROM orders WHERE customer_id = 2)
SELECT * FROM regions WHERE region_id IN (SELECT region_id FROM customers)
-- Derived tables and CTEs
SELECT * FROM (SELECT * FROM orders WHERE customer_id = 3) o
SELECT count(*) FROM (SELECT * FROM orders WHERE status = 'new') o
SELECT status, count(*) FROM (SELECT * FROM orders WHERE total > 10) o GROUP BY status
SELECT max(n) FROM (SELECT customer_id, count(*) AS n FROM orders GROUP BY customer_id) t
SELECT n, count(*) FROM (SELECT status, count(*) AS n FROM orders GROUP BY status) t GROUP BY n
WITH t AS (SELECT customer_id, count(*) AS n FROM orders GROUP BY customer_id) SELECT n, count(*) FROM t GROUP BY n ORDER BY n
WITH g AS (SELECT * FROM customers WHERE tier = 'gold') SELECT customer_id, name FROM g ORDER BY customer_id
WITH s AS (SELECT status, sum(total) AS t FROM orders GROUP BY status) SELECT status FROM s WHERE t > 1000 ORDER BY status
WITH c(id) AS (SELECT customer_id FROM customers) SELECT count(*) FROM c
WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) SELECT * FROM r, orders
WITH x AS (SELECT * FROM orders WHERE customer_id = 1) SELECT * FROM x
SELECT * FROM orders o JOIN (SELECT * FROM customers) c ON c.customer_id = o.customer_id
SELECT * FROM orders, LATERAL (SELECT 1) x
-- UNION
SELECT customer_id FROM customers UNION ALL SELECT customer_id FROM orders
SELECT customer_id FROM customers UNION SELECT customer_id FROM orders
SELECT customer_id FROM customers UNION SELECT customer_id FROM orders ORDER BY 1 LIMIT 5
SELECT customer_id FROM customers WHERE customer_id = 1 UNION ALL SELECT customer_id FROM orders WHERE customer_id = 2
SELECT status FROM orders UNION ALL SELECT category FROM products UNION ALL SELECT name FROM regions
SELECT region_id FROM regions UNION SELECT region_id FROM customer_email_idx e JOIN regions USING (region_id)
SELECT customer_id FROM customers INTERSECT SELECT customer_id FROM orders
SELECT customer_id FROM customers EXCEPT SELECT customer_id FROM orders
(SELECT customer_id FROM customers ORDER BY 1 LIMIT 2) UNION ALL SELECT customer_id FROM orders
SELECT * FROM products UNION ALL SELECT * FROM products
-- Hints and explain
/*+ multigres:shard=-40 */ SELECT count(*) FROM orders
/*+ multigres:shard=commerce/c0- */ SELECT * FROM orders ORDER BY order_id
/*+ multigres:shard=0 */ SELECT * FROM regions
SELECT * FROM multigres.explain('SELECT * FROM orders WHERE customer_id = 1')
-- Errors the planner reports itself
SELECT * FROM orders; SELECT 1
SELECT * FROM nosuchtable
SELECT * INTO t2 FROM orders
