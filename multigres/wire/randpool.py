"""Random bytes for per-connection secrets (SCRAM nonces, cancel keys), from the OS's CSPRNG
read 4 KiB at a time: one getrandom() syscall per hundred logins instead of two per login.

A forked child starts with an empty pool (os.register_at_fork), so processes never share
bytes.
"""

from __future__ import annotations

import os

_CHUNK = 4096
_pool = b""
_pos = 0


def random_bytes(n: int) -> bytes:
    """``n`` bytes from the OS's CSPRNG (like ``secrets.token_bytes(n)``)."""
    global _pool, _pos
    if n > _CHUNK:
        return os.urandom(n)
    if _pos + n > len(_pool):
        _pool = os.urandom(_CHUNK)
        _pos = 0
    out = _pool[_pos:_pos + n]
    _pos += n
    return out


def random_bits(k: int) -> int:
    """A random non-negative int of ``k`` bits (like ``secrets.randbits(k)``)."""
    n = (k + 7) // 8
    return int.from_bytes(random_bytes(n), "big") >> (n * 8 - k)


def _reset() -> None:
    global _pool, _pos
    _pool = b""
    _pos = 0


os.register_at_fork(after_in_child=_reset)
