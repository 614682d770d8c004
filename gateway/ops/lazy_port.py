"""A local HTTP port that listens from the start and loads its server at the first connection.

The bench page and ``/metrics`` are served by aiohttp, which with its companions
(multidict, yarl, frozenlist, aiosignal, propcache, aiohappyeyeballs and their
compiled parts) is about 10 MiB of the daemon's resident memory: a sixth of a
gateway with one Modbus module. Most boxes run for months with nobody opening
either (issue 14: peak memory <= 60 MiB without cameras).

:class:`LazyPort` binds and listens on the configured address when the daemon
starts, exactly where aiohttp would have, so a technician or a scraper sees the
same port from the start and the same answers. The kernel queues the first
connection while the module serving the port (``load``) is imported in a
worker thread (the event loop, and so the alarm path, keeps running meanwhile);
the aiohttp application is then built and served on the same sockets, and the
queued connection is answered, about a tenth of a second later than it would
otherwise have been. From then on aiohttp stays loaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import socket
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported at the first connection: see LazyPort.serve()
    from aiohttp import web

_BACKLOG = 128  # aiohttp's (and asyncio's) default


class LazyPort:
    """TCP sockets bound and listening on ``host``/``port`` for the life of the block.

    ``async with LazyPort(host, port) as port:`` binds (port 0 takes a free port;
    a host name binds every address it resolves to, as aiohttp does); then
    ``await port.serve(load, build)`` serves until cancelled.

    Args:
        host: address or name to bind; ``""`` means every interface.
        port: TCP port, 0 for any free one.

    Attributes:
        addresses: ``(host, port)`` of each bound socket, once entered.

    Raises:
        OSError: from ``__aenter__``, the address cannot be bound (in use, not on this host).
    """

    def __init__(self, host: str, port: int) -> None:
        self._host = host
        self._port = port
        self._sockets: list[socket.socket] = []
        self.addresses: list[tuple[str, int]] = []

    async def __aenter__(self) -> LazyPort:
        host = self._host or None
        infos: Sequence[tuple[socket.AddressFamily, socket.SocketKind, int, str, Any]]
        try:  # an address (the usual loopback) needs no resolver thread
            infos = socket.getaddrinfo(
                host, self._port, type=socket.SOCK_STREAM,
                flags=socket.AI_PASSIVE | socket.AI_NUMERICHOST,
            )  # fmt: skip
        except socket.gaierror:  # a name: resolved off the loop
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, self._port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
        try:
            for family, kind, proto, _, address in dict.fromkeys(infos):
                sock = socket.socket(family, kind, proto)
                self._sockets.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:  # as asyncio: no v4 traffic on a v6 socket
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind(address)
                sock.listen(_BACKLOG)
                sock.setblocking(False)
                bound = sock.getsockname()
                self.addresses.append((str(bound[0]), int(bound[1])))
        except BaseException:
            self._close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._close()

    async def serve(self, load: str, build: Callable[[], Awaitable[web.AppRunner]]) -> None:
        """Wait for the first connection, import ``load``, serve ``build()``'s runner.

        ``load`` (a module name) is imported in a worker thread, so the loop runs on
        while aiohttp loads; ``build`` then makes and sets up the runner (on the
        loop). Runs until cancelled; the runner is cleaned up on the way out.
        """
        await self._first_connection()
        await asyncio.to_thread(importlib.import_module, load)
        from aiohttp import web  # loaded by now: ``load`` imports it

        runner = await build()
        try:
            for sock in self._sockets:
                await web.SockSite(runner, sock).start()
            self._sockets = []  # the runner's servers own (and close) them now
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    async def _first_connection(self) -> None:
        """Until a connection waits on any socket (it is left for the server to accept)."""
        loop = asyncio.get_running_loop()
        pending = asyncio.Event()
        for sock in self._sockets:
            loop.add_reader(sock.fileno(), pending.set)
        try:
            await pending.wait()
        finally:
            for sock in self._sockets:
                loop.remove_reader(sock.fileno())

    def _close(self) -> None:
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.close()
        self._sockets = []
