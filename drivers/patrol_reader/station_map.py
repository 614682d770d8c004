"""Register map of a checkpoint station: RallyLog's registers plus a record log by index.

Source of the first block: ``../shared/realdata/patrol/checkpoint_station_rallylog_modbus_map.json``
(redf3003/rallylog ``CommunicationProtocol.md``), read-only holding registers, FC03:

=======  ==============  ====================================================
address  name            meaning
=======  ==============  ====================================================
0x0      Status          bit 0 RFID on, 1 BAT_LOW, 2 SD_IN, 3-5 buttons,
                         6 LCD_BL, 8 RTC_STOPPED, 9 RTC_FAULT
0x1      Station_Id      0-99 here (the CSV doc says 0-127: the source disagrees)
0x2      Vbat            battery, 0.1 V per count
0x3      HW_VERSION
0x4      FW_VERSION      high byte major, low byte minor
0x5-0x7  Rfid_Tag        last tag read, 5 bytes packed into 3 registers
0x8-0xB  RTC             BCD bytes sec, min, hour, day, month, year (0-99), cal
=======  ==============  ====================================================

RallyLog keeps its records on an SD card and shows only the *last* tag over
Modbus. A guard-tour station must not lose a read while the line is down, so
**our stations extend the map** with the record log, read by index (this block
is ours, not RallyLog's; its fields are RallyLog's CSV record, ``Station_Id,
DateTimeStamp, RFID_Tag, Battery_Voltage``, encoded as RallyLog encodes them in
registers):

==============================  ===================================================
address                         meaning
==============================  ===================================================
0x20-0x21                       Record_Count: records ever written (32 bit, high
                                word first); record ``i`` is the ``i``-th read (0-based)
0x22                            Record_Capacity: how many of the newest records the
                                ring holds
0x23                            Record_Size: registers per record (10)
0x100 + (i mod capacity) * 10   record ``i``: index low 16 bits, Station_Id, tag
                                (3 registers), RTC (4 registers, as 0x8-0xB), Vbat
==============================  ===================================================

Byte order inside a register is big-endian (high byte first) everywhere, as
Modbus sends it; RallyLog does not document how its 5 tag bytes and 7 RTC bytes
sit in their registers, so this order is our choice, kept in this one file. The
RTC holds the station's local time without a zone, years 2000-2099. The block
starts at 0x20, clear of RallyLog's read-write registers 0xC-0x13 (Periph_Ctrl,
Station_Id_Cfg, Rtc_Cfg), which the gateway never reads or writes.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from gateway.errors import DeviceProtocolError

STATUS_ADDRESS = 0x0
STATUS_COUNT = 0xC
"""RallyLog's read-only block 0x0..0xB."""
LOG_ADDRESS = 0x20
LOG_COUNT = 4
"""Our record-log header 0x20..0x23."""
STATUS_BAT_LOW = 1 << 1
STATUS_RTC_STOPPED = 1 << 8
STATUS_RTC_FAULT = 1 << 9
RECORD_BASE = 0x100
RECORD_SIZE = 10
MAX_READ = 125
"""Most registers one FC03 request may ask for (Modbus Application Protocol §6.3)."""
TAG_BYTES = 5


@dataclass(frozen=True, slots=True)
class StationHeader:
    """Registers 0x0..0xB and 0x20..0x23 decoded.

    Attributes:
        status: the raw status word (register 0x0).
        station_id: register 0x1.
        battery_v: register 0x2 in volts.
        battery_low: status bit 1.
        clock_bad: status bit 8 (RTC stopped) or 9 (RTC fault): record times are
            not to be believed.
        firmware: ``major.minor`` from register 0x4.
        record_count: records ever written (registers 0x20-0x21).
        capacity: how many of the newest records the station still holds.
    """

    status: int
    station_id: int
    battery_v: float
    battery_low: bool
    clock_bad: bool
    firmware: str
    record_count: int
    capacity: int


@dataclass(frozen=True, slots=True)
class StationRecord:
    """One record of the log.

    Attributes:
        index: its index (0-based, counting every record ever written).
        station_id: the station that wrote it.
        tag: the tag read, 10 hex digits upper case.
        devicetime: the station's time of the read, in the site's zone.
        battery_v: battery voltage when it was written (volts).
        raw: its registers as hex words, for a log line a test can take.
    """

    index: int
    station_id: int
    tag: str
    devicetime: dt.datetime
    battery_v: float
    raw: str


