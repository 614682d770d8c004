"""Text record formats of patrol readers: CSV records of handhelds, JSON lines of apps.

**CSV record** (handheld batch upload), one read per line, the columns of
RallyLog's SD-card record (``realdata/patrol/checkpoint_station_rallylog_modbus_map.json``,
``csv_record_fields``): ``Station_Id,DateTimeStamp,RFID_Tag,Battery_Voltage``::

    7,2026-11-29 20:02:13,0400000001,3.9

``Station_Id`` is the reader's own number (0-127), ``DateTimeStamp`` its local
time without zone (``YYYY-MM-DD HH:MM:SS``; a two-digit year ``YY-MM-DD`` is
20YY, as the RallyLog RTC keeps it), ``RFID_Tag`` the tag as printed, and
``Battery_Voltage`` volts (may be empty). RallyLog does not document the time
format of its CSV; this one is ours.

**JSON line** (networked reader, phone-app bridge), one object per line, UTF-8::

    {"type": "hit", "seq": 17, "tag": "0400000001", "time": "2026-11-29T20:02:13+08:00",
     "guard": "G1", "battery_v": 3.9}
    {"type": "heartbeat", "battery_v": 3.9}

``time`` is RFC 3339 (an offset, or none for the site's local time) or UNIX
seconds (the QR-code patrol app in ``patrol_record_models_observed.json`` keeps
UNIX seconds); ``seq`` (optional) is the sender's record number and is echoed
in the gateway's ``{"ack": seq}``; ``guard`` (optional) a guard id or card;
other fields (GPS ``lat``/``lon``, ``note``) are kept in ``extra``.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass, field
from typing import Any, Literal
from zoneinfo import ZoneInfo

from gateway.errors import DeviceProtocolError
from gateway.events.patrol_observation import normalize_tag

CSV_FIELDS = ("Station_Id", "DateTimeStamp", "RFID_Tag", "Battery_Voltage")
"""The column order, as RallyLog names its CSV record fields."""
JSON_FIELDS = frozenset({"type", "seq", "tag", "time", "guard", "battery_v"})


@dataclass(frozen=True, slots=True)
class CsvRecord:
    """One CSV record line.

    Attributes:
        reader_number: column 1, the reader's own number.
        devicetime: column 2 in the site's zone.
        tag: column 3, normalized.
        battery_v: column 4 in volts, or None when empty.
        raw: the line as received.
    """

    reader_number: int
    devicetime: dt.datetime
    tag: str
    battery_v: float | None
    raw: str


@dataclass(frozen=True, slots=True)
class JsonLine:
    """One JSON line.

    Attributes:
        type: ``hit`` or ``heartbeat``.
        seq: the sender's record number, or None.
        tag: the tag read (hits), normalized; empty for a heartbeat.
        devicetime: the read's time (hits); None for a heartbeat.
        guard: guard id or card named by the sender, or None.
        battery_v: battery voltage, or None.
        extra: any other fields, as sent.
        raw: the line as received.
    """

    type: Literal["hit", "heartbeat"]
    seq: int | None
    tag: str
    devicetime: dt.datetime | None
    guard: str | None
    battery_v: float | None
    extra: dict[str, Any] = field(default_factory=dict)
    raw: str = ""


def parse_csv_record(line: str, tz: ZoneInfo, *, device_id: str) -> CsvRecord:
    """Parse one CSV record line.

    Raises:
        DeviceProtocolError: not four columns, a non-numeric reader number or
            voltage, an empty tag or a time not in one of the two formats;
            ``raw`` is the line.
    """
    raw = line.rstrip("\r\n")
    columns = [c.strip() for c in raw.split(",")]
    try:
        if len(columns) != len(CSV_FIELDS):
            raise ValueError(f"{len(columns)} columns, expected {len(CSV_FIELDS)}")
        number, stamp, tag, volts = columns
        if not tag:
            raise ValueError("empty RFID_Tag")
        fmt = "%Y-%m-%d %H:%M:%S" if len(stamp.split("-", 1)[0]) == 4 else "%y-%m-%d %H:%M:%S"
        devicetime = dt.datetime.strptime(stamp, fmt).replace(tzinfo=tz)
        return CsvRecord(
            reader_number=int(number),
            devicetime=devicetime,
            tag=normalize_tag(tag),
            battery_v=_volts(volts) if volts else None,
            raw=raw,
        )
    except ValueError as exc:
        raise DeviceProtocolError(f"bad CSV record: {exc}", device_id=device_id, raw=raw) from exc


def parse_json_line(line: str, tz: ZoneInfo, *, device_id: str) -> JsonLine:
    """Parse one JSON line.

    Raises:
        DeviceProtocolError: not a JSON object, an unknown ``type``, a hit
            without ``tag`` or ``time``, a field of the wrong type, a lone UTF-16
            surrogate (``\\ud800``: decodable, never storable), nesting too
            deep to decode or a time out of range; ``raw`` is the line.
    """
    raw = line.rstrip("\r\n")
    try:
        body = json.loads(raw)
        if not isinstance(body, dict):
            raise ValueError("not a JSON object")
        # A lone surrogate ("\ud800") decodes, but no event, log or database can
        # carry it (UnicodeEncodeError): the line is bad, not the gateway.
        json.dumps(body, ensure_ascii=False).encode()
        kind = body.get("type", "hit")
        if kind not in ("hit", "heartbeat"):
            raise ValueError(f"unknown type {kind!r}")
        seq = body.get("seq")
        if seq is not None and (not isinstance(seq, int) or isinstance(seq, bool)):
            raise ValueError("seq must be an integer")
        guard = body.get("guard")
        if guard is not None and not isinstance(guard, str):
            raise ValueError("guard must be a string")
        volts = body.get("battery_v")
        battery = None if volts is None else _volts(volts)
        tag: object = body.get("tag", "")
        devicetime = None
        if kind == "hit":
            if not isinstance(tag, str) or not tag.strip():
                raise ValueError("a hit needs a tag")
            devicetime = _json_time(body.get("time"), tz)
        if not isinstance(tag, str):
            raise ValueError("tag must be a string")
        extra = {k: v for k, v in body.items() if k not in JSON_FIELDS}
        return JsonLine(kind, seq, normalize_tag(tag), devicetime, guard, battery, extra, raw)
    except (ValueError, RecursionError, OverflowError, OSError) as exc:
        # JSONDecodeError is a ValueError; a deeply nested line overflows the decoder's
        # stack (RecursionError); a time beyond the platform's range overflows (OverflowError,
        # OSError from localtime): each is one bad line, never a crash.
        why = str(exc)[:200] if isinstance(exc, ValueError) else type(exc).__name__
        raise DeviceProtocolError(f"bad JSON line: {why}", device_id=device_id, raw=raw) from exc


def _json_time(value: object, tz: ZoneInfo) -> dt.datetime:
    if isinstance(value, bool) or value is None:
        raise ValueError("a hit needs a time")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError(f"time {value!r} is not finite")
        return dt.datetime.fromtimestamp(value, dt.UTC)
    if not isinstance(value, str):
        raise ValueError("time must be RFC 3339 text or UNIX seconds")
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=tz)


def _volts(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"battery {value!r} is not a number")
    volts = float(value)
    if not math.isfinite(volts) or not 0 <= volts <= 60:
        raise ValueError(f"battery {value!r} V is out of range")
    return volts
