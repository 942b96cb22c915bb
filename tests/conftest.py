"""Shared fixtures: real Postgres and etcd on free loopback ports, and ``async def`` tests.

Everything a fixture starts is stopped at the end of the session, also when tests fail. A
SIGTERM (CI timeout, a killed run) becomes KeyboardInterrupt so that the same teardown runs.
"""

from __future__ import annotations

import asyncio
import inspect
import signal
from collections.abc import Iterator
from types import FrameType

import pytest

from multigres.testing.etcd import ThrowawayEtcd, running_etcd
from multigres.testing.postgres import PgHarness

# A hung async test fails with its traceback well before pytest-timeout's limit.
ASYNC_TEST_TIMEOUT = 60.0


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


@pytest.fixture(scope="session")
def etcd_server() -> Iterator[ThrowawayEtcd]:
    with running_etcd() as etcd:
        yield etcd


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run ``async def`` tests, each in a fresh event loop (no pytest-asyncio needed).

    Fixture values with an ``aclose()`` coroutine (topology backends, clients) are closed in
    that same loop afterwards, since their connections belong to it.
    """
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    args = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}

    async def run() -> None:
        try:
            async with asyncio.timeout(ASYNC_TEST_TIMEOUT):
                await pyfuncitem.obj(**args)
        finally:
            for value in args.values():
                aclose = getattr(value, "aclose", None)
                if aclose is not None and inspect.iscoroutinefunction(aclose):
                    await aclose()

    asyncio.run(run())
    return True
