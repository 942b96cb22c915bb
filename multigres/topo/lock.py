"""What a topology lock says about its holder, and the handle the holder gets."""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import asdict, dataclass

from multigres.topo.errors import LockLost


@dataclass(frozen=True, slots=True)
class LockHolder:
    """Stored as the lock's value so that a waiter that times out can say who is in the way."""

    hostname: str
    pid: int
    purpose: str
    acquired_at: float  # unix time the holder asked for the lock

    @classmethod
    def here(cls, purpose: str) -> LockHolder:
        return cls(socket.gethostname(), os.getpid(), purpose, time.time())

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> LockHolder | None:
        """None for a value we cannot read (another client's format): the waiter then
        reports "holder unknown" instead of failing."""
        try:
            d = json.loads(data)
            return cls(
                str(d["hostname"]), int(d["pid"]), str(d["purpose"]), float(d["acquired_at"])
            )
        except (ValueError, KeyError, TypeError):
            return None

    def __str__(self) -> str:
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.acquired_at))
        age = max(0.0, time.time() - self.acquired_at)
        return (
            f"pid {self.pid} on host {self.hostname} for {self.purpose!r} "
            f"(since {since}, {age:.1f}s ago)"
        )


class LockHandle:
    """Given to the holder inside ``async with conn.lock(...)``.

    A lock can be lost while held (in etcd: the lease expired because keepalives failed for
    longer than its ttl). Long operations call :meth:`check` before each step that must
    happen under the lock.
    """

    def __init__(self, path: str, holder: LockHolder) -> None:
        self.path = path
        self.holder = holder
        self._lost_reason: str | None = None

    @property
    def lost(self) -> bool:
        return self._lost_reason is not None

    def check(self) -> None:
        """Raise LockLost if the lock is no longer held."""
        if self._lost_reason is not None:
            raise LockLost(self.path, self._lost_reason)

    def _lose(self, reason: str) -> None:
        if self._lost_reason is None:
            self._lost_reason = reason
