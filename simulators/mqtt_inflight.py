"""A TCP proxy between a client and a broker that counts QoS 1 publishes in flight.

:class:`InflightProxy` pipes bytes both ways and reads the MQTT packets as they
pass (MQTT 5.0 §2.1: fixed header, Remaining Length as a variable byte integer).
A QoS 1 PUBLISH from the client opens its packet identifier; the broker's PUBACK
with that identifier closes it. The most open at once is what the broker's
Receive Maximum (§3.3.4) bounds. ``puback_delay`` holds each PUBACK back for a
while, like a slow link, so a client's window actually fills.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable

from simulators.lifetime import StartStop

PUBLISH = 3
PUBACK = 4


class MqttStream:
    """Splits a byte stream into MQTT packets: ``feed`` bytes, get ``(type, flags, body)``."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, int, bytes]]:
        """Add ``data``; returns every packet it completes, in order."""
        self._buffer += data
        packets = []
        while True:
            packet = self._next()
            if packet is None:
                return packets
            packets.append(packet)

    def _next(self) -> tuple[int, int, bytes] | None:
        buf = self._buffer
        if len(buf) < 2:
            return None
        length, multiplier, pos = 0, 1, 1
        while True:
            if pos >= len(buf):
                return None
            byte = buf[pos]
            length += (byte & 0x7F) * multiplier
            multiplier *= 128
            pos += 1
            if not byte & 0x80:
                break
            if pos > 4:
                raise ValueError("malformed Remaining Length")
        if len(buf) < pos + length:
            return None
        first = buf[0]
        body = bytes(buf[pos : pos + length])
        del buf[: pos + length]
        return first >> 4, first & 0x0F, body


def publish_packet_id(flags: int, body: bytes) -> int | None:
    """The packet identifier of a PUBLISH with QoS > 0, or None for QoS 0."""
    if (flags >> 1) & 0x03 == 0:
        return None
    topic_length = int.from_bytes(body[:2], "big")
    return int.from_bytes(body[2 + topic_length : 4 + topic_length], "big")


class InflightProxy(StartStop):
    """Listens on its own port and pipes each connection to ``target_host:target_port``.

    Args:
        target_host, target_port: the broker.
        puback_delay: seconds each PUBACK to the client is held back.
        drop_pubacks: while set, the PUBACKs of publishes whose topic contains this
            text are thrown away (a broker that takes those messages and never
            confirms them); may be changed at any time.

    Attributes:
        port: where it listens (a free one is picked at start).
        in_flight: QoS 1 packet identifiers (with their topics) the client published
            and the broker has not yet acknowledged, per connection number.
        max_in_flight: the most open at once on any one connection.
        publishes: QoS 1 PUBLISH packets the client sent, all connections.
        dropped: PUBACKs thrown away.
    """

    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        puback_delay: float = 0.0,
        drop_pubacks: str | None = None,
    ) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.puback_delay = puback_delay
        self.drop_pubacks = drop_pubacks
        self.dropped = 0
        self.host = "127.0.0.1"
        self.port = 0
        self.in_flight: dict[int, dict[int, str]] = {}
        self.max_in_flight = 0
        self.publishes = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._connections = 0

    async def start(self) -> None:
        """Listen.

        Raises:
            OSError: the port cannot be bound.
        """
        self._server = await asyncio.start_server(self._handle, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and cut every connection."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await task

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._connections += 1
        number = self._connections
        open_ids: dict[int, str] = {}
        self.in_flight[number] = open_ids
        up_writer: asyncio.StreamWriter | None = None
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._pipe(reader, up_writer, functools.partial(self._up, open_ids)))
                tg.create_task(
                    self._pipe(up_reader, writer, functools.partial(self._down, open_ids))
                )
        except* (ConnectionError, OSError):
            pass
        finally:
            self._tasks.discard(task)
            writer.transport.abort()
            if up_writer is not None:
                up_writer.transport.abort()

    def _up(self, open_ids: dict[int, str], kind: int, flags: int, body: bytes) -> bool:
        if kind == PUBLISH:
            packet_id = publish_packet_id(flags, body)
            if packet_id is not None:
                self.publishes += 1
                topic_length = int.from_bytes(body[:2], "big")
                open_ids[packet_id] = body[2 : 2 + topic_length].decode("utf-8", "replace")
                self.max_in_flight = max(self.max_in_flight, len(open_ids))
        return True

    def _down(self, open_ids: dict[int, str], kind: int, _flags: int, body: bytes) -> bool:
        """False for a PUBACK to throw away."""
        if kind != PUBACK:
            return True
        packet_id = int.from_bytes(body[:2], "big")
        topic = open_ids.get(packet_id, "")
        if self.drop_pubacks is not None and self.drop_pubacks in topic:
            self.dropped += 1
            return False
        open_ids.pop(packet_id, None)
        return True

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        seen: Callable[[int, int, bytes], bool],
    ) -> None:
        """Copy packets from ``reader`` to ``writer``, those ``seen`` lets pass.

        A PUBACK is held ``puback_delay`` seconds and counts as closed when it
        leaves the proxy.
        """
        stream = MqttStream()
        try:
            while data := await reader.read(65536):
                for kind, flags, body in stream.feed(data):
                    header = bytes([kind << 4 | flags]) + _length(len(body))
                    if kind == PUBACK and self.puback_delay > 0:
                        await asyncio.sleep(self.puback_delay)
                    if seen(kind, flags, body):
                        writer.write(header + body)
                await writer.drain()
        finally:
            writer.transport.abort()


def _length(n: int) -> bytes:
    """MQTT variable byte integer."""
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)
