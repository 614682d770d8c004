"""Networked readers and phone-app bridges: live JSON lines over TCP.

Per line (format: :mod:`.records`), after the engine has taken it and the outbox
stored what it made, the gateway answers one JSON line:

* ``{"ack": <seq>}`` — a hit or heartbeat taken (``seq`` as sent, or null);
* ``{"error": "<why>"}`` — a line that could not be used (logged once with its
  raw text, counted, skipped: a sender should not resend it unchanged).

A sender that does not see its ack resends; the engine drops the duplicate.

Health: the reader is ``online`` from its first line; ``offline`` when no line
(hit or heartbeat) came for ``offline_after_s``, also when it never connected;
``online`` again with its next line.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from structlog.typing import FilteringBoundLogger

from drivers.patrol_reader.health import ReaderHealth
from drivers.patrol_reader.lines import LineReader
from drivers.patrol_reader.records import parse_json_line
from gateway.config.patrol import NetworkReaderConfig
from gateway.errors import DeviceProtocolError
from gateway.events.observation import utcnow
from gateway.events.patrol_observation import PatrolHit, PatrolSink, ReaderBattery


class NetworkReader(LineReader[NetworkReaderConfig]):
    """Serves one networked reader's connections; ``await reader.run()``.

    Args:
        cfg: the reader's configuration.
        sink: where hits, battery readings and health transitions go.
        tz: the site's timezone, for times sent without an offset.
        logger: a structlog logger.
        now: the gateway's clock (aware UTC), for receive times.
        key: the reader's key; None: connections are not challenged.

    Attributes:
        health: the reader's health state machine.
    """

    def __init__(
        self,
        cfg: NetworkReaderConfig,
        sink: PatrolSink,
        tz: ZoneInfo,
        *,
        logger: FilteringBoundLogger | None = None,
        now: Callable[[], datetime] = utcnow,
        key: bytes | None = None,
    ) -> None:
        super().__init__(cfg, sink, tz, logger=logger, now=now, key=key)
        self.health = ReaderHealth(
            cfg.id, sink, offline_after=1, period_s=cfg.offline_after_s, logger=self.log, now=now
        )
        self._last_line = time.monotonic()

    async def idle(self) -> None:
        """Watch for silence: ``offline`` once no line came for ``offline_after_s``."""
        limit = self.cfg.offline_after_s
        while True:
            silent = time.monotonic() - self._last_line
            if silent >= limit and self.health.state != "offline":
                await self.health.failed(f"no line for {silent:.0f} s")
            await asyncio.sleep(max(0.01, limit - silent) if silent < limit else limit)

    async def serve(
        self, lines: AsyncIterator[str | DeviceProtocolError], writer: asyncio.StreamWriter
    ) -> None:
        """Take lines until the sender closes, answering each one."""
        async for line in lines:
            answer = await self._take(line)
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()

    async def _take(self, line: str | DeviceProtocolError) -> dict[str, Any]:
        self._last_line = time.monotonic()
        await self.health.succeeded()
        try:
            if isinstance(line, DeviceProtocolError):
                raise line
            parsed = parse_json_line(line, self.tz, device_id=self.device_id)
        except DeviceProtocolError as exc:
            self.bad_line(exc)
            return {"error": str(exc)}
        received_at = self.now()
        if parsed.type == "heartbeat" or parsed.devicetime is None:
            if parsed.battery_v is not None:
                await self.sink(ReaderBattery(self.device_id, parsed.battery_v, False, received_at))
                self.taken += 1
            return {"ack": parsed.seq}
        await self.sink(
            PatrolHit(
                reader_id=self.device_id,
                kind="network",
                tag=parsed.tag,
                devicetime=parsed.devicetime,
                received_at=received_at,
                guard=parsed.guard,
                battery_v=parsed.battery_v,
                record=parsed.seq,
                raw=parsed.raw,
            )
        )
        self.taken += 1
        return {"ack": parsed.seq}
