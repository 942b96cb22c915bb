"""Errors raised by pgctld. Each message says what went wrong and what to do about it."""

from __future__ import annotations


class PgctldError(Exception):
    """A Postgres lifecycle operation failed."""


class MissingBinaries(PgctldError):
    """The Postgres server binaries are not installed where we look for them."""


class PortInUse(PgctldError):
    """The port an instance should listen on is taken by another process."""


class DataDirConflict(PgctldError):
    """The data directory is not empty, or belongs to another instance."""


class NotRunning(PgctldError):
    """The operation needs a running server."""


class CommandFailed(PgctldError):
    """A Postgres tool (initdb, pg_ctl, pg_basebackup, pg_rewind) exited non-zero."""
