"""Polls one checkpoint station over Modbus and hands its records to the tour engine.

Each poll reads the header (registers 0x0..0xB and 0x20..0x23,
:mod:`.station_map`), then every
record written since the last one read, by index, in as few FC03 requests as the
ring allows (at most 12 records of 10 registers per request). The station keeps
its records while the line is down, so a poll after an outage reads everything
written meanwhile: nothing is lost unless the ring wrapped (then the overwritten
records are counted in :attr:`StationPoller.overruns` and logged).

Only :class:`~drivers.modbus_io.client.ModbusLine` speaks Modbus; errors it raises:
``DeviceUnavailable`` (a failed poll) and ``DeviceProtocolError`` (a failed poll,
logged once with its raw frame; also a station id other than the configured one).
A record that does not decode is logged with its registers, counted and skipped.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from zoneinfo import ZoneInfo

import structlog
from structlog.typing import FilteringBoundLogger

from drivers.modbus_io.client import ModbusLine
from drivers.patrol_reader.health import ReaderHealth
from drivers.patrol_reader.positions import PositionStore
from drivers.patrol_reader.station_map import (
    LOG_ADDRESS,
    LOG_COUNT,
    MAX_READ,
    RECORD_SIZE,
    STATUS_ADDRESS,
    STATUS_COUNT,
    StationHeader,
    decode_header,
    decode_record,
    record_address,
)
from gateway.config.patrol import StationReaderConfig
from gateway.errors import DeviceError, DeviceProtocolError, StateError
from gateway.events.observation import utcnow
from gateway.events.patrol_observation import PatrolHit, PatrolSink, ReaderBattery


class StationPoller:
    """Reads one station for the life of the daemon; ``await poller.run()`` (cancel to stop).

    Args:
        cfg: the station's configuration.
        sink: where hits, battery readings and health transitions go (awaited).
        tz: the site's timezone (the station's clock is local time).
        positions: where the read position is kept across restarts; a fresh
            in-memory store when omitted.
        line: the Modbus line to use (shared with other units on the same RS-485
            bus); one of its own when omitted.
        logger: a structlog logger; ``device_id`` is bound to it.
        backoff_cap_s: longest wait between retries while offline (seconds).
        now: the gateway's clock (aware UTC), for receive times.

    Attributes:
        health: the reader's health state machine.
        records_read: records handed to the sink.
        overruns: records overwritten in the ring before they could be read.
        protocol_errors: bad frames and undecodable records.
        errors: unexpected exceptions caught by the loop (a failing sink, a bug).
    """

    def __init__(
        self,
        cfg: StationReaderConfig,
        sink: PatrolSink,
        tz: ZoneInfo,
        *,
        positions: PositionStore | None = None,
        line: ModbusLine | None = None,
        logger: FilteringBoundLogger | None = None,
        backoff_cap_s: float = 30.0,
        now: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self._now = now
        self.cfg = cfg
        self._sink = sink
        self._tz = tz
        self._positions = positions if positions is not None else PositionStore()
        self._line = line or ModbusLine(cfg.transport, timeout_ms=cfg.timeout_ms, name=cfg.id)
        self._log = (logger or structlog.get_logger(__name__)).bind(device_id=cfg.id)
        self.health = ReaderHealth(
            cfg.id,
            sink,
            offline_after=cfg.offline_after,
            period_s=cfg.poll_interval_ms / 1000,
            backoff_cap_s=backoff_cap_s,
            logger=self._log,
            now=now,
        )
        self._next: int | None = self._positions.get(cfg.id)
        self._battery: tuple[bool, bool] | None = None
        self._bad_frame_logged = False
        self.records_read = 0
        self.overruns = 0
        self.protocol_errors = 0
        self.errors = 0

    @property
    def next_index(self) -> int | None:
        """Index of the next record to read (None before the first successful poll)."""
        return self._next

    async def run(self) -> None:
        """Poll until cancelled; closes the line on the way out."""
        try:
            while True:
                try:
                    await self.poll()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    self.errors += 1
                    self._log.exception("patrol.station_error", errors=self.errors)
                await asyncio.sleep(self.health.next_delay())
        finally:
            await self._line.close()

    async def poll(self) -> None:
        """One poll: header, health, battery, new records."""
        try:
            header = await self._header()
        except DeviceError as exc:
            await self._failed(exc)
            return
        await self.health.succeeded()
        await self._report_battery(header)
        try:
            await self._read_new(header)
        except DeviceError as exc:
            await self._failed(exc)

    async def _header(self) -> StationHeader:
        status = await self._read(STATUS_ADDRESS, STATUS_COUNT)
        log = await self._read(LOG_ADDRESS, LOG_COUNT)
        header = decode_header(status, log, device_id=self.cfg.id)
        expected = self.cfg.station_id
        if expected is not None and header.station_id != expected:
            raise DeviceProtocolError(
                f"station id {header.station_id}, configured {expected}: wrong unit?",
                device_id=self.cfg.id,
            )
        if header.clock_bad:
            self._log.warning("patrol.station_clock_bad", status=f"{header.status:#06x}")
        return header

    async def _read_new(self, header: StationHeader) -> None:
        count, capacity = header.record_count, header.capacity
        oldest = max(0, count - capacity)
        if self._next is None or self._next > count:
            if self._next is not None:
                self._log.warning("patrol.station_log_reset", count=count, expected=self._next)
            self._next = oldest
        if self._next < oldest:
            lost = oldest - self._next
            self.overruns += lost
            self._log.error("patrol.station_overrun", lost=lost, first_lost=self._next)
            self._next = oldest
        while self._next < count:
            start = self._next
            n = min(count - start, MAX_READ // RECORD_SIZE, capacity - start % capacity)
            regs = await self._read(record_address(start, capacity), n * RECORD_SIZE)
            received_at = self._now()
            for k in range(n):
                await self._record(
                    regs[k * RECORD_SIZE : (k + 1) * RECORD_SIZE], start + k, received_at
                )
                self._next = start + k + 1
            try:
                await self._positions.save(self.cfg.id, self._next)
            except StateError as exc:
                self._log.error("patrol.positions_not_saved", error=str(exc))

    async def _record(self, regs: list[int], index: int, received_at: dt.datetime) -> None:
        try:
            record = decode_record(regs, index, self._tz, device_id=self.cfg.id)
        except DeviceProtocolError as exc:
            self.protocol_errors += 1
            self._log.warning("patrol.station_bad_record", index=index, error=str(exc), raw=exc.raw)
            return
        await self._sink(
            PatrolHit(
                reader_id=self.cfg.id,
                kind="station",
                tag=record.tag,
                devicetime=record.devicetime,
                received_at=received_at,
                battery_v=record.battery_v,
                record=record.index,
                raw=record.raw,
            )
        )
        self.records_read += 1

    async def _report_battery(self, header: StationHeader) -> None:
        state = (header.battery_low, header.battery_v < self.cfg.low_battery_v)
        if state != self._battery:
            reading = ReaderBattery(
                self.cfg.id, header.battery_v, header.battery_low, received_at=self._now()
            )
            await self._sink(reading)
            self._battery = state

    async def _read(self, address: int, count: int) -> list[int]:
        return await self._line.read_registers(
            "holding_registers", address, count, unit=self.cfg.unit, device_id=self.cfg.id
        )

    async def _failed(self, exc: DeviceError) -> None:
        if isinstance(exc, DeviceProtocolError):
            self.protocol_errors += 1
            if not self._bad_frame_logged:
                self._bad_frame_logged = True
                self._log.warning("patrol.station_bad_frame", error=str(exc), raw=exc.raw)
        await self.health.failed(str(exc))
