"""A seeded random generator of SELECTs over the differential schema (tests/.../schema.py).

Each query comes with ``ordered``: True when its ORDER BY makes the row order total (every
ORDER BY ends with a key, or the result has at most one row), so results compare in order;
otherwise as multisets. Shapes: routing by the sharding key (=, IN, = ANY), by a lookup
vindex, contradictions and NULLs; scatters with filters, ORDER BY (NULLS FIRST/LAST, DESC,
text in the C collation) and LIMIT/OFFSET; aggregates with GROUP BY/HAVING, DISTINCT,
count(DISTINCT), expressions over aggregates; joins (co-located, with the reference table,
nested loops to the unsharded table and across shards, LEFT JOIN); subqueries (pulled out,
correlated on the sharding key, over the reference table); UNION [ALL]; CTEs; and shapes the
engine must refuse (window functions, ordered aggregates, INTERSECT).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from tests.integration.sharding.schema import CATEGORIES, NOTES, STATUSES, TIERS, Data


@dataclass(frozen=True)
class Query:
    sql: str
    ordered: bool
    shape: str


def q(s: str | None) -> str:
    return "NULL" if s is None else "'" + s.replace("'", "''") + "'"


class QueryGen:
    def __init__(self, data: Data, seed: int) -> None:
        self.d = data
        self.r = random.Random(seed)
        self.shapes: list[tuple[int, Callable[[], Query]]] = [
            (10, self.point), (6, self.in_list), (3, self.any_array), (4, self.lookup),
            (2, self.empty), (12, self.scatter_sorted), (12, self.aggregate),
            (4, self.local_group), (4, self.distinct), (5, self.colocated_join),
            (4, self.reference_join), (4, self.unsharded_join), (3, self.cross_join),
            (6, self.subquery), (4, self.union), (3, self.cte), (2, self.unsupported),
            (3, self.scalar_expr),
        ]
        self.total = sum(w for w, _ in self.shapes)

    def __iter__(self) -> QueryGen:
        return self

    def __next__(self) -> Query:
        pick = self.r.randrange(self.total)
        for w, f in self.shapes:
            if pick < w:
                return f()
            pick -= w
        raise AssertionError

    # -- values ---------------------------------------------------------------------------------

    def cid(self) -> int:
        r = self.r.random()
        if r < 0.1:
            return self.r.randint(1, 100_000)  # mostly a customer that does not exist
        return self.r.choice(self.d.customer_ids)

    def cids(self, n: int | None = None) -> list[int]:
        return [self.cid() for _ in range(n or self.r.randint(1, 6))]

    def order_filter(self, alias: str = "") -> str:
        a = f"{alias}." if alias else ""
        r = self.r
        options = [
            f"{a}status = {q(r.choice(STATUSES))}",
            f"{a}total > {r.randint(0, 900)}",
            f"{a}total IS NULL",
            f"{a}total BETWEEN {r.randint(0, 300)} AND {r.randint(300, 1000)}",
            f"{a}note = {q(r.choice([n for n in NOTES if n is not None]))}",
            f"{a}note IS NOT NULL",
            f"{a}placed >= DATE '2024-01-{r.randint(1, 28):02d}'",
            f"{a}order_id % {r.randint(2, 5)} = {r.randint(0, 1)}",
            f"{a}status IN ('new', 'paid')",
            f"{a}status <> 'cancelled'",
        ]
        return " AND ".join(r.sample(options, r.randint(1, 2)))

    def customer_filter(self, alias: str = "") -> str:
        a = f"{alias}." if alias else ""
        r = self.r
        options = [
            f"{a}tier = {q(r.choice([t for t in TIERS if t]))}",
            f"{a}tier IS NULL",
            f"{a}active",
            f"NOT {a}active",
            f"{a}score > {r.randint(-50, 50)}",
            f"{a}region_id = {r.randint(1, 6)}",
            f"{a}name LIKE {q(r.choice(['a%', 'A%', 'Z%', '%o%', 'É%']))}",
            f"{a}created < DATE '2024-{r.randint(1, 12):02d}-01'",
        ]
        return " AND ".join(r.sample(options, r.randint(1, 2)))

    def line_filter(self, alias: str = "") -> str:
        a = f"{alias}." if alias else ""
        r = self.r
        options = [
            f"{a}qty > {r.randint(1, 8)}",
            f"{a}discount IS NULL",
            f"{a}price < {r.randint(10, 90)}",
            f"{a}sku = {q(r.choice(self.d.skus))}",
        ]
        return " AND ".join(r.sample(options, r.randint(1, 2)))

    def sort_items(self, cols: list[str], keys: list[str]) -> str:
        """Random ORDER BY over ``cols`` then the key columns (a total order)."""
        r = self.r
        items = []
        for c in r.sample(cols, r.randint(0, min(2, len(cols)))):
            d = r.choice(["", " ASC", " DESC"])
            n = r.choice(["", " NULLS FIRST", " NULLS LAST"])
            items.append(c + d + n)
        for k in keys:
            items.append(k + r.choice(["", " DESC"]))
        return ", ".join(items)

    def limit(self) -> str:
        r = self.r.random()
        if r < 0.4:
            return ""
        if r < 0.8:
            return f" LIMIT {self.r.randint(0, 30)}"
        return f" LIMIT {self.r.randint(1, 30)} OFFSET {self.r.randint(0, 40)}"

    # -- shapes ---------------------------------------------------------------------------------

    def point(self) -> Query:
        r = self.r
        t = r.choice(["customers", "orders", "order_lines"])
        extra = ""
        if t == "orders" and r.random() < 0.5:
            extra = " AND " + self.order_filter()
        if t == "customers" and r.random() < 0.3:
            extra = " AND " + self.customer_filter()
        keys = {"customers": ["customer_id"], "orders": ["order_id"],
                "order_lines": ["order_id", "line_no"]}[t]
        order = ""
        if r.random() < 0.5:
            order = " ORDER BY " + ", ".join(keys)
        cid = self.cid()
        if r.random() < 0.2:
            cid_sql = f"'{cid}'"
        else:
            cid_sql = str(cid)
        agg = r.random() < 0.2
        sel = "count(*), max(customer_id)" if agg else "*"
        if agg:
            order = ""
        return Query(f"SELECT {sel} FROM {t} WHERE customer_id = {cid_sql}{extra}{order}",
                     bool(order) or agg, "point")

    def in_list(self) -> Query:
        r = self.r
        t = r.choice(["customers", "orders", "order_lines"])
        ids = ", ".join(str(c) for c in self.cids())
        key = {"customers": "customer_id", "orders": "order_id",
               "order_lines": "order_id, line_no"}[t]
        order = f" ORDER BY {key}" if r.random() < 0.6 else ""
        neg = " AND customer_id NOT IN (1, 2)" if r.random() < 0.2 else ""
        return Query(f"SELECT * FROM {t} WHERE customer_id IN ({ids}){neg}{order}",
                     bool(order), "in")

    def any_array(self) -> Query:
        ids = ",".join(str(c) for c in self.cids())
        return Query(
            f"SELECT customer_id, order_id, total FROM orders WHERE customer_id = "
            f"ANY('{{{ids}}}') ORDER BY order_id", True, "any")

    def lookup(self) -> Query:
        r = self.r
        if r.random() < 0.5:
            email = r.choice(self.d.emails) if r.random() < 0.9 else "nobody@example.com"
            if r.random() < 0.3:
                other = r.choice(self.d.emails)
                return Query(f"SELECT customer_id, name FROM customers WHERE email IN "
                             f"({q(email)}, {q(other)}) ORDER BY customer_id", True, "lookup")
            return Query(f"SELECT * FROM customers WHERE email = {q(email)}", True, "lookup")
        sku = r.choice(self.d.skus)
        if r.random() < 0.5:
            return Query(f"SELECT customer_id, order_id, line_no, qty FROM order_lines "
                         f"WHERE sku = {q(sku)} ORDER BY order_id, line_no", True, "lookup")
        return Query(f"SELECT count(*), sum(qty) FROM order_lines WHERE sku = {q(sku)}",
                     True, "lookup")

    def empty(self) -> Query:
        r = self.r
        a, b = self.cid(), self.cid()
        return r.choice([
            Query(f"SELECT * FROM orders WHERE customer_id = {a} AND customer_id = {b}",
                  False, "none"),
            Query("SELECT * FROM orders WHERE customer_id = NULL", False, "none"),
            Query("SELECT count(*) FROM orders WHERE customer_id IN (NULL)", True, "none"),
            Query("SELECT order_id FROM orders WHERE false", False, "none"),
        ])

    def scatter_sorted(self) -> Query:
        r = self.r
        t = r.choice(["orders", "customers", "order_lines"])
        if t == "orders":
            cols = ["status", "total", "placed", "note", "customer_id"]
            where = self.order_filter() if r.random() < 0.7 else ""
            keys = ["order_id"]
        elif t == "customers":
            cols = ["name", "tier", "score", "region_id", "created", "email"]
            where = self.customer_filter() if r.random() < 0.7 else ""
            keys = ["customer_id"]
        else:
            cols = ["sku", "qty", "price", "discount"]
            where = self.line_filter() if r.random() < 0.7 else ""
            keys = ["order_id", "line_no"]
        sel = "*" if r.random() < 0.3 else ", ".join(r.sample(cols, r.randint(1, len(cols))))
        if sel != "*" and r.random() < 0.5:
            sel += ", " + ", ".join(keys)
        order = self.sort_items(cols, keys)
        w = f" WHERE {where}" if where else ""
        return Query(f"SELECT {sel} FROM {t}{w} ORDER BY {order}{self.limit()}", True,
                     "scatter")

    def agg_list(self, t: str) -> list[str]:
        r = self.r
        if t == "orders":
            pool = ["count(*)", "count(total)", "sum(total)", "avg(total)", "min(total)",
                    "max(total)", "min(placed)", "max(note)", "min(status)", "count(note)",
                    "bool_and(total > 100)", "bool_or(note IS NULL)", "sum(order_id)",
                    "avg(order_id)", "max(customer_id)",
                    "count(*) FILTER (WHERE status = 'new')"]
        elif t == "order_lines":
            pool = ["count(*)", "sum(qty)", "avg(qty)", "sum(price)", "avg(price)",
                    "min(sku)", "max(sku)", "sum(discount)", "avg(discount)", "max(line_no)"]
        else:
            pool = ["count(*)", "count(tier)", "min(name)", "max(name)", "avg(score)",
                    "sum(score)", "bool_and(active)", "bool_or(active)", "min(created)"]
        return r.sample(pool, r.randint(1, 4))

    def aggregate(self) -> Query:
        r = self.r
        t = r.choice(["orders", "order_lines", "customers"])
        groups = {"orders": ["status", "placed", "note", "total IS NULL"],
                  "order_lines": ["sku", "qty", "line_no", "discount"],
                  "customers": ["tier", "region_id", "active", "name"]}[t]
        filt = {"orders": self.order_filter, "order_lines": self.line_filter,
                "customers": self.customer_filter}[t]
        where = f" WHERE {filt()}" if r.random() < 0.5 else ""
        aggs = self.agg_list(t)
        if r.random() < 0.3:
            g = []
        else:
            g = r.sample(groups, r.randint(1, 2))
        sel = ", ".join(g + aggs)
        if not g:
            return Query(f"SELECT {sel} FROM {t}{where}", True, "scalar_agg")
        having = ""
        if r.random() < 0.3:
            having = f" HAVING count(*) > {r.randint(0, 5)}"
        order = ""
        ordered = False
        if r.random() < 0.6:
            order = " ORDER BY " + ", ".join(
                f"{x}{r.choice(['', ' DESC'])}{r.choice(['', ' NULLS FIRST', ' NULLS LAST'])}"
                for x in g)
            ordered = True
            if r.random() < 0.3:
                order += self.limit()
        return Query(f"SELECT {sel} FROM {t}{where} GROUP BY {', '.join(g)}{having}{order}",
                     ordered, "group_agg")

    def scalar_expr(self) -> Query:
        r = self.r
        e = r.choice([
            "sum(total) / count(*)", "count(*) + 1", "max(total) - min(total)",
            "round(avg(total), 2)", "length(string_agg(status, ','))", "count(DISTINCT status)",
            "count(DISTINCT customer_id)", "sum(DISTINCT customer_id)",
            "count(DISTINCT note), max(note)", "coalesce(max(note), 'none')",
        ])
        if r.random() < 0.5:
            return Query(f"SELECT {e} FROM orders", True, "agg_expr")
        return Query(f"SELECT status, {e} FROM orders GROUP BY status ORDER BY status", True,
                     "agg_expr")

    def local_group(self) -> Query:
        r = self.r
        t = r.choice(["orders", "order_lines"])
        aggs = ", ".join(self.agg_list(t))
        having = f" HAVING count(*) > {r.randint(1, 4)}" if r.random() < 0.4 else ""
        return Query(f"SELECT customer_id, {aggs} FROM {t} GROUP BY customer_id{having} "
                     f"ORDER BY customer_id{self.limit()}", True, "local_group")

    def distinct(self) -> Query:
        r = self.r
        c = r.choice([
            ("orders", ["status"]), ("orders", ["status", "note"]),
            ("customers", ["tier"]), ("customers", ["tier", "region_id"]),
            ("order_lines", ["sku"]), ("orders", ["customer_id"]),
        ])
        cols = ", ".join(c[1])
        if r.random() < 0.6:
            order = ", ".join(f"{x}{r.choice(['', ' DESC'])}{r.choice(['', ' NULLS FIRST'])}"
                              for x in c[1])
            return Query(f"SELECT DISTINCT {cols} FROM {c[0]} ORDER BY {order}{self.limit()}",
                         True, "distinct")
        return Query(f"SELECT DISTINCT {cols} FROM {c[0]}", False, "distinct")

    def colocated_join(self) -> Query:
        r = self.r
        where = []
        if r.random() < 0.5:
            where.append(self.order_filter("o"))
        if r.random() < 0.3:
            where.append(f"c.customer_id = {self.cid()}")
        if r.random() < 0.3:
            where.append(self.customer_filter("c"))
        w = " WHERE " + " AND ".join(where) if where else ""
        if r.random() < 0.3:
            return Query(
                "SELECT c.tier, count(*), sum(o.total) FROM customers c JOIN orders o ON "
                f"o.customer_id = c.customer_id{w} GROUP BY c.tier ORDER BY c.tier", True,
                "colocated_join_agg")
        if r.random() < 0.3:
            return Query(
                "SELECT o.order_id, l.line_no, l.sku FROM orders o JOIN order_lines l "
                "ON l.customer_id = o.customer_id AND l.order_id = o.order_id"
                f"{w} ORDER BY o.order_id, l.line_no{self.limit()}", True, "colocated_join")
        return Query(
            "SELECT c.name, o.order_id, o.status FROM customers c JOIN orders o "
            f"ON o.customer_id = c.customer_id{w} ORDER BY o.order_id{self.limit()}", True,
            "colocated_join")

    def reference_join(self) -> Query:
        r = self.r
        cat = q(r.choice([c for c in CATEGORIES if c]))
        return r.choice([
            Query("SELECT l.order_id, l.line_no, p.name, p.category FROM order_lines l JOIN "
                  f"products p ON p.sku = l.sku WHERE p.category = {cat} "
                  "ORDER BY l.order_id, l.line_no", True, "reference_join"),
            Query("SELECT p.category, count(*), sum(l.qty) FROM order_lines l JOIN products p "
                  "ON p.sku = l.sku GROUP BY p.category ORDER BY p.category", True,
                  "reference_join"),
            Query(f"SELECT * FROM products WHERE category = {cat} ORDER BY sku", True,
                  "reference"),
            Query(f"SELECT l.* FROM order_lines l WHERE l.customer_id = {self.cid()} AND l.sku "
                  "IN (SELECT sku FROM products WHERE active) ORDER BY order_id, line_no",
                  True, "reference_subquery"),
        ])

    def unsharded_join(self) -> Query:
        r = self.r
        w = f" WHERE {self.customer_filter('c')}" if r.random() < 0.5 else ""
        return r.choice([
            Query("SELECT c.customer_id, c.name, r.name FROM customers c JOIN regions r ON "
                  f"r.region_id = c.region_id{w} ORDER BY c.customer_id{self.limit()}", True,
                  "unsharded_join"),
            Query("SELECT c.customer_id, r.name, r.zone FROM customers c LEFT JOIN regions r "
                  f"ON r.region_id = c.region_id{w} ORDER BY c.customer_id", True, "left_join"),
            Query("SELECT r.name, count(*) FROM customers c JOIN regions r ON r.region_id = "
                  f"c.region_id{w} GROUP BY r.name ORDER BY r.name", True, "unsharded_join_agg"),
            Query("SELECT * FROM regions ORDER BY region_id", True, "unsharded"),
        ])

    def cross_join(self) -> Query:
        ids = ", ".join(str(c) for c in self.cids(3))
        return self.r.choice([
            Query("SELECT o.order_id, l.customer_id, l.qty FROM orders o JOIN order_lines l "
                  f"ON l.order_id = o.order_id WHERE o.customer_id IN ({ids}) "
                  "ORDER BY o.order_id, l.customer_id, l.line_no", True, "nested_loop"),
            Query("SELECT c.customer_id, o.order_id FROM customers c JOIN orders o ON "
                  f"o.order_id = c.customer_id WHERE c.customer_id IN ({ids})", False,
                  "nested_loop"),
            Query("SELECT c.customer_id, count(o.order_id) FROM customers c LEFT JOIN orders o "
                  f"ON o.customer_id = c.score WHERE c.customer_id IN ({ids}) "
                  "GROUP BY c.customer_id ORDER BY c.customer_id", True, "left_join_agg"),
        ])

    def subquery(self) -> Query:
        r = self.r
        tier = q(r.choice([t for t in TIERS if t]))
        st = q(r.choice(STATUSES))
        return r.choice([
            Query("SELECT order_id, total FROM orders WHERE customer_id IN (SELECT customer_id "
                  f"FROM customers WHERE tier = {tier}) ORDER BY order_id", True, "pullout_in"),
            Query("SELECT customer_id FROM customers WHERE customer_id NOT IN (SELECT "
                  f"customer_id FROM orders WHERE status = {st}) ORDER BY customer_id", True,
                  "pullout_not_in"),
            Query("SELECT order_id FROM orders WHERE total > (SELECT avg(total) FROM orders) "
                  "ORDER BY order_id", True, "pullout_value"),
            Query("SELECT c.customer_id, c.name FROM customers c WHERE EXISTS (SELECT 1 FROM "
                  f"orders o WHERE o.customer_id = c.customer_id AND o.status = {st}) "
                  "ORDER BY c.customer_id", True, "correlated_exists"),
            Query("SELECT c.customer_id FROM customers c WHERE NOT EXISTS (SELECT 1 FROM "
                  "orders o WHERE o.customer_id = c.customer_id) ORDER BY c.customer_id", True,
                  "correlated_not_exists"),
            Query("SELECT c.customer_id, (SELECT count(*) FROM orders o WHERE o.customer_id = "
                  "c.customer_id) AS n FROM customers c ORDER BY c.customer_id LIMIT 20", True,
                  "correlated_scalar"),
            Query("SELECT count(*) FROM orders WHERE EXISTS (SELECT 1 FROM customers WHERE "
                  f"tier = {tier})", True, "pullout_exists"),
        ])

    def union(self) -> Query:
        r = self.r
        op = r.choice(["UNION", "UNION ALL"])
        a = f"SELECT customer_id FROM customers WHERE tier = {q(r.choice([t for t in TIERS if t]))}"
        b = f"SELECT customer_id FROM orders WHERE status = {q(r.choice(STATUSES))}"
        if r.random() < 0.5:
            return Query(f"{a} {op} {b} ORDER BY 1{self.limit()}",
                         op == "UNION" or True, "union")
        return Query(f"{a} {op} {b}", False, "union")

    def cte(self) -> Query:
        r = self.r
        return r.choice([
            Query("WITH t AS (SELECT customer_id, count(*) AS n FROM orders GROUP BY "
                  "customer_id) SELECT n, count(*) FROM t GROUP BY n ORDER BY n", True, "cte"),
            Query(f"WITH g AS (SELECT * FROM customers WHERE {self.customer_filter()}) "
                  "SELECT customer_id, name FROM g ORDER BY customer_id", True, "cte"),
            Query("WITH s AS (SELECT status, sum(total) AS t FROM orders GROUP BY status) "
                  "SELECT status FROM s WHERE t > 1000 ORDER BY status", True, "cte"),
        ])

    def unsupported(self) -> Query:
        return self.r.choice([
            Query("SELECT order_id, row_number() OVER (ORDER BY order_id) FROM orders", False,
                  "window"),
            Query("SELECT string_agg(status, ',' ORDER BY status) FROM orders", True,
                  "ordered_agg"),
            Query("SELECT customer_id FROM customers INTERSECT SELECT customer_id FROM orders",
                  False, "intersect"),
            Query("SELECT stddev(total) FROM orders", True, "stddev"),
        ])
