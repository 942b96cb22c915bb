"""Following a topology watch for as long as the gateway runs.

The gateway keeps what it learned when the topology goes away (poolers keep serving, a
VSchema stays in force) and re-opens the watch with a growing delay; each new watch starts
with the current state (``initial``), so nothing that changed meanwhile is missed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from multigres.topo.server import RecordChange, RecordWatch

log = logging.getLogger("multigres.gateway")

RETRY_MIN = 0.2
RETRY_MAX = 2.0

R = TypeVar("R")


async def follow(
    what: str,
    open_watch: Callable[[], RecordWatch[R]],
    on_initial: Callable[[list[RecordChange[R]]], Awaitable[None]],
    on_change: Callable[[RecordChange[R]], Awaitable[None]],
    stopped: Callable[[], bool],
    ready: asyncio.Event | None = None,
) -> None:
    """Apply the watch's initial state, then each change, until ``stopped()``; ``ready`` is
    set once the initial state is in (or the first attempt failed)."""
    delay = RETRY_MIN
    while not stopped():
        try:
            async with open_watch() as watch:
                await on_initial(watch.initial)
                if ready is not None:
                    ready.set()
                delay = RETRY_MIN
                async for change in watch:
                    await on_change(change)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # the topology went away: keep what we know, retry
            log.warning("watching %s: %s; retrying", what, e)
        if ready is not None:
            ready.set()
        await asyncio.sleep(delay)
        delay = min(delay * 2, RETRY_MAX)
