"""What issue 5's "done" asks a user to do, as they would do it: start the sharded example,
apply the example VSchema, create the example schema and load the example data with psql
through the gateway, then query it."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from multigres.pgctld.binaries import find_bin_dir
from tests.e2e.test_sharded_cluster import Cluster, _rows, sharded_cluster

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with sharded_cluster(tmp_path_factory.mktemp("examples"),
                         EXAMPLES / "vschema_sharded.json") as c:
        yield c


def _psql(c: Cluster, file: Path) -> str:
    out = subprocess.run(
        [str(find_bin_dir() / "psql"), "-h", "127.0.0.1", "-p", str(c.ports.gateway),
         "-U", "postgres", "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-f", str(file)],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "PGPASSWORD": "postgres"})
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_the_examples_with_psql(cluster: Cluster) -> None:
    out = _psql(cluster, EXAMPLES / "sharded_schema.sql")
    assert out.count("CREATE TABLE") == 6
    out = _psql(cluster, EXAMPLES / "sharded_data.sql")
    assert "INSERT 0 5" in out
    with cluster.gateway() as gw:
        assert _rows(gw, "SELECT count(*) FROM customers") == [(5,)]
        assert _rows(gw, "SELECT name FROM customers WHERE email = 'eve@example.com'") == [
            ("Eve",)]
        ids = [r[0] for r in _rows(gw, "SELECT order_id FROM orders ORDER BY order_id")]
        assert len(ids) == 5 and len(set(ids)) == 5  # from the VSchema's sequence
        best = _rows(gw, "SELECT c.name, sum(o.amount) FROM customers c JOIN orders o "
                         "ON o.customer_id = c.customer_id GROUP BY c.name "
                         "ORDER BY 2 DESC LIMIT 2")
        assert [(n, str(a)) for n, a in best] == [("Bob", "40.00"), ("Eve", "19.99")]
        top = _rows(gw, "SELECT customer_id, sum(amount) FROM orders GROUP BY customer_id "
                        "ORDER BY 2 DESC LIMIT 2")
        assert [(r[0], str(r[1])) for r in top] == [(2, "40.00"), (5, "19.99")]
        lines = _rows(gw, "SELECT l.sku, p.title, l.qty FROM order_lines l JOIN products p "
                          "ON p.sku = l.sku WHERE l.customer_id = 1 ORDER BY l.sku")
        assert lines == [("apple", "Apple", 3), ("bread", "Bread", 1)]
        # The non-unique sku lookup finds the lines of every customer that bought apples.
        assert _rows(gw, "SELECT customer_id, qty FROM order_lines WHERE sku = 'apple' "
                         "ORDER BY customer_id") == [(1, 3), (5, 10)]