def decode_header(status_regs: list[int], log_regs: list[int], *, device_id: str) -> StationHeader:
    """Decode ``STATUS_COUNT`` registers from ``STATUS_ADDRESS`` and ``LOG_COUNT`` from
    ``LOG_ADDRESS``.

    Raises:
        DeviceProtocolError: too few registers, a record size other than ours, or
            a zero capacity.
    """
    regs = list(status_regs)
    if len(regs) < STATUS_COUNT or len(log_regs) < LOG_COUNT:
        raise DeviceProtocolError(
            f"station header: {len(regs)} + {len(log_regs)} registers, "
            f"need {STATUS_COUNT} + {LOG_COUNT}",
            device_id=device_id,
            raw=hex_words([*regs, *log_regs]),
        )
    status = regs[0x0]
    count_high, count_low, capacity, size = log_regs[:LOG_COUNT]
    if size != RECORD_SIZE or capacity == 0:
        raise DeviceProtocolError(
            f"station record log: size {size} (expected {RECORD_SIZE}), capacity {capacity}",
            device_id=device_id,
            raw=hex_words(log_regs),
        )
    return StationHeader(
        status=status,
        station_id=regs[0x1],
        battery_v=regs[0x2] / 10,
        battery_low=bool(status & STATUS_BAT_LOW),
        clock_bad=bool(status & (STATUS_RTC_STOPPED | STATUS_RTC_FAULT)),
        firmware=f"{regs[0x4] >> 8}.{regs[0x4] & 0xFF}",
        record_count=(count_high << 16) | count_low,
        capacity=capacity,
    )


def record_address(index: int, capacity: int) -> int:
    """First register of record ``index`` in a ring of ``capacity`` records."""
    return RECORD_BASE + (index % capacity) * RECORD_SIZE


def decode_record(regs: list[int], index: int, tz: ZoneInfo, *, device_id: str) -> StationRecord:
    """Decode the ``RECORD_SIZE`` registers of record ``index``.

    Raises:
        DeviceProtocolError: wrong length, the slot holds another record (its
            index word differs: overwritten or not yet written), or a bad BCD time.
    """
    raw = hex_words(regs)
    if len(regs) != RECORD_SIZE:
        raise DeviceProtocolError(
            f"record {index}: {len(regs)} registers", device_id=device_id, raw=raw
        )
    if regs[0] != index & 0xFFFF:
        raise DeviceProtocolError(
            f"record {index}: slot holds record word {regs[0]:#06x}", device_id=device_id, raw=raw
        )
    try:
        devicetime = decode_rtc(regs[5:9], tz)
    except ValueError as exc:
        raise DeviceProtocolError(f"record {index}: {exc}", device_id=device_id, raw=raw) from exc
    return StationRecord(
        index=index,
        station_id=regs[1],
        tag=unpack_tag(regs[2:5]),
        devicetime=devicetime,
        battery_v=regs[9] / 10,
        raw=raw,
    )


def encode_record(
    index: int, station_id: int, tag: str, devicetime: dt.datetime, battery_v: float, tz: ZoneInfo
) -> list[int]:
    """The registers of one record (the simulator's side of :func:`decode_record`)."""
    return [
        index & 0xFFFF,
        station_id,
        *pack_tag(tag),
        *encode_rtc(devicetime, tz),
        round(battery_v * 10),
    ]


def pack_tag(tag: str) -> list[int]:
    """5 tag bytes (10 hex digits) → 3 registers, high byte first, last byte padded 0.

    Raises:
        ValueError: not 10 hex digits.
    """
    data = bytes.fromhex(tag)
    if len(data) != TAG_BYTES:
        raise ValueError(f"tag {tag!r} is not {TAG_BYTES} bytes of hex")
    padded = data + b"\x00"
    return [(padded[i] << 8) | padded[i + 1] for i in range(0, 6, 2)]


def unpack_tag(regs: list[int]) -> str:
    """3 registers → the tag as 10 upper-case hex digits."""
    data = b"".join(r.to_bytes(2, "big") for r in regs)
    return data[:TAG_BYTES].hex().upper()


def encode_rtc(t: dt.datetime, tz: ZoneInfo) -> list[int]:
    """An aware time → 4 registers of BCD bytes sec, min, hour, day, month, year, cal, 0."""
    local = t.astimezone(tz)
    fields = [local.second, local.minute, local.hour, local.day, local.month, local.year % 100]
    data = bytes(_bcd(v) for v in fields) + b"\x00\x00"
    return [(data[i] << 8) | data[i + 1] for i in range(0, 8, 2)]


def decode_rtc(regs: list[int], tz: ZoneInfo) -> dt.datetime:
    """4 RTC registers → an aware time in ``tz`` (years 2000-2099).

    Raises:
        ValueError: a nibble above 9, or a date or time that does not exist.
    """
    data = b"".join(r.to_bytes(2, "big") for r in regs)
    sec, minute, hour, day, month, year = (_unbcd(b) for b in data[:6])
    return dt.datetime(2000 + year, month, day, hour, minute, sec, tzinfo=tz)


def hex_words(regs: list[int]) -> str:
    """Registers as space-separated 4-digit hex words (``0001 04a1``)."""
    return " ".join(f"{r:04x}" for r in regs)


def _bcd(value: int) -> int:
    return ((value // 10) << 4) | (value % 10)


def _unbcd(byte: int) -> int:
    high, low = byte >> 4, byte & 0x0F
    if high > 9 or low > 9:
        raise ValueError(f"BCD byte {byte:#04x} is not two decimal digits")
    return high * 10 + low
