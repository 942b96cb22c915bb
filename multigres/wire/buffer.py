"""The Postgres wire-protocol buffers for Python code (compiled module: multigres._cy.buffer).

``ReadBuffer`` frames incoming messages in place over the received chunks and reads their
fields with bounds checks; ``WriteBuffer`` builds outgoing messages in one buffer, sent with one
``transport.write``. A peer that breaks the framing raises ``ProtocolError`` (SQLSTATE 08P01).
Cython code cimports the same classes from ``multigres._cy.buffer`` to use their C fast paths.
"""

from __future__ import annotations

from multigres._cy.buffer import (
    DEFAULT_MAX_MESSAGE_SIZE,
    MAX_STARTUP_MESSAGE_SIZE,
    MIN_STARTUP_MESSAGE_SIZE,
    ProtocolError,
    ReadBuffer,
    WriteBuffer,
    build_message,
    build_startup_message,
)

__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE",
    "MAX_STARTUP_MESSAGE_SIZE",
    "MIN_STARTUP_MESSAGE_SIZE",
    "ProtocolError",
    "ReadBuffer",
    "WriteBuffer",
    "build_message",
    "build_startup_message",
]
