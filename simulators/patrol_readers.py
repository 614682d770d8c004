"""Simulated patrol readers that talk to the gateway: a phone-app bridge and a handheld.

Both are TCP clients of the gateway's reader listeners and speak the formats of
:mod:`drivers.patrol_reader.records` (one object per simulated device, no shared
state). The app sends each hit as it happens and waits for its ack; the handheld
stores its reads with its own clock and uploads them later in one batch, clearing
its memory only on ``ACK`` — as a real offline reader does.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from drivers.patrol_reader.auth import proof


class ReaderLinkError(RuntimeError):
    """The gateway refused, closed the connection or answered something unexpected."""


async def connect(
    host: str, port: int, timeout_s: float, key: bytes | None, reader_id: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open a connection to a reader's port; with ``key``, answer the gateway's
    challenge first (:mod:`drivers.patrol_reader.auth`) as ``reader_id``.

    Raises:
        ReaderLinkError: no connection, no challenge, or not ``OK`` within ``timeout_s``.
        OSError, TimeoutError: as :func:`asyncio.open_connection`.
    """
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
    if key is None:
        return reader, writer
    try:
        hello = (await asyncio.wait_for(reader.readline(), timeout_s)).decode().strip()
        if not hello.startswith("CHALLENGE "):
            raise ReaderLinkError(f"expected a CHALLENGE, got {hello!r}")
        answer = proof(key, reader_id, hello.removeprefix("CHALLENGE "))
        writer.write(f"AUTH {answer}\n".encode())
        await writer.drain()
        verdict = (await asyncio.wait_for(reader.readline(), timeout_s)).decode().strip()
        if verdict != "OK":
            raise ReaderLinkError(f"the gateway refused the key: {verdict or 'closed'}")
    except BaseException:
        writer.close()
        raise
    return reader, writer


@dataclass(slots=True)
class PhoneApp:
    """A phone-app bridge sending live JSON lines.

    Args:
        host: the gateway's address.
        port: the network reader's listen port.
        timeout_s: how long to wait for an ack.
        key: the reader's key (its ``key_file``); None: the port is not keyed.
        reader_id: the reader's configured id (what the key proves).

    Attributes:
        acks: every answer received, in order.
    """

    host: str
    port: int
    timeout_s: float = 5.0
    key: bytes | None = None
    reader_id: str = ""
    acks: list[dict[str, Any]] = field(default_factory=list)
    _seq: int = 0
    _reader: asyncio.StreamReader | None = None
    _writer: asyncio.StreamWriter | None = None

    async def hit(
        self,
        tag: str,
        at: dt.datetime,
        *,
        guard: str | None = None,
        battery_v: float | None = None,
        seq: int | None = None,
    ) -> dict[str, Any]:
        """Send one hit and return the gateway's answer (``{"ack": seq}``).

        Raises:
            ReaderLinkError: no connection or no answer within ``timeout_s``.
        """
        if seq is None:
            self._seq += 1
            seq = self._seq
        body: dict[str, Any] = {"type": "hit", "seq": seq, "tag": tag, "time": at.isoformat()}
        if guard is not None:
            body["guard"] = guard
        if battery_v is not None:
            body["battery_v"] = battery_v
        return await self.send_line(json.dumps(body, ensure_ascii=False))

    async def heartbeat(self, battery_v: float | None = None) -> dict[str, Any]:
        """Send a heartbeat (with a battery reading when given)."""
        self._seq += 1
        body: dict[str, Any] = {"type": "heartbeat", "seq": self._seq}
        if battery_v is not None:
            body["battery_v"] = battery_v
        return await self.send_line(json.dumps(body))

    async def send_line(self, line: str) -> dict[str, Any]:
        """Send one raw line (a test may send junk) and return the parsed answer.

        Raises:
            ReaderLinkError: as :meth:`hit`.
        """
        try:
            if self._writer is None or self._writer.is_closing():
                self._reader, self._writer = await connect(
                    self.host, self.port, self.timeout_s, self.key, self.reader_id
                )
            reader, writer = self._reader, self._writer
            assert reader is not None and writer is not None
            writer.write(line.encode() + b"\n")
            await writer.drain()
            answer = await asyncio.wait_for(reader.readline(), self.timeout_s)
        except (OSError, TimeoutError) as exc:
            await self.close()
            raise ReaderLinkError(f"network reader {self.host}:{self.port}: {exc!r}") from exc
        if not answer:
            await self.close()
            raise ReaderLinkError("the gateway closed the connection")
        parsed: dict[str, Any] = json.loads(answer)
        self.acks.append(parsed)
        return parsed

    async def close(self) -> None:
        """Close the connection (the next send reconnects)."""
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


@dataclass(slots=True)
class Handheld:
    """An offline handheld reader: stores reads, uploads them in batches.

    Args:
        number: the reader's own number (CSV column 1).
        tz: the zone of its clock (it writes local time).
        battery_v: battery voltage written into each record.
        key: the reader's key (its ``key_file``); None: the port is not keyed.
        reader_id: the reader's configured id (what the key proves).

    Attributes:
        memory: reads not yet acknowledged by the gateway: ``(tag, time, volts)``.
    """

    number: int
    tz: ZoneInfo
    battery_v: float = 3.9
    key: bytes | None = None
    reader_id: str = ""
    memory: list[tuple[str, dt.datetime, float]] = field(default_factory=list)

    def scan(self, tag: str, at: dt.datetime) -> None:
        """The guard reads a tag (checkpoint tag, or their card to sign in)."""
        self.memory.append((tag, at, self.battery_v))

    def lines(self) -> list[str]:
        """The upload as CSV lines (without ``END``)."""
        return [
            f"{self.number},{at.astimezone(self.tz):%Y-%m-%d %H:%M:%S},{tag},{volts:.1f}"
            for tag, at, volts in self.memory
        ]

    async def upload(
        self, host: str, port: int, *, extra_lines: list[str] | None = None, timeout_s: float = 30
    ) -> str:
        """Upload every stored read; on ``ACK`` clear the memory. Returns the answer line.

        ``extra_lines`` are sent after the records (a test's duplicates or junk)
        and counted in ``END``.

        Raises:
            ReaderLinkError: cannot connect, or no answer within ``timeout_s``.
        """
        lines = [*self.lines(), *(extra_lines or [])]
        try:
            reader, writer = await connect(host, port, timeout_s, self.key, self.reader_id)
        except (OSError, TimeoutError) as exc:
            raise ReaderLinkError(f"handheld upload to {host}:{port}: {exc!r}") from exc
        try:
            body = "".join(f"{line}\n" for line in lines) + f"END {len(lines)}\n"
            writer.write(body.encode())
            await writer.drain()
            answer = (await asyncio.wait_for(reader.readline(), timeout_s)).decode().strip()
        except (OSError, TimeoutError) as exc:
            raise ReaderLinkError(f"handheld upload: {exc!r}") from exc
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        if answer.startswith("ACK"):
            self.memory.clear()
        return answer
