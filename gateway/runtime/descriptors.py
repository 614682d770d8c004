"""File descriptors: the outbox's share is never taken by idle connections.

SQLite opens the outbox's journal (and its directory, to sync it) at every
commit, the state store likewise, and the cameras open a connection per request.
A review of 2026-12-05 held 1,100 idle connections open to the local ports of a
gateway under systemd's default limit of 1,024 descriptors: the outbox could not
open its journal (``outbox.commit_failed``: "unable to open database file"), the
spill failed with EMFILE, the cameras went offline, and asyncio logged
``socket.accept() out of system resource`` with a traceback again and again. Three
defences, each small:

* :func:`raise_open_files_limit`: the soft ``RLIMIT_NOFILE`` goes up to the hard
  one at start (systemd's default hard limit is 524,288; the unit also sets
  ``LimitNOFILE=65536``);
* :class:`ConnectionCap`: each listener serves at most ``limit`` connections at
  once; one more is closed at once, logged at the first of a run and counted;
* :func:`quiet_loop_errors`: the event loop reports an accept that failed for
  want of descriptors at most once a minute per listener, with the count of those
  it left out.
"""

from __future__ import annotations

import asyncio
import resource
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

log = structlog.get_logger(__name__)

ACCEPT_ERRORS_EVERY_S = 60.0
"""How often the loop reports accepts that failed for want of descriptors (and
protocols that failed on a device's bytes)."""

_DEVICE_FAULT = "Fatal error: protocol.data_received() call failed"


