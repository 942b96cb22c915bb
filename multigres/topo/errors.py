"""Errors of the topology layer.

Every backend raises these and only these (plus ``ValueError`` for malformed paths and names),
so that callers handle "someone else changed it" (BadVersion) or "etcd is down"
(TopoUnavailable) the same way whatever the backend.
"""

from __future__ import annotations


class TopoError(Exception):
    """Base class of all topology errors. ``path`` names the node concerned, if any."""

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(message)
        self.path = path


class NoNode(TopoError):
    """The node does not exist."""

    def __init__(self, path: str) -> None:
        super().__init__(f"topology node {path} does not exist", path)


class NodeExists(TopoError):
    """A create found the node already there."""

    def __init__(self, path: str) -> None:
        super().__init__(f"topology node {path} already exists", path)


class BadVersion(TopoError):
    """A compare-and-set found another version: someone else changed the node since it was
    read. Read it again, reapply the change, and retry."""

    def __init__(self, path: str, expected: int, actual: int | None = None) -> None:
        found = "" if actual is None else f", found version {actual}"
        super().__init__(
            f"topology node {path} changed concurrently (expected version {expected}{found})",
            path,
        )
        self.expected = expected
        self.actual = actual


class LockTimeout(TopoError):
    """The lock was not acquired in time. ``holder`` says who holds it (None if unknown)."""

    def __init__(self, path: str, timeout: float, holder: object | None) -> None:
        who = f"held by {holder}" if holder is not None else "holder unknown"
        super().__init__(
            f"timed out after {timeout:g}s waiting for the lock on {path}: {who}", path
        )
        self.timeout = timeout
        self.holder = holder


class LockLost(TopoError):
    """A held lock is gone: its lease expired (keepalives failed) or it was deleted."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"lost the lock on {path}: {reason}", path)


class TopoUnavailable(TopoError):
    """The topology server cannot be reached (or did not answer in time)."""
