"""Process helpers shared by the CLI, the services and the test harness."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Coroutine
from typing import Any


def pid_alive(pid: int) -> bool:
    """True when a process with this pid exists (and is not a zombie we could reap)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False  # it was our child and has just been reaped
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def terminate(pid: int, timeout: float = 10.0) -> bool:
    """SIGTERM ``pid``, then SIGKILL if still alive after ``timeout``. True if it was alive."""
    if not pid_alive(pid):
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.02)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + 5
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    return True


def stop_on_signals() -> asyncio.Future[None]:
    """A future of the running loop that SIGINT or SIGTERM completes (a server's stop)."""
    loop = asyncio.get_running_loop()
    stop: asyncio.Future[None] = loop.create_future()

    def on_signal() -> None:
        if not stop.done():
            stop.set_result(None)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    return stop


def run_server(main: Coroutine[Any, Any, None], prog: str,
               user_errors: tuple[type[BaseException], ...]) -> int:
    """Run a server's main coroutine on uvloop: 0 when it stops, 1 (and one line naming
    ``prog``) on an error the user can fix (a taken port, a wrong setting)."""
    import gc

    import uvloop

    # What the imports and the setup made lives as long as the process: out of the cyclic
    # collector's sight, so that its full collections (which new connections' objects
    # trigger now and then) do not walk it each time.
    gc.freeze()
    try:
        uvloop.run(main)
    except user_errors as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0
