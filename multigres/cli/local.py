"""``multigres local``: the gateway and poolers in one process (local mode, like Vitess's
vtcombo).

    multigres local --pooler "--listen 127.0.0.1:16000 --pg-port 25432 ... --topo ..." \\
                    --gateway "--listen 127.0.0.1:15432 --topo ..."

Each ``--pooler`` is a multipooler's command line, ``--gateway`` multigateway's. Every pooler
keeps its own listener, metrics, gRPC and topology registration (other gateways and tools see
nothing different); the gateway of this process reaches them without a network hop: a
session's connection to a local pooler is an in-memory pipe (``multigres.wire.pipe``), so a
statement costs the syscalls of one proxy, not two.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys

from multigres.gateway import config as gateway_config
from multigres.pooler import config as pooler_config
from multigres.procutil import run_server, stop_on_signals

log = logging.getLogger("multigres.local")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="multigres local",
                                description="the gateway and its poolers in one process")
    p.add_argument("--pooler", action="append", default=[], metavar="ARGS",
                   help="one pooler's multipooler flags (quoted); repeat for each")
    p.add_argument("--gateway", required=True, metavar="ARGS",
                   help="the gateway's multigateway flags (quoted)")
    return p


async def serve(poolers: list[pooler_config.PoolerConfig],
                gateway: gateway_config.GatewayConfig) -> None:
    from multigres.gateway.server import GatewayServer
    from multigres.pooler.controlplane import ControlPlane, bind_sockets
    from multigres.pooler.server import PoolerServer

    gw = GatewayServer(gateway)
    gw.bind()
    bound = [(cfg, bind_sockets(cfg)) for cfg in poolers]
    servers: list[PoolerServer] = []
    planes: list[ControlPlane] = []
    stop = stop_on_signals()
    try:
        for cfg, sockets in bound:
            server = PoolerServer(cfg)
            await server.start(sock=sockets.listen[0])
            servers.append(server)
            plane = ControlPlane(cfg, server.control, sockets.http,
                                 lambda s=server: s.paused)  # type: ignore[misc]
            await plane.start()
            planes.append(plane)
            gw.local_poolers[plane.pooler_id] = server.local_client
            log.info("pooler %s listening on %s:%d, Postgres at %s:%d (local)",
                     plane.pooler_id, cfg.listen_host, server.port, cfg.pg_host, cfg.pg_port)
        await gw.start()
        await stop
    finally:
        await gw.close()
        for plane in planes:
            await plane.stop()
        for server in servers:
            await server.close()


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        poolers = [pooler_config.load(shlex.split(a)) for a in args.pooler]
        gateway = gateway_config.load(shlex.split(args.gateway))
    except (pooler_config.ConfigError, gateway_config.ConfigError, ValueError) as e:
        print(f"multigres local: error: {e}", file=sys.stderr)
        return 1
    if any(cfg.workers > 1 for cfg in poolers):
        print("multigres local: error: --workers is not available in local mode",
              file=sys.stderr)
        return 1
    return run_server(serve(poolers, gateway), "multigres local", (OSError,))


if __name__ == "__main__":
    sys.exit(main())
