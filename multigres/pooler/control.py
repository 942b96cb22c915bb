"""The operations a pooler offers its operators, whatever the number of processes.

The admin console, ``/metrics`` and the gRPC service talk to a :class:`Control`: with one
process it is :class:`LocalControl` (the server itself); in a worker of ``--workers N`` it
asks the parent, which runs the operation on every worker (workers.py); in the parent it
asks the workers directly.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Protocol

from multigres.pooler import config as config_mod
from multigres.pooler.stats import process_snapshot

if TYPE_CHECKING:
    from multigres.pooler.server import PoolerServer

log = logging.getLogger("multigres.pooler")


class ControlError(Exception):
    """An operation that cannot be done now (RESUME when not paused, a bad config file)."""

    def __init__(self, sqlstate: str, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate
        self.message = message
        self.hint = hint


class Control(Protocol):
    async def snapshots(self, detail: bool = False) -> list[dict[str, Any]]:
        """One snapshot per worker (stats.process_snapshot)."""
        ...

    async def pause(self) -> None:
        """Hold new transactions; return when no server connection is in use."""
        ...

    async def resume(self) -> None: ...

    async def reload(self) -> list[str]:
        """Re-read the config file and userlist; what changed, and what needs a restart."""
        ...


# The per-process steps, shared by LocalControl and the workers' side of workers.py.


async def pause_local(server: PoolerServer) -> bool:
    """Pause this process; True if it was paused already."""
    was = server.paused
    server.pause()
    await server.wait_idle()
    return was


def resume_local(server: PoolerServer) -> bool:
    """Resume this process; True if it was paused."""
    was = server.paused
    server.resume()
    return was


def reload_local(server: PoolerServer) -> list[str]:
    try:
        result = config_mod.reload(server.config)
    except config_mod.ConfigError as e:
        raise ControlError("F0000", f"RELOAD failed, the configuration is unchanged: {e}") from e
    server.apply_config()
    notices = result.notices()
    for n in notices:
        log.info("reload: %s", n)
    return notices


def check_pause(already: list[bool]) -> None:
    if already and all(already):
        raise ControlError("55000", "the pooler is already paused", hint="RESUME ends a pause")


def check_resume(were: list[bool]) -> None:
    if not any(were):
        raise ControlError("55000", "the pooler is not paused")


class LocalControl:
    def __init__(self, server: PoolerServer) -> None:
        self.server = server

    async def snapshots(self, detail: bool = False) -> list[dict[str, Any]]:
        return [process_snapshot(self.server, detail)]

    async def pause(self) -> None:
        if self.server.paused:
            check_pause([True])
        await pause_local(self.server)

    async def resume(self) -> None:
        check_resume([resume_local(self.server)])

    async def reload(self) -> list[str]:
        return reload_local(self.server)
