# A floor probe like echo_proxy.py, with loop.add_reader + socket.recv/send instead of
# Protocol/transport callbacks.  Usage: python bench/probes/reader_proxy.py LISTEN_PORT PG_PORT
from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import Callable

import uvloop


def _pipe(
    loop: asyncio.AbstractEventLoop, src: socket.socket, dst: socket.socket
) -> Callable[[], None]:
    def on_readable() -> None:
        try:
            data = src.recv(65536)
        except BlockingIOError:
            return
        if not data:
            loop.remove_reader(src.fileno())
            loop.remove_reader(dst.fileno())
            src.close()
            dst.close()
            return
        dst.send(data)

    return on_readable


async def handle(loop: asyncio.AbstractEventLoop, csock: socket.socket, pg_port: int) -> None:
    ssock = socket.socket()
    ssock.setblocking(False)
    await loop.sock_connect(ssock, ("127.0.0.1", pg_port))
    for s in (csock, ssock):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    loop.add_reader(csock.fileno(), _pipe(loop, csock, ssock))
    loop.add_reader(ssock.fileno(), _pipe(loop, ssock, csock))


async def main(port: int, pg_port: int) -> None:
    loop = asyncio.get_running_loop()
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port))
    ls.listen(100)
    ls.setblocking(False)
    tasks = set()
    while True:
        c, _ = await loop.sock_accept(ls)
        c.setblocking(False)
        t = asyncio.ensure_future(handle(loop, c, pg_port))
        tasks.add(t)
        t.add_done_callback(tasks.discard)


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1]), int(sys.argv[2])))
