"""Type stub for multigres._cy.pipe (pyx/pipe.pyx): two protocols joined in memory."""

import asyncio
from typing import Any

class PipeTransport(asyncio.Transport):
    peer: PipeTransport | None
    extra: dict[str, Any] | None
    def __init__(self, loop: asyncio.AbstractEventLoop, protocol: Any, name: str) -> None: ...

def pipe(a: Any, b: Any) -> tuple[PipeTransport, PipeTransport]: ...
