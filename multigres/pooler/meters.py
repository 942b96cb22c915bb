"""The pooler's counters and histograms: plain ints and lists, cheap on the hot path.

The data path only ever does ``x += 1`` or ``Histogram.observe`` (a bisect and two adds);
everything else (Prometheus families, SHOW STATS rows, gRPC status) is computed from these at
read time, in ``stats.py`` and ``metrics.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from multigres._cy.poolcore import Histogram

# Seconds: from a fast transaction on loopback (~100 us) to a minute.
LATENCY_BOUNDS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0, 30.0, 60.0,
)


def _latency_histogram() -> Histogram:
    return Histogram(LATENCY_BOUNDS)


@dataclass
class Meters:
    """Process-wide meters, at ``PoolerServer.meters``.

    Fed by the data path (client.py, backend.py, pool.py) through the ``observe_*`` and
    ``count_*`` methods; each is one call at an event that already costs a syscall.
    """

    tx_latency: Histogram = field(default_factory=_latency_histogram)
    query_latency: Histogram = field(default_factory=_latency_histogram)
    pool_wait: Histogram = field(default_factory=_latency_histogram)
    # SQLSTATE class (first two characters) -> errors sent to clients.
    errors: dict[str, int] = field(default_factory=dict)
    cancels_forwarded: int = 0

    def observe_transaction(self, seconds: float) -> None:
        self.tx_latency.observe(seconds)

    def observe_query(self, seconds: float) -> None:
        self.query_latency.observe(seconds)

    def observe_wait(self, seconds: float) -> None:
        self.pool_wait.observe(seconds)

    def count_error(self, sqlstate: str) -> None:
        cls = sqlstate[:2]
        self.errors[cls] = self.errors.get(cls, 0) + 1

    def histograms(self) -> dict[str, dict[str, Any]]:
        return {
            "tx_latency": self.tx_latency.to_dict(),
            "query_latency": self.query_latency.to_dict(),
            "pool_wait": self.pool_wait.to_dict(),
        }


@dataclass
class PoolTotals:
    """What the clients and server connections of one (user, database) did, summed over
    those that are gone (the live ones are added at read time)."""

    queries: int = 0
    transactions: int = 0
    received: int = 0  # bytes from clients
    sent: int = 0  # bytes to clients (what the servers sent)
    xact_time: float = 0.0
    query_time: float = 0.0

    def add(self, other: PoolTotals) -> None:
        self.queries += other.queries
        self.transactions += other.transactions
        self.received += other.received
        self.sent += other.sent
        self.xact_time += other.xact_time
        self.query_time += other.query_time

    def to_dict(self) -> dict[str, Any]:
        return {
            "queries": self.queries, "transactions": self.transactions,
            "received": self.received, "sent": self.sent,
            "xact_time": self.xact_time, "query_time": self.query_time,
        }
