"""A panel's side of a DC-09 link: a TCP connection or a UDP socket to the receiver,
with the receiver's answers cut into frames and queued as they arrive.

One object per simulated panel; no shared state. Used by :mod:`simulators.dc09_panel`.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Literal

from drivers.dc09.framing import Junk, StreamFramer, split_datagram

Transport = Literal["tcp", "udp"]


class PanelLink:
    """Bytes out, answer frames (without ``<LF>``/``<CR>``) in.

    Args:
        host, port: the receiver.
        transport: ``tcp`` (one connection kept open, opened again when it drops) or ``udp``.

    Attributes:
        answers: frames received, in order (a test reads them with :meth:`next_answer`).
        junk: bytes received outside any frame.
    """

    def __init__(self, host: str, port: int, transport: Transport = "tcp") -> None:
        self.host = host
        self.port = port
        self.transport = transport
        self.answers: asyncio.Queue[bytes] = asyncio.Queue()
        self.junk: list[bytes] = []
        self._writer: asyncio.StreamWriter | None = None
        self._reading: asyncio.Task[None] | None = None
        self._udp: asyncio.DatagramTransport | None = None

    async def send(self, data: bytes) -> None:
        """Send ``data`` as one write (one TCP packet for a small one, one datagram).

        Raises:
            OSError: the receiver cannot be reached.
        """
        if self.transport == "udp":
            if self._udp is None:
                loop = asyncio.get_running_loop()
                self._udp, _ = await loop.create_datagram_endpoint(
                    lambda: _Answers(self), remote_addr=(self.host, self.port)
                )
            self._udp.sendto(data)
            return
        if self._writer is None or self._writer.is_closing():
            await self._connect()
        assert self._writer is not None
        self._writer.write(data)
        await self._writer.drain()

    async def next_answer(self, within_s: float) -> bytes | None:
        """The next answer frame, or None when none came within ``within_s`` seconds."""
        try:
            return await asyncio.wait_for(self.answers.get(), within_s)
        except TimeoutError:
            return None

    def take(
        self, data: bytes, *, datagram: bool = False, framer: StreamFramer | None = None
    ) -> None:
        pieces = split_datagram(data) if datagram or framer is None else framer.feed(data)
        for piece in pieces:
            if isinstance(piece, Junk):
                self.junk.append(piece.data)
            else:
                self.answers.put_nowait(piece)

    async def close(self) -> None:
        """Close the connection or socket."""
        if self._reading is not None:
            self._reading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reading
            self._reading = None
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(ConnectionError):
                await self._writer.wait_closed()
            self._writer = None
        if self._udp is not None:
            self._udp.close()
            self._udp = None

    async def _connect(self) -> None:
        if self._reading is not None:
            self._reading.cancel()
        reader, self._writer = await asyncio.open_connection(self.host, self.port)
        self._reading = asyncio.create_task(self._read(reader), name="panel-link-read")

    async def _read(self, reader: asyncio.StreamReader) -> None:
        framer = StreamFramer()
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(4096):
                self.take(data, framer=framer)


class _Answers(asyncio.DatagramProtocol):
    def __init__(self, link: PanelLink) -> None:
        self.link = link

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.link.take(data, datagram=True)
