"""The pooled CSPRNG bytes used for nonces and cancel keys."""

from __future__ import annotations

import os

from multigres.wire import randpool


def test_lengths_and_no_repeats() -> None:
    seen = {randpool.random_bytes(16) for _ in range(1000)}
    assert len(seen) == 1000
    assert all(len(b) == 16 for b in seen)
    assert len(randpool.random_bytes(10_000)) == 10_000
    assert all(0 <= randpool.random_bits(31) < 2**31 for _ in range(1000))
    assert len({randpool.random_bits(31) for _ in range(1000)}) > 990


def test_a_forked_child_does_not_reuse_the_parents_bytes() -> None:
    randpool.random_bytes(8)  # the pool is filled
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next bytes
        os.write(w, randpool.random_bytes(32))
        os._exit(0)
    os.close(w)
    child = os.read(r, 32)
    os.close(r)
    os.waitpid(pid, 0)
    assert len(child) == 32
    assert child != randpool.random_bytes(32)
