"""Session isolation through a small pool (pool size 2, more concurrent clients than that):
the matrix of tests/isolation_matrix.py, run against the pooler directly. The gateway runs the
same matrix (tests/integration/gateway/test_isolation.py)."""

from __future__ import annotations

import pytest

from multigres.pgctld.instance import PgInstance
from multigres.testing.pooler import PoolerProcess
from tests.isolation_matrix import Case, Target, cases

pytestmark = pytest.mark.integration


@pytest.fixture
def target(pooler: PoolerProcess, pg: PgInstance) -> Target:
    return Target("pooler", pooler.conninfo(), pg.endpoint().conninfo(), backends=2)


@pytest.mark.parametrize("case", cases())
def test_isolation(case: Case, target: Target) -> None:
    case(target)
