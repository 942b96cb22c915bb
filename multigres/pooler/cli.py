"""``multipooler``: run the pooler.

Every socket is bound first, so that a taken port (clients, --http-port, --grpc-port) is one
line naming it and exit code 1, never a traceback. Then either one process serves (the data
path and the control plane on one event loop), or ``--workers N`` forks N workers and the
parent runs the control plane (workers.py).

Signals: SIGTERM/SIGINT stop (serving state not_serving first, then connections close);
SIGHUP reloads the config file and userlist like the console's RELOAD.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from typing import Any

from multigres.pooler.config import ConfigError, PoolerConfig, load
from multigres.pooler.control import ControlError
from multigres.pooler.controlplane import ControlPlane, Sockets, bind_sockets
from multigres.procutil import run_server
from multigres.wire.userlist import UserlistError, load_userlist

log = logging.getLogger("multigres.pooler")

_USER_ERRORS = (ConfigError, UserlistError, OSError, ValueError)


async def serve(config: PoolerConfig, sockets: Sockets | None = None) -> None:
    """One process: the pooler and its control plane, until SIGTERM or SIGINT."""
    from multigres.pooler.server import PoolerServer

    if sockets is None:
        sockets = bind_sockets(config)
    server = PoolerServer(config)
    await server.start(sock=sockets.listen[0])
    plane = ControlPlane(config, server.control, sockets.http, lambda: server.paused)
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    tasks: set[asyncio.Task[Any]] = set()

    async def reload() -> None:
        try:
            await server.control.reload()
        except ControlError as e:
            log.error("%s", e.message)

    def on_signal(sig: int) -> None:
        if sig == signal.SIGHUP:
            task = loop.create_task(reload())
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        elif not stop.done():
            stop.set_result(None)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        await plane.start()
        log.info("listening on %s:%d, Postgres at %s:%d", config.listen_host, server.port,
                 config.pg_host, config.pg_port)
        await stop
    finally:
        await plane.stop()
        await server.close()


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        config = load(argv)
        if config.userlist is not None:
            load_userlist(config.userlist)  # a bad file is reported now, not at first login
        sockets = bind_sockets(config)
    except _USER_ERRORS as e:
        print(f"multipooler: error: {e}", file=sys.stderr)
        return 1
    if config.workers > 1:
        from multigres.pooler.workers import run_workers

        return run_workers(config, sockets)
    return run_server(serve(config, sockets), "multipooler", _USER_ERRORS)


if __name__ == "__main__":
    sys.exit(main())
