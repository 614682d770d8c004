"""A TCP listener for readers that send text lines: the part networked readers and
handheld uploads share.

The gateway listens (``listen = {host, port}``); readers connect, send UTF-8
lines ending in ``\\n`` and read the gateway's answers on the same connection.
A reader with a key must first answer the gateway's challenge
(:mod:`.auth`); a connection that does not is answered ``DENIED``, closed,
counted (``rejected``) and reported (:class:`ReaderRejected`, the first of each
reason logged).
A line longer than ``max_line`` bytes or not UTF-8 is a bad line: it is
answered, logged once per reader with its raw text, counted and skipped; the
connection goes on. Subclasses say what a connection means (:meth:`LineReader.serve`).
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Generic, TypeVar
from zoneinfo import ZoneInfo

import structlog
from structlog.typing import FilteringBoundLogger

from drivers.patrol_reader.auth import AUTH_TIMEOUT_S, check_answer, new_challenge
from gateway.config.patrol import HandheldReaderConfig, NetworkReaderConfig
from gateway.errors import DeviceProtocolError
from gateway.events.observation import utcnow
from gateway.events.patrol_observation import PatrolSink, ReaderRejected
from gateway.events.throttle import ReportThrottle
from gateway.runtime.descriptors import ConnectionCap
from gateway.runtime.tasks import cancel_and_wait

MAX_CONNECTIONS = 64
"""Connections a reader's port serves at once (a site has a few readers and phones);
a newer one closes the oldest, so idle or half-open ones can neither take the
descriptors the outbox needs (``gateway/runtime/descriptors.py``) nor shut a
phone out."""

MAX_LINE = 4096
"""Longest line accepted, in bytes (a record is well under 200)."""
UNPROVEN_PER_HOST = 8
"""On a keyed reader's port, connections of one address that have not answered the
challenge yet; that address's next one evicts its oldest (``ConnectionCap``)."""
REJECTED_EVERY_S = 60.0
"""The shortest time between two reports (``ReaderRejected``) of one reason; the
refusals in between are counted (``refused_since``), never handed on one by one: each
report takes the tour engine's lock and a commit (a review of 2026-12-06 stalled the
guards' reads for 30 s with 300 silent connections)."""
Cfg = TypeVar("Cfg", NetworkReaderConfig, HandheldReaderConfig)


