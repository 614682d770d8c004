"""A TCP proxy in front of a broker that misbehaves on purpose (issue 3's uplink faults).

``StallingProxy`` listens on its own port and, while ``stalled`` is true, accepts
connections and reads what the client sends but answers nothing — a broker that
takes the TCP connection and never sends CONNACK. Otherwise it pipes bytes both
ways to the real broker. :meth:`StallingProxy.drop_all` cuts every live
connection (a flapping link).
"""

from __future__ import annotations

import asyncio
import contextlib

from simulators.lifetime import StartStop


class StallingProxy(StartStop):
    """A proxy to ``target_host:target_port`` that can stall or cut connections.

    Args:
        target_host, target_port: the real broker.
        host, port: where to listen; port 0 picks a free one.
        stalled: start in the stalled state.

    Attributes:
        stalled: while True, new connections are accepted and ignored.
        accepted: connections accepted so far.
    """

    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        stalled: bool = False,
    ) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.host = host
        self.port = port
        self.stalled = stalled
        self.accepted = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Listen.

        Raises:
            OSError: the port cannot be bound.
        """
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and cut every connection."""
        if self._server is not None:
            self._server.close()
            self._server = None
        self.drop_all()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await task

    def drop_all(self) -> int:
        """Cut every live connection (both sides); returns how many were cut."""
        writers = list(self._writers)
        for writer in writers:
            writer.transport.abort()
        self._writers.clear()
        return len(writers)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.accepted += 1
        self._writers.add(writer)
        try:
            if self.stalled:
                while await reader.read(4096):
                    pass  # swallow CONNECT and everything after it; answer nothing
                return
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
            self._writers.add(up_writer)
            async with asyncio.TaskGroup() as tg:
                tg.create_task(_pipe(reader, up_writer))
                tg.create_task(_pipe(up_reader, writer))
        except* (ConnectionError, OSError):
            pass
        finally:
            self._tasks.discard(task)
            for w in (writer,):
                self._writers.discard(w)
                w.transport.abort()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.transport.abort()
