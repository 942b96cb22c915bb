"""Every statement of tests/golden/planner/*.sql plans to exactly what its .golden.json says
(the plan as JSON and the SQL each shard gets). After a deliberate change, regenerate with
``MULTIGRES_GOLDEN_UPDATE=1 pytest tests/unit/gateway/planner/test_golden.py`` and review the
diff."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.unit.gateway.planner.golden import GOLDEN_DIR, dump, generate, golden_path, vschema

SQL_FILES = sorted(GOLDEN_DIR.glob("*.sql"))


@pytest.mark.parametrize("sql_file", SQL_FILES, ids=[p.stem for p in SQL_FILES])
def test_golden(sql_file: Path) -> None:
    got = generate(sql_file, vschema())
    out = golden_path(sql_file)
    if os.environ.get("MULTIGRES_GOLDEN_UPDATE") == "1" or not out.exists():
        out.write_text(dump(got))
        return
    want = json.loads(out.read_text())
    by_sql = {e["sql"]: e for e in want}
    missing = [e["sql"] for e in got if e["sql"] not in by_sql]
    assert not missing, (
        f"statements without a golden entry (run with MULTIGRES_GOLDEN_UPDATE=1): {missing}"
    )
    for e in got:
        assert e == by_sql[e["sql"]], f"plan changed for: {e['sql']}"


def test_enough_statements() -> None:
    reads = sum(len(json.loads(golden_path(p).read_text())) for p in SQL_FILES
                if golden_path(p).exists() and p.stem.startswith("select"))
    assert reads >= 150
