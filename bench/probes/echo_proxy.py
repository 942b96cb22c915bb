# A floor probe: the cheapest possible uvloop proxy (no parsing, one server connection per
# client). Measures the event loop + syscall cost per transaction that any Python proxy pays.
# Usage: python bench/probes/echo_proxy.py LISTEN_PORT  (Postgres at 127.0.0.1:35432 in PG)
import asyncio, sys, uvloop
PG = ("127.0.0.1", 35432)
class Server(asyncio.Protocol):
    def __init__(self, client): self.client = client; self.t = None
    def connection_made(self, t): self.t = t
    def data_received(self, d): self.client.t.write(d)
    def connection_lost(self, e): self.client.t.close()
class Client(asyncio.Protocol):
    def connection_made(self, t):
        self.t = t; self.buf = []; self.server = None
        asyncio.ensure_future(self.connect())
    async def connect(self):
        loop = asyncio.get_running_loop()
        _, self.server = await loop.create_connection(lambda: Server(self), *PG)
        for d in self.buf: self.server.t.write(d)
    def data_received(self, d):
        if self.server is None: self.buf.append(d)
        else: self.server.t.write(d)
    def connection_lost(self, e):
        if self.server: self.server.t.close()
async def main():
    loop = asyncio.get_running_loop()
    srv = await loop.create_server(Client, "127.0.0.1", int(sys.argv[1]))
    await asyncio.sleep(3600)
uvloop.run(main())
