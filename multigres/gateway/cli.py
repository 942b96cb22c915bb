"""``multigateway``: run the gateway.

The client socket is bound first, so that a taken port is one line naming it and exit code 1,
never a traceback. SIGTERM/SIGINT stop it.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from multigres.gateway.config import ConfigError, GatewayConfig, load

log = logging.getLogger("multigres.gateway")

_USER_ERRORS = (ConfigError, OSError, ValueError)


async def serve(config: GatewayConfig) -> None:
    from multigres.gateway.server import GatewayServer

    server = GatewayServer(config)
    server.bind()
    loop = asyncio.get_running_loop()
    stop = loop.create_future()

    def on_signal() -> None:
        if not stop.done():
            stop.set_result(None)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    try:
        await server.start()
        await stop
    finally:
        await server.close()


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        config = load(sys.argv[1:] if argv is None else argv)
    except _USER_ERRORS as e:
        print(f"multigateway: error: {e}", file=sys.stderr)
        return 1
    try:
        import uvloop

        uvloop.run(serve(config))
    except _USER_ERRORS as e:
        print(f"multigateway: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
