"""Session isolation through the gateway: the pooler's matrix (tests/isolation_matrix.py) run
client -> multigateway -> multipooler -> Postgres.

The gateway holds one pooler connection per client session; the pooler under it has pool size
2, so a client's consecutive transactions land on different Postgres backends, exactly as in
the pooler's own run of the matrix. Every case that holds through the pooler must hold here.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from multigres.testing.etcd import ThrowawayEtcd
from multigres.testing.postgres import PgHarness
from tests.integration.pooler.conftest import _setup as create_roles_and_schemas
from tests.isolation_matrix import Case, Target, cases

from .conftest import GatewayCluster, wait_until

pytestmark = pytest.mark.integration

POOL_SIZE = 2
INTERNAL_ERRORS = ("Traceback", "Exception in callback", "Task exception was never")


@pytest.fixture(scope="module")
def iso_cluster(pg_harness: PgHarness, etcd_server: ThrowawayEtcd) -> Iterator[GatewayCluster]:
    """Like ``gw_cluster``, with pool size 2 in the poolers, and the roles and schemas the
    matrix uses."""
    primary, replicas = pg_harness.shard(replicas=1)
    create_roles_and_schemas(primary)
    cluster = GatewayCluster(etcd_server, primary, replicas[0],
                             Path(tempfile.mkdtemp(prefix="multigres-gw-iso-")))
    try:
        cluster.add_pooler("zone1-iso1", primary, pool_size=POOL_SIZE)
        cluster.add_pooler("zone1-iso2", replicas[0], pool_size=POOL_SIZE)
        cluster.gateway.start()
        # The first session waits for the primary's pooler to be known and healthy.
        wait_until(lambda: _primary_serves(cluster), what="the gateway serves the primary")
        yield cluster
        # An exception inside the gateway or a pooler is a bug even when no client saw it.
        for proc in (cluster.gateway, *cluster.poolers.values()):
            text = proc.log_text()
            assert not any(m in text for m in INTERNAL_ERRORS), (
                f"{proc.name} logged an internal error:\n{text[-6000:]}")
    finally:
        cluster.stop()


def _primary_serves(cluster: GatewayCluster) -> bool:
    try:
        with cluster.connect() as conn:
            return conn.execute("SELECT pg_is_in_recovery()").fetchone() == (False,)
    except Exception:
        return False


@pytest.fixture
def target(iso_cluster: GatewayCluster) -> Target:
    return Target("gateway", iso_cluster.conninfo(), iso_cluster.primary.endpoint().conninfo(),
                  backends=POOL_SIZE)


@pytest.mark.parametrize("case", cases())
def test_isolation(case: Case, target: Target) -> None:
    case(target)
