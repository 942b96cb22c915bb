"""``multigateway``: run the gateway.

The client socket is bound first, so that a taken port is one line naming it and exit code 1,
never a traceback. SIGTERM/SIGINT stop it.
"""

from __future__ import annotations

import logging
import sys

from multigres.gateway.config import ConfigError, GatewayConfig, load
from multigres.procutil import run_server, stop_on_signals

log = logging.getLogger("multigres.gateway")

_USER_ERRORS = (ConfigError, OSError, ValueError)


async def serve(config: GatewayConfig) -> None:
    from multigres.gateway.server import GatewayServer

    server = GatewayServer(config)
    server.bind()
    stop = stop_on_signals()
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
    return run_server(serve(config), "multigateway", _USER_ERRORS)


if __name__ == "__main__":
    sys.exit(main())