class LineReader(ABC, Generic[Cfg]):
    """Listens for one reader's connections for the life of the daemon.

    Args:
        cfg: the reader's configuration (``id``, ``listen``).
        sink: where observations go (awaited: answers follow the engine's commit).
        tz: the site's timezone, for times sent without a zone.
        logger: a structlog logger; ``device_id`` is bound to it.
        now: the gateway's clock (aware UTC), for receive times.
        key: the reader's key (``key_file``); None: connections are not challenged.

    Attributes:
        port: the port listened on (the one the OS chose when 0 was asked).
        ready: set once listening.
        lines: lines received (good and bad).
        taken: records handed to the sink (hits, heartbeats).
        bad_lines: lines that could not be used.
        errors: unexpected exceptions while serving a connection.
        rejected: connections refused for not answering the challenge.
    """

    def __init__(
        self,
        cfg: Cfg,
        sink: PatrolSink,
        tz: ZoneInfo,
        *,
        logger: FilteringBoundLogger | None = None,
        now: Callable[[], datetime] = utcnow,
        key: bytes | None = None,
    ) -> None:
        self.cfg: Cfg = cfg
        self.key = key
        self.now = now
        self.device_id = cfg.id
        self.listen = cfg.listen
        self.sink = sink
        self.tz = tz
        self.log = (logger or structlog.get_logger(__name__)).bind(device_id=cfg.id)
        self.port = cfg.listen.port
        self.ready = asyncio.Event()
        self.lines = 0
        self.taken = 0
        self.bad_lines = 0
        self.errors = 0
        self.rejected = 0
        self._bad_logged = False
        self._rejections_logged: set[str] = set()
        self._connections: set[asyncio.Task[None]] = set()
        self.cap = ConnectionCap(
            f"patrol:{cfg.id}", MAX_CONNECTIONS, evict_oldest=True,
            per_host=UNPROVEN_PER_HOST if key is not None else None,
        )  # fmt: skip
        self._throttle: ReportThrottle[str] = ReportThrottle(REJECTED_EVERY_S)

    async def run(self) -> None:
        """Listen until cancelled; then close the listener and every connection.

        Raises:
            OSError: the port cannot be bound (the supervisor retries).
        """
        server = await asyncio.start_server(
            self.cap.wrap(self._connection), self.listen.host, self.listen.port
        )
        self.port = server.sockets[0].getsockname()[1]
        self.ready.set()
        self.log.info("patrol.listening", host=self.listen.host, port=self.port)
        try:
            async with server:
                await self.idle()
        finally:
            self.ready.clear()
            await cancel_and_wait(list(self._connections))

    async def idle(self) -> None:
        """What the listener does while connections are served: wait for ever.

        Subclasses may watch for silence here.
        """
        await asyncio.Event().wait()

    @abstractmethod
    async def serve(
        self, lines: AsyncIterator[str | DeviceProtocolError], writer: asyncio.StreamWriter
    ) -> None:
        """Handle one connection: ``lines`` yields each line (without its end) or the
        error of a line that could not be read; answers go to ``writer``."""

    def bad_line(self, exc: DeviceProtocolError) -> None:
        """Count a bad line; log the first one of this reader with its raw text."""
        self.bad_lines += 1
        if not self._bad_logged:
            self._bad_logged = True
            self.log.warning("patrol.bad_line", error=str(exc), raw=exc.raw)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one connection (a task asyncio's server made for it).

        Cancellation (the daemon stopping, Ctrl-C) ends it quietly: the task is
        asyncio's, whose done-callback calls ``task.exception()`` and so logged a
        cancelled connection as an 18-line ``CancelledError`` traceback (issue 11).
        """
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        peer = writer.get_extra_info("peername")
        self.log.info("patrol.connected", peer=str(peer))
        try:
            lines = self._lines(reader)
            if await self._authenticated(lines, writer, _address(peer)):
                await self.serve(lines, writer)
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            self.log.info("patrol.connection_lost", peer=str(peer), error=str(exc))
        except asyncio.CancelledError:
            self.log.info("patrol.connection_closed", peer=str(peer), reason="stopping")
        except Exception:
            self.errors += 1
            self.log.exception("patrol.connection_error", peer=str(peer))
        finally:
            if task is not None:
                self._connections.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()

    async def _authenticated(
        self,
        lines: AsyncIterator[str | DeviceProtocolError],
        writer: asyncio.StreamWriter,
        peer: str,
    ) -> bool:
        """True once the connection answered the challenge (at once without a key);
        else it is answered ``DENIED <reason>``, closed, counted, and reported at most
        once per reason every :data:`REJECTED_EVERY_S`."""
        if self.key is None:
            return True
        challenge = new_challenge()
        writer.write(f"CHALLENGE {challenge}\n".encode())
        await writer.drain()
        try:
            first = await asyncio.wait_for(anext(lines, None), AUTH_TIMEOUT_S)
        except TimeoutError:
            first = None
        line = "" if isinstance(first, DeviceProtocolError) else first
        reason = check_answer(self.key, self.device_id, challenge, line)
        if reason is None:
            writer.write(b"OK\n")
            await writer.drain()
            self.cap.prove(writer)
            self.log.info("patrol.authenticated", peer=peer)
            return True
        self.rejected += 1
        if reason not in self._rejections_logged:
            self._rejections_logged.add(reason)
            self.log.warning("patrol.connection_rejected", peer=peer, reason=reason)
        with contextlib.suppress(ConnectionError):
            writer.write(f"DENIED {reason}\n".encode())
            await writer.drain()
        writer.close()
        admitted = self._throttle.admit(reason)
        if admitted is not None:
            await self.sink(
                ReaderRejected(self.device_id, reason, peer, self.now(), admitted.refused_since)
            )
        return False

    async def _lines(
        self, reader: asyncio.StreamReader
    ) -> AsyncIterator[str | DeviceProtocolError]:
        while True:
            try:
                data = await reader.readuntil(b"\n")
            except asyncio.IncompleteReadError as exc:
                data = exc.partial
                if not data:
                    return
            except asyncio.LimitOverrunError as exc:
                head = await reader.readexactly(exc.consumed)
                await _skip_line(reader)
                self.lines += 1
                yield self._error("line too long", head[:80])
                continue
            self.lines += 1
            if len(data) > MAX_LINE:
                yield self._error(f"line of {len(data)} bytes", data[:80])
                continue
            try:
                yield data.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as exc:
                yield self._error(f"not UTF-8: {exc}", data)

    def _error(self, message: str, data: bytes) -> DeviceProtocolError:
        return DeviceProtocolError(message, device_id=self.device_id, raw=data.hex(" "))


def _address(peer: object) -> str:
    """``host:port`` of a peer name (``[host]:port`` for IPv6), else its text."""
    if isinstance(peer, tuple) and len(peer) >= 2:
        host, port = peer[0], peer[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(peer)


async def _skip_line(reader: asyncio.StreamReader) -> None:
    """Drop everything up to and including the next newline (or the end of the stream)."""
    while True:
        try:
            await reader.readuntil(b"\n")
            return
        except asyncio.LimitOverrunError as exc:
            await reader.readexactly(exc.consumed)
        except asyncio.IncompleteReadError:
            return
