# A floor probe like echo_proxy.py, with loop.add_reader + socket.recv/send instead of
# Protocol/transport callbacks.  Usage: python bench/probes/reader_proxy.py LISTEN_PORT
import asyncio, sys, uvloop, socket
PG = ("127.0.0.1", 35432)
async def handle(loop, csock):
    ssock = socket.socket(); ssock.setblocking(False)
    await loop.sock_connect(ssock, PG)
    for s in (csock, ssock): s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    def pipe(src, dst):
        def cb():
            try:
                d = src.recv(65536)
            except BlockingIOError:
                return
            if not d:
                loop.remove_reader(src.fileno()); loop.remove_reader(dst.fileno()); src.close(); dst.close(); return
            dst.send(d)
        return cb
    loop.add_reader(csock.fileno(), pipe(csock, ssock))
    loop.add_reader(ssock.fileno(), pipe(ssock, csock))
async def main():
    loop = asyncio.get_running_loop()
    ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); ls.bind(("127.0.0.1", int(sys.argv[1]))); ls.listen(100); ls.setblocking(False)
    while True:
        c, _ = await loop.sock_accept(ls); c.setblocking(False)
        asyncio.ensure_future(handle(loop, c))
uvloop.run(main())
