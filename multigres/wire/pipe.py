"""Two protocols joined in memory, each the other's transport (local mode). The transport is
compiled (pyx/pipe.pyx) so that a statement crosses from the gateway to the pooler as C
calls; see there for the delivery rules."""

from multigres._cy.pipe import PipeTransport, pipe

__all__ = ["PipeTransport", "pipe"]
