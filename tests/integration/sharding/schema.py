"""The differential tests' schema and data: customers, orders and order lines sharded by
customer_id (hash), products as a reference table, lookup vindexes on customers.email
(unique) and order_lines.sku (non-unique), regions in the unsharded tablegroup.

The VSchema is the golden files' (tests/golden/planner/vschema.json). Values are chosen to
exercise merges: NULLs in sorted and aggregated columns, ties, text whose C-collation order
differs from a linguistic one (upper/lower case, accents, the empty string), numerics of
fixed scale.
"""

from __future__ import annotations

import datetime
import random
from pathlib import Path
from typing import Any

from multigres.vschema.model import VSchema

VSCHEMA_PATH = Path(__file__).parents[2] / "golden" / "planner" / "vschema.json"

DDL = """
CREATE TABLE customers (customer_id bigint PRIMARY KEY, name text NOT NULL, email text,
  region_id int, tier text, active boolean NOT NULL, created date NOT NULL, score int);
CREATE TABLE orders (customer_id bigint NOT NULL, order_id bigint NOT NULL,
  status text NOT NULL, total numeric(12,2), placed date NOT NULL, note varchar(40),
  PRIMARY KEY (customer_id, order_id));
CREATE TABLE order_lines (customer_id bigint NOT NULL, order_id bigint NOT NULL,
  line_no int NOT NULL, sku text NOT NULL, qty int NOT NULL, price numeric(10,2) NOT NULL,
  discount numeric(5,2), PRIMARY KEY (customer_id, order_id, line_no));
CREATE TABLE products (sku text PRIMARY KEY, product_id int NOT NULL, name text NOT NULL,
  category text, price numeric(10,2) NOT NULL, active boolean NOT NULL);
CREATE TABLE regions (region_id int PRIMARY KEY, name text NOT NULL, zone text);
CREATE TABLE customer_email_idx (email text PRIMARY KEY, ksid bytea NOT NULL);
CREATE TABLE sku_lookup (sku text NOT NULL, ksid bytea NOT NULL, PRIMARY KEY (sku, ksid));
"""

NAMES = ["adam", "Adam", "Zoë", "zoe", "Émile", "bob", "Bob", "", "carol", "Dave", "éva",
         "Eve", "frank", "Gus", "hal", "Ivy", "ñandu", "Oscar", "peggy", "Quinn"]
TIERS = ["gold", "silver", "bronze", None, "Gold"]
STATUSES = ["new", "paid", "shipped", "cancelled", "returned", "New"]
NOTES = [None, "gift", "Gift", "urgent", "", "call first", "zzz", "ärger", None]
CATEGORIES = ["tools", "toys", "Toys", "food", None, "books"]
ZONES = ["north", "south", None]


def vschema() -> VSchema:
    return VSchema.loads(VSCHEMA_PATH.read_text())


class Data:
    """The rows of every table (deterministic for a seed), and the values queries use."""

    def __init__(self, vs: VSchema, seed: int = 5) -> None:
        rnd = random.Random(seed)
        self.customer_ids = sorted(rnd.sample(range(1, 100_000), 120))
        self.regions = [(i, f"region {i}", rnd.choice(ZONES)) for i in range(1, 6)]
        self.products = []
        for i in range(30):
            self.products.append((
                f"SKU{i:03d}" if i % 7 else f"sku{i:03d}", 1000 + i, f"product {i}",
                rnd.choice(CATEGORIES), f"{rnd.randint(1, 20000) / 100:.2f}", rnd.random() < 0.8,
            ))
        self.skus = [p[0] for p in self.products]
        base = datetime.date(2024, 1, 1)
        self.customers = []
        self.emails = []
        for cid in self.customer_ids:
            email = None if rnd.random() < 0.1 else f"c{cid}@example.com"
            if email:
                self.emails.append(email)
            self.customers.append((
                cid, rnd.choice(NAMES) + (f" {cid % 7}" if rnd.random() < 0.5 else ""), email,
                None if rnd.random() < 0.15 else rnd.randint(1, 6), rnd.choice(TIERS),
                rnd.random() < 0.7, base + datetime.timedelta(days=rnd.randint(0, 400)),
                None if rnd.random() < 0.2 else rnd.randint(-50, 50),
            ))
        self.orders = []
        self.order_lines = []
        oid = 1
        for cid in self.customer_ids:
            for _ in range(rnd.choice([0, 1, 2, 3, 4, 5, 8])):
                oid += rnd.randint(1, 3)
                total = None if rnd.random() < 0.12 else f"{rnd.randint(0, 100000) / 100:.2f}"
                self.orders.append((
                    cid, oid, rnd.choice(STATUSES), total,
                    base + datetime.timedelta(days=rnd.randint(0, 60)), rnd.choice(NOTES),
                ))
                for line in range(1, rnd.randint(1, 5)):
                    self.order_lines.append((
                        cid, oid, line, rnd.choice(self.skus), rnd.randint(1, 9),
                        f"{rnd.randint(100, 9999) / 100:.2f}",
                        None if rnd.random() < 0.5 else f"{rnd.randint(0, 50) / 100:.2f}",
                    ))
        self.order_ids = [o[1] for o in self.orders]
        hash_vindex = vs.vindex("hash")
        assert hash_vindex is not None
        ksid = dict(zip(self.customer_ids, hash_vindex.map(self.customer_ids), strict=True))  # type: ignore[attr-defined]
        self.email_idx = [(c[2], ksid[c[0]]) for c in self.customers if c[2] is not None]
        self.sku_lookup = sorted({(ol[3], ksid[ol[0]]) for ol in self.order_lines})

    def tables(self) -> dict[str, tuple[list[str], list[tuple[Any, ...]]]]:
        return {
            "customers": (["customer_id", "name", "email", "region_id", "tier", "active",
                           "created", "score"], self.customers),
            "orders": (["customer_id", "order_id", "status", "total", "placed", "note"],
                       self.orders),
            "order_lines": (["customer_id", "order_id", "line_no", "sku", "qty", "price",
                             "discount"], self.order_lines),
            "products": (["sku", "product_id", "name", "category", "price", "active"],
                         self.products),
            "regions": (["region_id", "name", "zone"], self.regions),
            "customer_email_idx": (["email", "ksid"], self.email_idx),
            "sku_lookup": (["sku", "ksid"], self.sku_lookup),
        }
