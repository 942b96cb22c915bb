"""``multipooler``: run the pooler."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from multigres.pooler.config import ConfigError, PoolerConfig, load
from multigres.pooler.server import PoolerServer
from multigres.wire.userlist import UserlistError


async def serve(config: PoolerConfig) -> None:
    server = PoolerServer(config)
    await server.start()
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    def on_signal() -> None:
        if not stop.done():
            stop.set_result(None)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    logging.getLogger("multigres.pooler").info(
        "listening on %s:%d, Postgres at %s:%d", config.listen_host, server.port,
        config.pg_host, config.pg_port)
    try:
        await stop
    finally:
        await server.close()


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        config = load(argv)
        import uvloop

        uvloop.run(serve(config))
    except (ConfigError, UserlistError, OSError, ValueError) as e:
        print(f"multipooler: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
