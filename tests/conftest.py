"""Shared fixtures: real Postgres (and etcd, see tests/integration/topo) on free loopback ports.

Everything a fixture starts is stopped at the end of the session, also when tests fail. A
SIGTERM (CI timeout, a killed run) becomes KeyboardInterrupt so that the same teardown runs.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from types import FrameType

import pytest

from multigres.testing.postgres import PgHarness


def _sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


signal.signal(signal.SIGTERM, _sigterm)


@pytest.fixture(scope="session")
def pg_harness() -> Iterator[PgHarness]:
    harness = PgHarness()
    try:
        yield harness
    finally:
        harness.cleanup()
