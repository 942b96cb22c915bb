"""The error every cluster operation raises."""

from __future__ import annotations


class ClusterError(Exception):
    """A cluster operation failed; the message says why."""
