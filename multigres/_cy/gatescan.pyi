"""Type stub for multigres._cy.gatescan (pyx/gatescan.pyx)."""

from collections.abc import Hashable
from typing import Any

def scan_client(data: bytes, plans: Any = None, extra: Hashable = None) -> int: ...
def scan_server(data: bytes) -> int: ...
