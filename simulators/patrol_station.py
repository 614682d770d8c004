"""A simulated checkpoint station: a real pymodbus server with RallyLog's registers
and our record log (layout: :mod:`drivers.patrol_reader.station_map`, the one source
both sides use).

One :class:`SimulatedStation` per simulated device, on the address its owner chose.
A guard's card read is :meth:`SimulatedStation.read_card`; the station keeps its last
``capacity`` records whether or not anybody is polling, as a real one keeps them on
its card. Faults are attributes changeable while it runs (STYLE.md rule 12):
``silent`` (requests get no answer), :meth:`power_cycle` (records survive),
``battery_v``/``battery_low``, ``clock_fault``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from zoneinfo import ZoneInfo

from pymodbus.constants import ExcCodes
from pymodbus.datastore import ModbusBaseDeviceContext
from pymodbus.exceptions import NoSuchIdException
from pymodbus.pdu import ModbusPDU

from drivers.patrol_reader.station_map import (
    LOG_ADDRESS,
    LOG_COUNT,
    RECORD_BASE,
    RECORD_SIZE,
    STATUS_BAT_LOW,
    STATUS_COUNT,
    STATUS_RTC_FAULT,
    encode_record,
    encode_rtc,
    pack_tag,
    record_address,
)
from gateway.events.observation import utcnow
from simulators.modbus_endpoint import Devices, ModbusEndpoint

_FC_READ_HOLDING = 0x03
_FIRMWARE = (1 << 8) | 2  # "1.2"


class SimulatedStation(ModbusEndpoint):
    """A checkpoint station on a real socket (TCP) or serial port (RTU).

    Args:
        station_id: what register 0x1 and every record say (0-99).
        tz: the zone of the station's local clock.
        now: the station's clock (aware); a test passes its own.
        host: TCP address to bind.
        port: TCP port; 0 picks a free one, kept across :meth:`power_cycle`.
        serial_port: serve Modbus RTU here instead (``host``/``port`` ignored).
        baudrate: RTU line speed (bits/s).
        unit: answer only this unit id; None answers every unit.
        capacity: records the ring keeps (the newest ones).
        battery_v: battery voltage (volts).

    Attributes:
        silent, battery_v, battery_low, clock_fault: fault knobs.
        records: every record written, ``(tag, time, battery_v)``, index = record index.
        requests: requests received since the last (re)start.

    Records are kept across :meth:`stop` and :meth:`power_cycle`.
    """

    _already_running = "simulated station already running"

    def __init__(
        self,
        *,
        station_id: int = 1,
        tz: ZoneInfo,
        now: Callable[[], dt.datetime] = utcnow,
        host: str = "127.0.0.1",
        port: int = 0,
        serial_port: str | None = None,
        baudrate: int = 9600,
        unit: int | None = 1,
        capacity: int = 64,
        battery_v: float = 4.1,
    ) -> None:
        super().__init__(host=host, port=port, serial_port=serial_port, baudrate=baudrate)
        self.station_id = station_id
        self.tz = tz
        self.now = now
        self.unit = unit
        self.capacity = capacity
        self.battery_v = battery_v
        self.battery_low = False
        self.clock_fault = False
        self.silent = False
        self.records: list[tuple[str, dt.datetime, float]] = []
        self.requests = 0
        self._memory = _StationMemory(self)

    def read_card(self, tag: str, when: dt.datetime | None = None) -> int:
        """A card (5-byte hex tag) is held to the station: write a record.

        Works whether the station is serving or not (it is the physical side).

        Returns:
            The record's index.

        Raises:
            ValueError: ``tag`` is not 10 hex digits.
        """
        pack_tag(tag)
        self.records.append((tag.upper(), when or self.now(), self.battery_v))
        return len(self.records) - 1

    # -- the wire side -----------------------------------------------------------------

    def registers(self, address: int, count: int) -> list[int] | None:
        """Holding registers ``address..address+count-1``, or None for an address we lack."""
        end = address + count
        if address >= 0 and end <= STATUS_COUNT:
            return self._status_block()[address:end]
        if address >= LOG_ADDRESS and end <= LOG_ADDRESS + LOG_COUNT:
            return self._log_block()[address - LOG_ADDRESS : end - LOG_ADDRESS]
        ring_end = RECORD_BASE + self.capacity * RECORD_SIZE
        if address >= RECORD_BASE and end <= ring_end:
            ring = self._ring()
            return ring[address - RECORD_BASE : end - RECORD_BASE]
        return None

    def _status_block(self) -> list[int]:
        status = 1 | (STATUS_BAT_LOW if self.battery_low else 0)
        status |= STATUS_RTC_FAULT if self.clock_fault else 0
        last = pack_tag(self.records[-1][0]) if self.records else [0, 0, 0]
        return [
            status,
            self.station_id,
            round(self.battery_v * 10),
            1,
            _FIRMWARE,
            *last,
            *encode_rtc(self.now(), self.tz),
        ]

    def _log_block(self) -> list[int]:
        count = len(self.records)
        return [count >> 16 & 0xFFFF, count & 0xFFFF, self.capacity, RECORD_SIZE]

    def _ring(self) -> list[int]:
        ring = [0xFFFF] + [0] * (RECORD_SIZE - 1)
        ring *= self.capacity
        first = max(0, len(self.records) - self.capacity)
        for index in range(first, len(self.records)):
            tag, when, volts = self.records[index]
            at = record_address(index, self.capacity) - RECORD_BASE
            ring[at : at + RECORD_SIZE] = encode_record(
                index, self.station_id, tag, when, volts, self.tz
            )
        return ring

    def _devices(self) -> Devices:
        return self._memory if self.unit is None else {self.unit: self._memory}

    def _reset_before_start(self) -> None:
        self.requests = 0

    def _trace_pdu(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        if not sending:
            self.requests += 1
        return pdu


class _StationMemory(ModbusBaseDeviceContext):
    """FC03 reads of the station's registers; every other function is refused."""

    def __init__(self, owner: SimulatedStation) -> None:
        self._owner = owner

    async def async_getValues(
        self, func_code: int, address: int, count: int = 1
    ) -> list[int] | list[bool] | ExcCodes:
        if self._owner.silent:
            raise NoSuchIdException("silent")  # type: ignore[no-untyped-call]  # no answer at all
        if func_code != _FC_READ_HOLDING:
            return ExcCodes.ILLEGAL_FUNCTION
        values = self._owner.registers(address, count)
        return ExcCodes.ILLEGAL_ADDRESS if values is None else values

    async def async_setValues(
        self, func_code: int, address: int, values: list[int] | list[bool]
    ) -> None | ExcCodes:
        if self._owner.silent:
            raise NoSuchIdException("silent")  # type: ignore[no-untyped-call]
        return ExcCodes.ILLEGAL_FUNCTION