def raise_open_files_limit() -> tuple[int, int]:
    """Raise the soft limit on open files to the hard one; returns ``(soft, hard)``
    as they are now. Never raises: a limit that cannot be changed is logged."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (OSError, ValueError) as exc:
            log.warning("descriptors.limit_not_raised", soft=soft, hard=hard, error=str(exc))
            return soft, hard
    return hard, hard


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class ConnectionCap:
    """At most ``limit`` connections of one listener at once (``asyncio.start_server``).

    Args:
        name: the listener, for the log (``ops``, ``patrol:<reader id>``).
        limit: connections served at once.
        evict_oldest: when ``limit`` are being served, close the oldest of them for
            the newcomer (a reader's port: a phone that roamed between access points
            leaves a half-open connection that never ends by itself, and a night of
            them must not shut the guards' scans out: review of 2026-12-05);
            otherwise the newcomer is closed unread (a port whose clients have a
            deadline of their own, as the HTTP port's 10 s for a request head).
            Connections marked with :meth:`prove` go last: a newcomer evicts the
            oldest unproven connection of the address holding the most unproven
            ones, and only when every connection has proven itself the oldest of all.
        per_host: with ``evict_oldest``, at most this many connections of one
            address that have not proven themselves: that address's newcomer
            evicts its own oldest unproven one (None: no such cap). One machine
            flooding the port then cannot crowd out a reader of another address in
            the middle of its handshake (review of 2026-12-06: 15 of 20 reconnects
            of a keyed phone failed against 300 silent connections).

    Attributes:
        refused: connections closed, newcomers or evicted, because ``limit`` were
            being served.
    """

    def __init__(
        self, name: str, limit: int, *, evict_oldest: bool = False, per_host: int | None = None
    ) -> None:
        self.name = name
        self.limit = limit
        self.evict_oldest = evict_oldest
        self.per_host = per_host
        self.refused = 0
        self._open: dict[int, tuple[asyncio.StreamWriter, str]] = {}  # in the order they came
        self._proven: set[int] = set()
        self._refusing = False

    @property
    def active(self) -> int:
        """Connections being served now."""
        return len(self._open)

    def wrap(self, handler: Handler) -> Handler:
        """``handler`` behind the cap: what ``asyncio.start_server`` is given."""

        async def capped(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            host = _host(writer)
            refused = False
            if self.evict_oldest and self.per_host is not None:
                unproven = [
                    k for k, (_, h) in self._open.items() if h == host and k not in self._proven
                ]
                if len(unproven) >= self.per_host:
                    self._refuse(self._open.pop(unproven[0])[0])
                    refused = True
            if len(self._open) >= self.limit:
                victim = writer
                if self.evict_oldest:
                    victim = self._open.pop(self._victim())[0]
                self._refuse(victim)
                if victim is writer:
                    return
                refused = True
            if not refused:
                self._refusing = False  # a run of refusals ends: the next one is logged
            key = id(writer)
            self._open[key] = (writer, host)
            try:
                await handler(reader, writer)
            finally:
                self._open.pop(key, None)
                self._proven.discard(key)

        return capped

    def _victim(self) -> int:
        """The connection a newcomer evicts at the cap: the oldest unproven one of the
        address that holds the most unproven ones (junk from 40 addresses still
        evicted a phone mid-handshake when the oldest unproven of all went: a review
        of 2026-12-06); when every connection is proven, the oldest."""
        unproven: dict[str, list[int]] = {}
        for key, (_, host) in self._open.items():
            if key not in self._proven:
                unproven.setdefault(host, []).append(key)
        if not unproven:
            return next(iter(self._open))
        return max(unproven.values(), key=len)[0]

    def prove(self, writer: asyncio.StreamWriter) -> None:
        """``writer``'s peer proved who it is (a reader's key): evicted last."""
        if id(writer) in self._open:
            self._proven.add(id(writer))

    def _refuse(self, writer: asyncio.StreamWriter) -> None:
        """Close ``writer``'s connection at once; logged at the first of a run, counted."""
        self.refused += 1
        if not self._refusing:
            self._refusing = True
            log.warning(
                "descriptors.connection_refused", listener=self.name, limit=self.limit,
                peer=str(writer.get_extra_info("peername")), refused=self.refused,
                evicted=self.evict_oldest,
            )  # fmt: skip
        writer.transport.abort()  # no FIN handshake to wait for: the descriptor goes now


def _host(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    return str(peer[0]) if isinstance(peer, tuple) and peer else str(peer)


def quiet_loop_errors(loop: asyncio.AbstractEventLoop) -> None:
    """Report ``socket.accept() out of system resource`` at most once a minute per
    listening socket (asyncio retries the accept every second, and each failure
    was a traceback), and a protocol that failed on a device's bytes at most once a
    minute per protocol class; every other exception the loop reports goes on as
    before."""
    last: dict[str, float] = {}
    left_out: dict[str, int] = {}
    previous = loop.get_exception_handler()

    def due(key: str) -> int | None:
        """None while ``key`` was reported within the minute (one more left out),
        else how many were left out since its last report."""
        now = loop.time()
        if now - last.get(key, -ACCEPT_ERRORS_EVERY_S) < ACCEPT_ERRORS_EVERY_S:
            left_out[key] = left_out.get(key, 0) + 1
            return None
        last[key] = now
        return left_out.pop(key, 0)

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        message = str(context.get("message", ""))
        if message.startswith(_DEVICE_FAULT):
            # A device's bytes broke its protocol (pymodbus raises on a reply of the
            # wrong function code, review of 2026-12-05): the transport closes and the
            # poller counts a failure; the traceback once a minute per protocol.
            protocol = type(context.get("protocol")).__name__
            if (skipped := due(f"protocol:{protocol}")) is not None:
                log.error(
                    "loop.protocol_failed", protocol=protocol,
                    error=repr(context.get("exception")), left_out=skipped,
                )  # fmt: skip
            return
        if "out of system resource" in message:
            if (skipped := due(f"socket:{id(context.get('socket'))}")) is not None:
                log.error(
                    "descriptors.accept_failed", error=str(context.get("exception")),
                    socket=str(context.get("socket")), left_out=skipped,
                )  # fmt: skip
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)
