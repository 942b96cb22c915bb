"""Fixtures of the topology suite: the same tests run against the memory and etcd backends.

``topo`` is a :class:`~multigres.testing.etcd.TopoBackend`; ``etcd_server`` comes from the
root conftest, which also runs ``async def`` tests.
"""

from __future__ import annotations

import pytest

from multigres.testing.etcd import TopoBackend


@pytest.fixture(params=["memory", "etcd"])
def topo(request: pytest.FixtureRequest) -> TopoBackend:
    if request.param == "etcd":
        # Only the etcd half of the suite starts etcd.
        return TopoBackend(request.getfixturevalue("etcd_server"))
    return TopoBackend()
