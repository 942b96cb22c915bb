"""The VSchema document: the example parses into what the planner asks for, and every kind
of mistake is refused with a message that names its path in the document."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from multigres.vschema.errors import VSchemaError
from multigres.vschema.model import VSchema
from multigres.vschema.vindexes import HashVindex, LookupUniqueVindex, LookupVindex

EXAMPLE = Path(__file__).parents[3] / "examples" / "vschema_sharded.json"


def example() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(EXAMPLE.read_text())
    return doc


def test_example_tables() -> None:
    vs = VSchema.loads(EXAMPLE.read_text())
    customers, orders = vs.table("customers"), vs.table("orders")
    assert customers is not None and orders is not None
    assert customers.kind == "sharded" and customers.sharded
    assert customers.tablegroup.name == "shop"
    assert customers.primary_columns == ("customer_id",)
    pv = customers.primary_vindex
    assert pv is not None and isinstance(pv.vindex, HashVindex) and pv.primary
    # co-located: the same vindex on the same column
    assert orders.primary_vindex is not None and orders.primary_vindex.vindex is pv.vindex
    (email,) = customers.vindexes_for_column("email")
    assert isinstance(email.vindex, LookupUniqueVindex) and email.owned and not email.primary
    assert customers.owned_vindexes == (email,)
    assert customers.secondary_vindexes == (email,)
    assert vs.sequence_of("orders") is not None
    assert vs.sequence_of("orders").name == "orders_id_seq"  # type: ignore[union-attr]
    assert vs.sequence_of("orders").tablegroup == "default"  # type: ignore[union-attr]
    assert vs.sequence_of("products") is None
    products = vs.table("products")
    assert products is not None and products.kind == "reference" and not products.sharded
    assert products.primary_vindex is None


def test_example_lookups_are_bound() -> None:
    vs = VSchema.loads(EXAMPLE.read_text())
    email = vs.vindex("customer_email_lookup")
    assert isinstance(email, LookupUniqueVindex)
    assert email.owner == "customers"
    # its table is sharded by email: each lookup goes to one shard
    assert email.tablegroup == "shop" and email._route is not None
    sku = vs.vindex("order_sku_lookup")
    assert isinstance(sku, LookupVindex) and not sku.unique
    assert sku.tablegroup == "default" and sku._route is None
    ol = vs.table("order_lines")
    assert ol is not None
    (cv,) = ol.vindexes_for_column("sku")
    assert cv.columns == ("sku", "order_line_id") and cv.owned


def test_unnamed_tables_are_in_the_default_tablegroup() -> None:
    vs = VSchema.loads(EXAMPLE.read_text())
    t = vs.table("audit_log")
    assert t is not None and not t.declared and t.kind == "unsharded"
    assert t.tablegroup.name == "default"
    # public.orders is orders
    assert vs.table("public.orders") is vs.table("orders")
    assert vs.table("other.orders") is not vs.table("orders")
    assert [t.name for t in vs.tables_in("default")] == ["order_line_sku_idx"]


def test_schema_qualified_names() -> None:
    doc: dict[str, Any] = {"tablegroups": {"u": {}}, "tables": {"public.t": {}, "s.t": {}}}
    vs = VSchema.parse(doc)
    assert vs.table("t") is vs.tables["public.t"]
    assert vs.table("s.t") is vs.tables["s.t"]


def test_lookup_table_named_with_its_schema() -> None:
    doc = example()
    doc["vindexes"]["order_sku_lookup"]["params"]["table"] = "public.order_line_sku_idx"
    sku = VSchema.parse(doc).vindex("order_sku_lookup")
    assert isinstance(sku, LookupVindex) and sku.tablegroup == "default"
    assert sku.sql_map.startswith('SELECT "keyspace_id" FROM "order_line_sku_idx"')
    doc["vindexes"]["order_sku_lookup"]["params"]["table"] = "default.order_line_sku_idx"
    assert VSchema.parse(doc).vindex("order_sku_lookup") is not None


def test_only_sharded_tablegroups_have_no_default() -> None:
    vs = VSchema.parse({"tablegroups": {"s": {"sharded": True}}})
    assert vs.default_tablegroup is None and vs.table("x") is None


def test_several_unsharded_with_default() -> None:
    vs = VSchema.parse({"tablegroups": {"a": {}, "b": {}}, "default_tablegroup": "b"})
    assert vs.default_tablegroup is not None and vs.default_tablegroup.name == "b"


def test_not_strict_ignores_unknown_fields() -> None:
    doc = example()
    doc["future"] = 1
    doc["tables"]["orders"]["columns"] = []
    with pytest.raises(VSchemaError):
        VSchema.parse(doc)
    assert VSchema.parse(doc, strict=False).table("orders") is not None


# -- mistakes --------------------------------------------------------------------------------


def _with(change: Any) -> dict[str, Any]:
    doc = example()
    change(doc)
    return doc


def _set(path: str, value: Any) -> Any:
    def change(doc: dict[str, Any]) -> None:
        *parents, last = path.split("/")
        node: Any = doc
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node[p]
        if value is _DELETE:
            del node[int(last) if isinstance(node, list) else last]
        elif isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return change


_DELETE = object()

CASES: list[tuple[str, Any, str]] = [
    (
        "unknown vindex",
        _set("tables/orders/column_vindexes/0/name", "hsh"),
        'tables.orders.column_vindexes[0].name: no vindex named "hsh"',
    ),
    (
        "unknown vindex type",
        _set("vindexes/hash/type", "hashh"),
        "vindexes.hash.type: unknown vindex type \"hashh\" (one of: hash, xxhash, numeric, ",
    ),
    (
        "sharded table without primary vindex",
        _set("tables/orders/column_vindexes", []),
        "tables.orders.column_vindexes: a table of the sharded tablegroup \"shop\" needs a "
        "primary vindex",
    ),
    (
        "sharded table without column_vindexes",
        _set("tables/orders/column_vindexes", _DELETE),
        "tables.orders.column_vindexes: a table of the sharded tablegroup \"shop\" needs",
    ),
    (
        "non-unique primary vindex",
        _set("tables/orders/column_vindexes/0", {"columns": ["sku", "x"],
                                                 "name": "order_sku_lookup"}),
        "tables.orders.column_vindexes[0].name: the primary vindex (the first) must be unique: "
        "it places each row on one shard; order_sku_lookup (lookup) is not",
    ),
    (
        "primary lookup owned by the table",
        _set("tables/customers/column_vindexes/0",
             {"column": "email", "name": "customer_email_lookup"}),
        "tables.customers.column_vindexes[0].name: the primary vindex cannot be a lookup the "
        "table owns",
    ),
    (
        "lookup table missing",
        _set("tables/customer_email_idx", _DELETE),
        'vindexes.customer_email_lookup.params.table: no table named "customer_email_idx" in '
        "tables: a lookup vindex's table must be in the VSchema",
    ),
    (
        "lookup table in another tablegroup",
        _set("vindexes/customer_email_lookup/params/table", "default.customer_email_idx"),
        "vindexes.customer_email_lookup.params.table: table \"customer_email_idx\" is in "
        "tablegroup \"shop\", not \"default\"",
    ),
    (
        "unknown tablegroup",
        _set("tables/orders/tablegroup", "shops"),
        "tables.orders.tablegroup: no tablegroup named \"shops\" in tablegroups",
    ),
    (
        "unknown sequence",
        _set("tables/orders/auto_increment/sequence", "order_seq"),
        "tables.orders.auto_increment.sequence: no sequence named \"order_seq\" in sequences",
    ),
    (
        "sequence in a sharded tablegroup",
        _set("sequences/orders_id_seq/tablegroup", "shop"),
        "sequences.orders_id_seq.tablegroup: \"shop\" is sharded; a sequence lives in an "
        "unsharded tablegroup",
    ),
    (
        "sequence named like a table",
        _set("sequences/order_line_sku_idx", {}),
        "sequences.order_line_sku_idx: a table of the same name is in tablegroup \"default\"",
    ),
    (
        "wrong type: tables",
        _set("tables", []),
        "tables: expected an object, got a list",
    ),
    (
        "wrong type: sharded",
        _set("tablegroups/shop/sharded", "yes"),
        'tablegroups.shop.sharded: expected true or false, got "yes"',
    ),
    (
        "wrong type: column",
        _set("tables/orders/column_vindexes/0/column", 5),
        "tables.orders.column_vindexes[0].column: expected a string, got a number",
    ),
    (
        "wrong type: column_vindexes",
        _set("tables/orders/column_vindexes", {"column": "x"}),
        "tables.orders.column_vindexes: expected a list, got dict",
    ),
    (
        "wrong type: cache",
        _set("sequences/orders_id_seq/cache", 0),
        "sequences.orders_id_seq.cache: 0 is out of range (1..1000000000)",
    ),
    (
        "unknown field",
        _set("tables/orders/colum_vindexes", []),
        "tables.orders.colum_vindexes: unknown field (expected one of: auto_increment, "
        "column_vindexes, tablegroup, type)",
    ),
    (
        "unknown top-level field",
        _set("table", {}),
        "table: unknown field",
    ),
    (
        "unknown vindex param",
        _set("vindexes/name_hash/params/case_insensitve", True),
        "vindexes.name_hash.params.case_insensitve: unknown parameter (this vindex takes: "
        "case_insensitive)",
    ),
    (
        "vindex on an unsharded table",
        _set("tables/order_line_sku_idx/column_vindexes", [{"column": "sku", "name": "hash"}]),
        "tables.order_line_sku_idx.column_vindexes: tablegroup \"default\" is unsharded: its "
        "tables have no vindexes",
    ),
    (
        "vindex on a reference table",
        _set("tables/products/column_vindexes", [{"column": "id", "name": "hash"}]),
        "tables.products.column_vindexes: a reference table has no vindexes",
    ),
    (
        "bad table type",
        _set("tables/products/type", "ref"),
        "tables.products.type: \"ref\" is not one of: sharded, reference",
    ),
    (
        "column count",
        _set("tables/order_lines/column_vindexes/1", {"column": "sku",
                                                       "name": "order_sku_lookup"}),
        "tables.order_lines.column_vindexes[1].column: names 1 column(s); vindex "
        "order_sku_lookup (lookup) reads 2",
    ),
    (
        "column and columns",
        _set("tables/orders/column_vindexes/0/columns", ["a"]),
        "tables.orders.column_vindexes[0]: give either column or columns, not both",
    ),
    (
        "no column",
        _set("tables/orders/column_vindexes/0", {"name": "hash"}),
        "tables.orders.column_vindexes[0].column: missing (or columns: a list)",
    ),
    (
        "listed twice",
        _set("tables/orders/column_vindexes", [{"column": "customer_id", "name": "hash"}] * 2),
        "tables.orders.column_vindexes[1]: vindex \"hash\" on [\"customer_id\"] is listed twice",
    ),
    (
        "owner missing",
        _set("vindexes/customer_email_lookup/owner", "customer"),
        "vindexes.customer_email_lookup.owner: no table named \"customer\" in tables",
    ),
    (
        "owner does not use the vindex",
        _set("vindexes/customer_email_lookup/owner", "orders"),
        "vindexes.customer_email_lookup.owner: table \"orders\" does not list this vindex",
    ),
    (
        "owner of a functional vindex",
        _set("vindexes/hash/owner", "orders"),
        "vindexes.hash.owner: only a lookup vindex has an owner (hash does not)",
    ),
    (
        "no tablegroups",
        _set("tablegroups", _DELETE),
        "tablegroups: missing (required)",
    ),
    (
        "empty tablegroups",
        _set("tablegroups", {}),
        "tablegroups: names no tablegroup",
    ),
    (
        "bad tablegroup name",
        _set("tablegroups/a b", {}),
        'tablegroups."a b": a tablegroup name must be non-empty',
    ),
    (
        "two unsharded, no default",
        _set("tablegroups/extra", {}),
        "default_tablegroup: missing: there are several unsharded tablegroups "
        '("default", "extra")',
    ),
    (
        "default is sharded",
        _set("default_tablegroup", "shop"),
        "default_tablegroup: \"shop\" is sharded",
    ),
    (
        "same table twice",
        _set("tables/public.orders", {"tablegroup": "default"}),
        "tables.\"public.orders\": names the same table as tables.orders",
    ),
    (
        "vindex without type",
        _set("vindexes/hash", {}),
        "vindexes.hash.type: missing (required)",
    ),
]


@pytest.mark.parametrize(("change", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_mistake_is_named(change: Any, message: str) -> None:
    with pytest.raises(VSchemaError) as info:
        VSchema.parse(_with(change))
    assert message in str(info.value), str(info.value)


def test_bad_vindex_is_reported_once() -> None:
    # The tables that use a broken vindex do not add their own errors.
    doc = _with(_set("vindexes/hash/type", "hashh"))
    with pytest.raises(VSchemaError) as info:
        VSchema.parse(doc)
    assert len(info.value.problems) == 1


def test_every_problem_is_listed() -> None:
    doc = example()
    doc["tables"]["orders"]["tablegroup"] = "nope"
    doc["vindexes"]["hash"]["params"] = {"x": 1}
    with pytest.raises(VSchemaError) as info:
        VSchema.parse(doc)
    text = str(info.value)
    assert text.startswith("2 problems:")
    assert "tables.orders.tablegroup" in text and "vindexes.hash.params.x" in text


def test_repeated_key_in_json_text() -> None:
    text = EXAMPLE.read_text().replace(
        '"products": {"tablegroup": "shop", "type": "reference"},',
        '"products": {"tablegroup": "shop", "type": "reference"},\n'
        '    "products": {"tablegroup": "default"},',
    )
    with pytest.raises(VSchemaError, match=r"tables\.products: appears more than once"):
        VSchema.loads(text)


def test_not_an_object() -> None:
    with pytest.raises(VSchemaError, match="expected an object, got a list"):
        VSchema.parse([])


def test_doc_is_kept_as_given() -> None:
    doc = example()
    vs = VSchema.parse(copy.deepcopy(doc))
    assert vs.doc == doc
    assert json.loads(vs.to_json()) == doc
