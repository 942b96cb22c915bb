"""``--workers N``: N processes serving one port, and the parent that supervises them.

- The parent binds N listening sockets to the port with SO_REUSEPORT (so the kernel spreads
  new connections over the workers, each with its own accept queue), then forks; worker i
  keeps socket i. A worker that dies takes its socket with it and the kernel stops sending it
  connections.
- Each worker has a socketpair to the parent carrying length-prefixed JSON messages: cancel
  requests to forward, and the operations the console, /metrics and gRPC need on every
  worker (snapshot, pause, resume, reload). A CancelRequest that lands on the wrong worker is
  routed by the worker number in its key's top bits (server.worker_of_key): worker -> parent
  -> worker, no lookup.
- The parent runs the control plane (health, /metrics, gRPC, topology) and no client traffic.
  Workers die with the parent (PR_SET_PDEATHSIG, and EOF on their channel); SIGTERM or
  SIGINT to the parent stops them all in order.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import logging
import os
import signal
import socket
import struct
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from multigres.pooler import config as config_mod
from multigres.pooler.config import PoolerConfig
from multigres.pooler.control import (
    ControlError,
    check_pause,
    check_resume,
    pause_local,
    reload_local,
    resume_local,
)
from multigres.pooler.controlplane import ControlPlane, Sockets
from multigres.pooler.server import PoolerServer
from multigres.pooler.stats import process_snapshot

log = logging.getLogger("multigres.pooler")

PR_SET_PDEATHSIG = 1
STOP_TIMEOUT = 10.0
_LEN = struct.Struct("!I")

Handler = Callable[[dict[str, Any]], Awaitable[Any]]


class ChannelClosed(Exception):
    pass


class Channel:
    """Messages both ways over one stream socket: calls (with an ``id``, answered by a message
    with ``re``) and one-way messages; requests are served by ``handler``, each as a task."""

    def __init__(self, sock: socket.socket, handler: Handler,
                 on_close: Callable[[], None] | None = None) -> None:
        self.sock = sock
        self.handler = handler
        self.on_close = on_close
        self.closed = False
        self._writer: asyncio.StreamWriter | None = None
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._next = 0
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        reader, self._writer = await asyncio.open_unix_connection(sock=self.sock)
        self._spawn(self._read(reader))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _write(self, msg: dict[str, Any]) -> None:
        if self.closed or self._writer is None:
            raise ChannelClosed("the channel is closed")
        data = json.dumps(msg, separators=(",", ":")).encode()
        self._writer.write(_LEN.pack(len(data)) + data)

    def send(self, op: str, **args: Any) -> None:
        """A one-way message (a forwarded cancel)."""
        try:
            self._write({"op": op, **args})
        except ChannelClosed:
            pass

    async def call(self, op: str, **args: Any) -> Any:
        self._next += 1
        call_id = self._next
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[call_id] = fut
        try:
            self._write({"op": op, "id": call_id, **args})
            return await fut
        finally:
            self._pending.pop(call_id, None)

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                head = await reader.readexactly(_LEN.size)
                msg = json.loads(await reader.readexactly(_LEN.unpack(head)[0]))
                if "re" in msg:
                    fut = self._pending.get(msg["re"])
                    if fut is not None and not fut.done():
                        if "error" in msg:
                            fut.set_exception(ControlError(msg.get("sqlstate", "XX000"),
                                                           msg["error"], msg.get("hint")))
                        else:
                            fut.set_result(msg.get("result"))
                else:
                    self._spawn(self._serve(msg))
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            self.close()

    async def _serve(self, msg: dict[str, Any]) -> None:
        reply: dict[str, Any]
        try:
            reply = {"result": await self.handler(msg)}
        except ControlError as e:
            reply = {"error": e.message, "sqlstate": e.sqlstate, "hint": e.hint}
        except Exception as e:
            log.exception("worker channel: %s failed", msg.get("op"))
            reply = {"error": f"{msg.get('op')} failed: {e}", "sqlstate": "XX000"}
        if "id" in msg:
            try:
                self._write({"re": msg["id"], **reply})
            except ChannelClosed:
                pass

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(ControlError("08006", "a pooler worker is gone"))
        if self._writer is not None:
            self._writer.close()
        if self.on_close is not None:
            self.on_close()


# -- the worker side -------------------------------------------------------------------------


class WorkerSide:
    """In a worker: the link to the siblings (cancel forwarding) and the Control that the
    admin console uses, which acts on every worker through the parent."""

    def __init__(self, server: PoolerServer, sock: socket.socket) -> None:
        self.server = server
        self.channel = Channel(sock, self._handle, on_close=self._parent_gone)
        self.gone = asyncio.get_running_loop().create_future()

    def _parent_gone(self) -> None:
        if not self.gone.done():
            self.gone.set_result(None)

    def forward_cancel(self, worker: int, pid: int, key: int) -> None:
        self.channel.send("cancel", worker=worker, pid=pid, key=key)

    async def _handle(self, msg: dict[str, Any]) -> Any:
        op = msg["op"]
        server = self.server
        if op == "cancel":
            server.cancel_local(int(msg["pid"]), int(msg["key"]))
            return None
        if op == "snapshot":
            return process_snapshot(server, bool(msg.get("detail")))
        if op == "pause":
            return await pause_local(server)
        if op == "resume":
            return resume_local(server)
        if op == "reload":
            return reload_local(server)
        raise ControlError("XX000", f"unknown worker operation {op!r}")

    # Control: the console of one worker acts on all of them.

    async def snapshots(self, detail: bool = False) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self.channel.call("all", cmd="snapshot",
                                                               detail=detail)
        return result

    async def pause(self) -> None:
        check_pause(await self.channel.call("all", cmd="pause"))

    async def resume(self) -> None:
        check_resume(await self.channel.call("all", cmd="resume"))

    async def reload(self) -> list[str]:
        results: list[list[str]] = await self.channel.call("all", cmd="reload")
        return results[0] if results else []


async def worker_main(config: PoolerConfig, worker: int, workers: int, listen: socket.socket,
                      chan: socket.socket, parent: int) -> None:
    server = PoolerServer(config, worker=worker, workers=workers)
    server.main_pid = parent
    side = WorkerSide(server, chan)
    server.link = side
    server.control = side
    await side.channel.start()
    await server.start(sock=listen)
    loop = asyncio.get_running_loop()
    stop = loop.create_future()

    def on_signal() -> None:
        if not stop.done():
            stop.set_result(None)

    loop.add_signal_handler(signal.SIGTERM, on_signal)
    try:
        await asyncio.wait([stop, side.gone], return_when=asyncio.FIRST_COMPLETED)
    finally:
        await server.close()
        side.channel.close()


def _child(config: PoolerConfig, worker: int, sockets: Sockets, chans: list[socket.socket],
           parent_ends: list[socket.socket], parent: int) -> None:
    """Runs in the forked worker; never returns."""
    code = 0
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl
            os._exit(0)
        # Ctrl-C reaches the whole process group: the parent decides how to stop.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for i, s in enumerate(sockets.listen):
            if i != worker:
                s.close()
        if sockets.http is not None:
            sockets.http.close()
        for s in parent_ends:
            s.close()
        for i, c in enumerate(chans):
            if i != worker:
                c.close()
        fmt = f"%(asctime)s %(levelname)s [worker {worker}] %(message)s"
        for h in logging.getLogger().handlers:
            h.setFormatter(logging.Formatter(fmt))
        import uvloop

        uvloop.run(worker_main(config, worker, len(sockets.listen), sockets.listen[worker],
                               chans[worker], parent))
    except KeyboardInterrupt:
        pass
    except BaseException:
        log.exception("worker %d failed", worker)
        code = 1
    finally:
        logging.shutdown()
        os._exit(code)


# -- the parent ------------------------------------------------------------------------------


class Supervisor:
    """The parent of the workers; the Control that /metrics and gRPC use."""

    def __init__(self, config: PoolerConfig, sockets: Sockets) -> None:
        self.config = config
        self.sockets = sockets
        self.pids: dict[int, int] = {}  # worker -> pid
        self.ends: dict[int, socket.socket] = {}
        self.channels: dict[int, Channel] = {}
        self.paused = False
        self.stopping = False
        self.exited: dict[int, int] = {}  # worker -> wait status
        self._all_exited = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def n(self) -> int:
        return len(self.sockets.listen)

    def fork(self) -> None:
        parent = os.getpid()
        pairs = [socket.socketpair() for _ in range(self.n)]
        parent_ends = [a for a, _ in pairs]
        child_ends = [b for _, b in pairs]
        sys.stdout.flush()
        sys.stderr.flush()
        for i in range(self.n):
            pid = os.fork()
            if pid == 0:
                _child(self.config, i, self.sockets, child_ends, parent_ends, parent)
            self.pids[i] = pid
        for i, (a, b) in enumerate(pairs):
            b.close()
            self.ends[i] = a
        # The workers own the client sockets now; the parent serves no clients.
        for s in self.sockets.listen:
            s.close()

    # Control, over all live workers.

    def _live(self) -> list[Channel]:
        return [c for _, c in sorted(self.channels.items()) if not c.closed]

    async def _all(self, op: str, **args: Any) -> list[Any]:
        results = await asyncio.gather(*(c.call(op, **args) for c in self._live()),
                                       return_exceptions=True)
        out = []
        for r in results:
            if isinstance(r, ControlError):
                if r.sqlstate == "08006":  # a worker died meanwhile: the others answered
                    continue
                raise r
            if isinstance(r, BaseException):
                raise r
            out.append(r)
        return out

    async def snapshots(self, detail: bool = False) -> list[dict[str, Any]]:
        return await self._all("snapshot", detail=detail)

    async def pause(self) -> None:
        check_pause(await self._pause_all())

    async def _pause_all(self) -> list[Any]:
        self.paused = True
        return await self._all("pause")

    async def resume(self) -> None:
        check_resume(await self._resume_all())

    async def _resume_all(self) -> list[Any]:
        self.paused = False
        return await self._all("resume")

    async def reload(self) -> list[str]:
        results = await self._reload_all()
        return results[0] if results else []

    async def _reload_all(self) -> list[Any]:
        try:
            config_mod.reload(self.config)
        except config_mod.ConfigError as e:
            raise ControlError("F0000", f"RELOAD failed, the configuration is unchanged: {e}"
                               ) from e
        return await self._all("reload")

    async def _handle(self, worker: int, msg: dict[str, Any]) -> Any:
        op = msg["op"]
        if op == "cancel":
            target = self.channels.get(int(msg["worker"]))
            if target is not None:
                target.send("cancel", pid=msg["pid"], key=msg["key"])
            return None
        if op == "all":
            cmd = msg["cmd"]
            if cmd == "snapshot":
                return await self.snapshots(bool(msg.get("detail")))
            if cmd == "pause":
                return await self._pause_all()
            if cmd == "resume":
                return await self._resume_all()
            if cmd == "reload":
                return await self._reload_all()
        raise ControlError("XX000", f"unknown supervisor operation {op!r}")

    # Running.

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        for i, sock in self.ends.items():
            ch = Channel(sock, self._handler(i))
            self.channels[i] = ch
            await ch.start()
        exited = self.exited

        def on_exit(i: int, fd: int) -> None:
            loop.remove_reader(fd)
            os.close(fd)
            _, status = os.waitpid(self.pids[i], 0)
            exited[i] = status
            if not self.stopping:
                log.error("worker %d (pid %d) exited unexpectedly (%s); %d of %d left",
                          i, self.pids[i], _describe_status(status),
                          self.n - len(exited), self.n)
            if len(exited) == self.n:
                self._all_exited.set()
                if not done.done():
                    done.set_result(1 if not self.stopping else 0)

        for i, pid in self.pids.items():
            fd = os.pidfd_open(pid)
            loop.add_reader(fd, on_exit, i, fd)

        def on_signal(sig: int) -> None:
            if sig == signal.SIGHUP:
                task = loop.create_task(self._sighup())
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            elif not done.done():
                done.set_result(0)

        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(sig, on_signal, sig)
        plane = ControlPlane(self.config, self, self.sockets.http, lambda: self.paused)
        try:
            await plane.start()
        except OSError as e:
            print(f"multipooler: error: {e}", file=sys.stderr)
            await self._stop_workers()
            return 1
        log.info("listening on %s:%d with %d workers, Postgres at %s:%d",
                 self.config.listen_host, self.config.listen_port, self.n,
                 self.config.pg_host, self.config.pg_port)
        code: int = await done
        self.stopping = True
        await plane.stop()
        await self._stop_workers()
        return code

    def _handler(self, worker: int) -> Handler:
        async def handle(msg: dict[str, Any]) -> Any:
            return await self._handle(worker, msg)

        return handle

    async def _sighup(self) -> None:
        try:
            for n in await self.reload():
                log.info("reload: %s", n)
        except ControlError as e:
            log.error("%s", e.message)

    async def _stop_workers(self) -> None:
        self.stopping = True
        self._signal_workers(signal.SIGTERM)
        try:
            async with asyncio.timeout(STOP_TIMEOUT):
                await self._all_exited.wait()
        except TimeoutError:
            log.warning("workers did not stop within %g s: killing them", STOP_TIMEOUT)
            self._signal_workers(signal.SIGKILL)
            try:
                async with asyncio.timeout(5):
                    await self._all_exited.wait()
            except TimeoutError:
                pass
        for ch in self.channels.values():
            ch.close()

    def _signal_workers(self, sig: int) -> None:
        for i, pid in self.pids.items():
            if i not in self.exited:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass


def _describe_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit code {os.waitstatus_to_exitcode(status)}"


def run_workers(config: PoolerConfig, sockets: Sockets) -> int:
    """Fork the workers and supervise them until a signal; the process's exit code."""
    sup = Supervisor(config, sockets)
    sup.fork()
    import uvloop

    return uvloop.run(sup.run())
