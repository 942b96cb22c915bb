"""Micro-benchmark: a pool checkout and return (the work the pooler does per transaction to
hand a server connection to a client and take it back), with stand-in backends."""

from __future__ import annotations

import asyncio
import os
import platform
from typing import Any

from multigres._cy.poolcore import BackendCore
from multigres.pooler.pool import Pool


class _Backend(BackendCore):
    """A backend with only what the pool touches (the typed fields of BackendCore)."""

    def close(self) -> None:
        self.closed = True


class _Waiter:
    def on_backend(self, backend: Any) -> None:
        raise AssertionError("an idle backend was there: no waiting")

    def on_backend_error(self, error: Any) -> None:
        raise AssertionError(error)


def test_checkout_and_return(benchmark: Any) -> None:
    async def setup() -> tuple[Pool, list[_Backend]]:
        pool = Pool("app", "db", 20, lambda p: asyncio.get_running_loop().create_future(),
                    lifetime=0, idle_timeout=0)
        backends = [_Backend() for _ in range(20)]
        for b in backends:
            pool.idle[b] = None  # type: ignore[index]
        return pool, backends

    loop = asyncio.new_event_loop()
    try:
        pool, backends = loop.run_until_complete(setup())
        waiter = _Waiter()
        prefer: Any = backends[3]

        def cycle() -> None:
            # 100 checkouts and returns per round, half with affinity to a previous backend.
            for _ in range(50):
                b = pool.acquire(waiter)
                assert b is not None
                pool.release(b)
                b = pool.acquire(waiter, prefer=prefer)
                assert b is not None and b is prefer
                pool.release(b)

        async def run() -> None:
            benchmark(cycle)

        loop.run_until_complete(run())
    finally:
        loop.close()
    stats = benchmark.stats.stats if benchmark.stats else None
    if stats is not None:
        per = stats.mean / 100 * 1e9
        benchmark.extra_info["ns_per_checkout_and_return"] = round(per, 1)
        print(f"\npool checkout + return: {per:.0f} ns (pool of 20, {os.cpu_count()} CPUs, "
              f"{platform.processor() or platform.machine()}, Python {platform.python_version()})")
