"""The receiver's listeners: TCP (a connection may carry many frames, answered in
order) and UDP (each datagram answered to its sender).

On TCP the frames of one connection are taken one after the other, each answered
before the next (a panel's events keep their order; many panels' connections run
side by side and share the outbox's group commit). A connection the panel closes
still has its frames committed. On UDP a datagram is one or more frames; each
answer is a datagram of its own; the receiver keeps each panel's frames in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import structlog
from structlog.typing import FilteringBoundLogger

from drivers.dc09.framing import Junk, StreamFramer, split_datagram
from drivers.dc09.receiver import Receiver
from gateway.config.panels import ListenConfig
from gateway.runtime.tasks import cancel_and_wait

UDP_IN_FLIGHT = 1024
"""Datagrams being taken at once; more are dropped (counted): the panel sends again."""
UDP_RECEIVE_BUFFER = 4 * 1024 * 1024
"""Bytes asked for a UDP socket's receive buffer (Linux grants at most
``net.core.rmem_max``, often 208 KiB by default: about 1,000 frames of a burst)."""
UDP_DROPS_CHECK_S = 5.0
"""How often a UDP listener looks for datagrams lost before they were read."""


class _Listener:
    def __init__(
        self, listen: ListenConfig, receiver: Receiver, logger: FilteringBoundLogger | None
    ) -> None:
        self.listen = listen
        self.receiver = receiver
        self.port = listen.port
        self.ready = asyncio.Event()
        self.log = (logger or structlog.get_logger(__name__)).bind(
            protocol=listen.protocol, host=listen.host
        )

    @property
    def name(self) -> str:
        """``tcp:0.0.0.0:15030``."""
        return f"{self.listen.protocol}:{self.listen.host}:{self.listen.port}"

    async def _handle(self, frame: bytes, peer: str) -> bytes | None:
        try:
            return await self.receiver.handle(frame, peer)
        except Exception:
            self.receiver.counts["errors"] += 1
            self.log.exception("dc09.frame_failed", peer=peer)
            return None


class TcpListener(_Listener):
    """Serves panels' TCP connections; ``await listener.run()`` until cancelled.

    Args:
        listen: where to listen.
        receiver: the receiver's rules.
        max_connections: connections served at once; more are closed at once.
        idle_timeout: seconds a connection may send nothing before it is closed.
        max_per_host: connections of one address at once that no panel has proven
            (see :class:`_Connection`): a newer one closes the idlest of those that is
            not taking a frame (or is closed itself when every one is).

    Attributes:
        port: the port listened on. ready: set once listening.
        connections: connections open now. refused_connections: closed for the limit.
        evicted_connections: closed for a newer one of the same address.
    """

    def __init__(
        self,
        listen: ListenConfig,
        receiver: Receiver,
        *,
        max_connections: int,
        idle_timeout: float,
        max_per_host: int = 16,
        logger: FilteringBoundLogger | None = None,
    ) -> None:
        super().__init__(listen, receiver, logger)
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.max_per_host = max_per_host
        self.connections = 0
        self.refused_connections = 0
        self.evicted_connections = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._hosts: dict[str, set[_Connection]] = {}

    async def run(self) -> None:
        """Listen until cancelled; then close every connection.

        Raises:
            OSError: the address cannot be bound (the supervisor retries).
        """
        server = await asyncio.start_server(self._connection, self.listen.host, self.listen.port)
        self.port = server.sockets[0].getsockname()[1]
        self.ready.set()
        self.log.info("dc09.listening", port=self.port)
        try:
            async with server:
                await server.serve_forever()
        finally:
            self.ready.clear()
            await cancel_and_wait(list(self._tasks))

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        host, port = writer.get_extra_info("peername")[:2]
        peer = f"tcp {host}:{port}"
        same = self._hosts.setdefault(str(host), set())
        if _unproven(same) >= self.max_per_host:
            self._evict(same)
        full = self.connections >= self.max_connections or _unproven(same) >= self.max_per_host
        if task is None or full:
            self.refused_connections += 1
            self.log.warning("dc09.connection_refused", peer=peer, open=self.connections)
            writer.close()
            return
        conn = _Connection(writer, peer, time.monotonic())
        same.add(conn)
        self._tasks.add(task)
        self.connections += 1
        try:
            await self._serve(reader, writer, peer, conn)
        except asyncio.CancelledError:
            # Only run()'s stop cancels this task (and awaits it). It ends normally:
            # CPython 3.11's start_server done-callback calls exception() on a cancelled
            # connection task and logs "Exception in callback" at every stop.
            self.log.info("dc09.connection_closed", peer=peer, why="stopping")
        finally:
            self.connections -= 1
            self._tasks.discard(task)
            same.discard(conn)
            if not same:
                self._hosts.pop(str(host), None)
            writer.close()
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()

    def _evict(self, same: set[_Connection]) -> None:
        """Close the connection of ``same`` idle longest that no panel has proven and
        that is not taking a frame."""
        idle = [c for c in same if not (c.busy or c.proven)]
        if not idle:
            return
        victim = min(idle, key=lambda c: c.active_at)
        same.discard(victim)  # its task ends at the end of the stream it now reads
        victim.writer.close()
        self.evicted_connections += 1
        idle_s = round(time.monotonic() - victim.active_at, 1)
        self.log.warning("dc09.connection_evicted", peer=victim.peer, idle_s=idle_s)

    async def _serve(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        peer: str,
        conn: _Connection,
    ) -> None:
        """Frames in the order they came, each answered before the next is taken.

        A connection the panel closed still has the frames it sent taken (committed).
        """
        framer = StreamFramer()
        open_ = True
        while True:
            try:
                data = await asyncio.wait_for(reader.read(65536), self.idle_timeout)
            except (TimeoutError, ConnectionError) as exc:
                self.log.info("dc09.connection_closed", peer=peer, why=type(exc).__name__)
                data = b""
            conn.active_at = time.monotonic()
            conn.busy = True
            try:
                open_ = await self._take(framer.feed(data), writer, peer, open_, conn)
            finally:
                conn.busy = False
            if not data:
                break
        if framer.pending:
            await self.receiver.junk(b"(connection closed mid-frame)", peer)

    async def _take(
        self,
        pieces: Iterable[bytes | Junk],
        writer: asyncio.StreamWriter,
        peer: str,
        open_: bool,
        conn: _Connection,
    ) -> bool:
        """Take and answer ``pieces``; returns whether answers can still be written."""
        for piece in pieces:
            if isinstance(piece, Junk):
                await self.receiver.junk(piece.data, peer)
                continue
            answer = await self._handle(piece, peer)
            if answer is not None and _PANEL_ANSWERS.search(answer):
                conn.proven = True  # a configured account spoke on it
            if answer is None or not open_:
                continue
            try:
                writer.write(answer)
                await writer.drain()
            except ConnectionError as exc:
                open_ = False
                self.log.info("dc09.answer_not_sent", peer=peer, error=str(exc))
        return open_


@dataclass(slots=True, eq=False)  # in sets by identity
class _Connection:
    """One TCP connection: its writer and peer, when it last sent, whether it is
    taking a frame now, and whether a configured panel has spoken on it (a frame of
    it was taken and got an ``ACK``). Neither a busy nor a proven one is ever closed for a
    newer one: a panel keeps its connection open and silent between reports, and
    closing it cost each report an ACK timeout (a review of 2026-12-05: 17 panels
    behind one address, every report 3 s late)."""

    writer: asyncio.StreamWriter
    peer: str
    active_at: float
    busy: bool = False
    proven: bool = False


_PANEL_ANSWERS = re.compile(rb'"\*?ACK"')
"""An answer to a message a configured panel sent and we took, plain or encrypted
(``"ACK"``, ``"*ACK"``). Not a ``NAK``: accounts travel in clear, and a frame
under one encrypted with a made-up key earns a NAK without the key (a review of
2026-12-06: 256 such connections, never evicted, shut every panel out). ``DUH``
goes to any sender (``drivers/dc09/writer.py``)."""


def _unproven(same: set[_Connection]) -> int:
    """Connections of one address no panel has proven: what the per-address cap counts."""
    return sum(1 for c in same if not c.proven)


class UdpListener(_Listener):
    """Serves panels' UDP datagrams; ``await listener.run()`` until cancelled.

    Datagrams can be lost before they are taken: by the kernel when the socket's
    receive buffer is full (a flood, or a box too busy to read; counted from the
    socket's ``drops`` in ``/proc/net/udp``), or here when :data:`UDP_IN_FLIGHT`
    are being taken. Neither is silent (a review of 2026-12-06: a flood dropped
    panel datagrams in the kernel, uncounted): every :data:`UDP_DROPS_CHECK_S` the
    listener adds what was lost to ``dropped`` and reports it as a refusal
    (``fault.panel_rejected``, reason ``dropped``, rate-limited). A panel resends
    what is not ACKed.

    Attributes:
        port: the port listened on. ready: set once listening.
        dropped: datagrams lost, in the kernel or for :data:`UDP_IN_FLIGHT`.
    """

    def __init__(
        self,
        listen: ListenConfig,
        receiver: Receiver,
        *,
        logger: FilteringBoundLogger | None = None,
    ) -> None:
        super().__init__(listen, receiver, logger)
        self.dropped_in_flight = 0
        self.dropped_by_kernel = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._transport: asyncio.DatagramTransport | None = None

    @property
    def dropped(self) -> int:
        """Datagrams lost before they were taken, as last looked at."""
        return self.dropped_in_flight + self.dropped_by_kernel

    async def run(self) -> None:
        """Listen until cancelled.

        Raises:
            OSError: the address cannot be bound (the supervisor retries).
        """
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Datagrams(self), local_addr=(self.listen.host, self.listen.port)
        )
        self._transport = transport
        sock = transport.get_extra_info("socket")
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RECEIVE_BUFFER)
        self.port = transport.get_extra_info("sockname")[1]
        self.ready.set()
        self.log.info(
            "dc09.listening", port=self.port,
            receive_buffer=sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF),
        )  # fmt: skip
        try:
            await self._watch_drops(os.fstat(sock.fileno()).st_ino)
        finally:
            self.ready.clear()
            transport.close()
            await cancel_and_wait(list(self._tasks))

    async def _watch_drops(self, inode: int) -> None:
        """Every :data:`UDP_DROPS_CHECK_S`: add what the kernel dropped, report losses."""
        reported = 0
        while True:
            await asyncio.sleep(UDP_DROPS_CHECK_S)
            kernel = kernel_drops(inode)
            if kernel is not None:
                self.dropped_by_kernel = kernel
            lost = self.dropped - reported
            if lost > 0:
                reported = self.dropped
                self.log.warning(
                    "dc09.udp_dropped", lost=lost, by_kernel=self.dropped_by_kernel,
                    in_flight=self.dropped_in_flight,
                )  # fmt: skip
                await self.receiver.lost(
                    f"udp {self.listen.host}:{self.port}",
                    f"{lost} datagrams lost in {UDP_DROPS_CHECK_S:.0f} s before they could "
                    "be read (the socket's receive buffer was full: a flood, or the box too "
                    "busy); panels resend what was not ACKed",
                )

    def received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(self._tasks) >= UDP_IN_FLIGHT:
            self.dropped_in_flight += 1
            return
        task = asyncio.get_running_loop().create_task(self._datagram(data, addr))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _datagram(self, data: bytes, addr: tuple[str, int]) -> None:
        peer = f"udp {addr[0]}:{addr[1]}"
        for piece in split_datagram(data):
            if isinstance(piece, Junk):
                await self.receiver.junk(piece.data, peer)
                continue
            answer = await self._handle(piece, peer)
            if answer is not None and self._transport is not None:
                self._transport.sendto(answer, addr)


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, listener: UdpListener) -> None:
        self.listener = listener

    def datagram_received(self, data: bytes, addr: tuple[str, Any]) -> None:
        self.listener.received(data, (str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:
        self.listener.log.info("dc09.udp_error", error=str(exc))


def kernel_drops(inode: int) -> int | None:
    """Datagrams the kernel dropped for the UDP socket ``inode`` (``drops``, the last
    column of ``/proc/net/udp`` and ``/proc/net/udp6``), or None where that cannot
    be read (not Linux)."""
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(table, encoding="ascii") as rows:
                next(rows, None)  # the header
                for row in rows:
                    fields = row.split()
                    if len(fields) >= 13 and fields[9] == str(inode):
                        return int(fields[12])
        except (OSError, ValueError):
            continue
    return None
