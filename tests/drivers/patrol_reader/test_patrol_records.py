"""Record formats of patrol readers: our own small fixtures, then the real files.

Fixtures (``tests/fixtures/patrol/``, made here, not copied): a handheld CSV upload,
JSON lines of a phone-app bridge, a station register dump. The real files of
``../shared/realdata/patrol/`` describe layouts rather than carry captures; the
tests against them check that our layout and field order follow them.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from drivers.patrol_reader.records import (
    CSV_FIELDS,
    parse_csv_record,
    parse_json_line,
)
from drivers.patrol_reader.station_map import (
    LOG_ADDRESS,
    LOG_COUNT,
    STATUS_BAT_LOW,
    STATUS_COUNT,
    STATUS_RTC_FAULT,
    STATUS_RTC_STOPPED,
    decode_header,
    decode_record,
    decode_rtc,
    encode_record,
    pack_tag,
    unpack_tag,
)
from gateway.errors import DeviceProtocolError
from tests.helpers import FIXTURES_PATH
from tests.patrol_support import TZ

FIXTURES = FIXTURES_PATH / "patrol"


def _lines(name: str) -> list[str]:
    return (FIXTURES / name).read_text(encoding="utf-8").splitlines()


def test_handheld_csv_fixture() -> None:
    records, errors = [], []
    for line in _lines("handheld_upload.csv"):
        if not line.strip() or line.startswith("#"):
            continue
        try:
            records.append(parse_csv_record(line, TZ, device_id="wand"))
        except DeviceProtocolError as exc:
            errors.append(exc)
    assert [r.tag for r in records] == ["A1B2C3D4E5", "0400000001", "0400000002", "0400000003"]
    assert {r.reader_number for r in records} == {7}
    assert records[1].devicetime == dt.datetime(2026, 11, 29, 20, 1, 5, tzinfo=TZ)
    assert records[2].devicetime.year == 2026  # two-digit year, as the RallyLog RTC keeps it
    assert [r.battery_v for r in records] == [3.9, 3.9, 3.8, None]
    (bad,) = errors
    assert bad.raw == "7,2026-11-29 20:3x:00,0400000004,3.8" and bad.device_id == "wand"


def test_network_json_lines_fixture() -> None:
    parsed, errors = [], []
    for line in _lines("network_lines.jsonl"):
        try:
            parsed.append(parse_json_line(line, TZ, device_id="app"))
        except DeviceProtocolError as exc:
            errors.append(exc)
    hit1, hit2, hit3, heartbeat = parsed
    assert hit1.devicetime == dt.datetime(2026, 11, 29, 12, 1, 5, tzinfo=dt.UTC)
    assert (hit1.guard, hit1.battery_v, hit1.seq) == ("G1", 3.9, 1)
    assert hit2.type == "hit" and hit2.devicetime == dt.datetime(
        2026, 11, 29, 20, 12, 30, tzinfo=TZ
    )
    assert hit2.extra == {"lat": 31.2304, "lon": 121.4737}
    assert hit3.devicetime == dt.datetime(2026, 11, 29, 20, 21, 59, tzinfo=TZ)  # UNIX seconds
    assert heartbeat.type == "heartbeat" and heartbeat.battery_v == 3.7 and heartbeat.tag == ""
    assert [str(e).split(": ", 1)[1] for e in errors] == [
        "bad JSON line: a hit needs a time",
        "bad JSON line: not a JSON object",
    ]


_CSV, _JSON = "bad CSV record", "bad JSON line"


@pytest.mark.parametrize(
    ("kind", "line"),
    [
        (_CSV, "7,2026-11-29 20:00:00,0400000001"),
        (_CSV, "x,2026-11-29 20:00:00,04,3.9"),
        (_CSV, "7,2026-11-29 20:00:00,,3.9"),
        (_JSON, '{"type": "punch", "tag": "1"}'),
        (_JSON, '{"tag": "1", "time": true}'),
        (_JSON, '{"tag": 5, "time": 0}'),
        (_JSON, '{"tag": "1", "time": 0, "battery_v": "lots"}'),
        (_JSON, '{"tag": "1", "time": 0, "seq": "7"}'),
        (_JSON, "not json"),
        (_JSON, '{"tag": "\\ud800", "time": 0}'),  # a lone surrogate: never storable
        (_JSON, '{"tag": "1", "time": 0, "note": "\\udfff"}'),
    ],
)
def test_bad_records_raise_protocol_errors_with_the_raw_line(kind: str, line: str) -> None:
    parse = parse_csv_record if kind == _CSV else parse_json_line
    with pytest.raises(DeviceProtocolError, match=kind) as info:
        parse(line, TZ, device_id="r1")
    assert info.value.raw == line and info.value.device_id == "r1"


def test_station_register_fixture() -> None:
    dump = json.loads((FIXTURES / "station_registers.json").read_text(encoding="utf-8"))
    header = decode_header(dump["status_0x0"], dump["log_0x20"], device_id="st")
    assert (header.station_id, header.battery_v, header.battery_low) == (12, 3.4, True)
    assert (header.record_count, header.capacity, header.firmware) == (70, 64, "1.2")
    assert not header.clock_bad
    assert decode_rtc(dump["status_0x0"][8:12], TZ) == dt.datetime(
        2026, 11, 29, 20, 22, 15, tzinfo=TZ
    )
    for entry in dump["records"]:
        record = decode_record(entry["registers"], entry["index"], TZ, device_id="st")
        expected = entry["expected"]
        assert record.station_id == expected["station_id"] and record.tag == expected["tag"]
        assert record.devicetime == dt.datetime.fromisoformat(expected["devicetime"])
        assert record.battery_v == expected["battery_v"]
        again = encode_record(
            record.index, record.station_id, record.tag, record.devicetime, record.battery_v, TZ
        )
        assert again == entry["registers"]


def test_station_decode_errors() -> None:
    good = encode_record(5, 1, "0400000001", dt.datetime(2026, 11, 29, 20, 0, tzinfo=TZ), 3.9, TZ)
    with pytest.raises(DeviceProtocolError, match="slot holds record word 0x0005"):
        decode_record(good, 69, TZ, device_id="st")
    bad_bcd = [*good[:5], 0x5A00, *good[6:]]
    with pytest.raises(DeviceProtocolError, match="BCD byte 0x5a") as info:
        decode_record(bad_bcd, 5, TZ, device_id="st")
    assert info.value.raw.startswith("0005 0001 0400")
    with pytest.raises(DeviceProtocolError, match="size 8"):
        decode_header([0] * STATUS_COUNT, [0, 1, 64, 8], device_id="st")
    with pytest.raises(DeviceProtocolError, match="registers"):
        decode_header([0] * 3, [0] * LOG_COUNT, device_id="st")
    with pytest.raises(ValueError, match="not 5 bytes"):
        pack_tag("0400")
    assert unpack_tag(pack_tag("a1b2c3d4e5")) == "A1B2C3D4E5"


# -- the real files (../shared/realdata/patrol) --------------------------------------


def test_csv_columns_follow_rallylog_record_fields(realdata: Path) -> None:
    spec = json.loads(
        (realdata / "patrol" / "checkpoint_station_rallylog_modbus_map.json").read_text("utf-8")
    )
    fields = [f["name"] for f in sorted(spec["csv_record_fields"], key=lambda f: f["col"])]
    assert tuple(fields) == CSV_FIELDS


def test_station_map_follows_rallylog_registers(realdata: Path) -> None:
    spec = json.loads(
        (realdata / "patrol" / "checkpoint_station_rallylog_modbus_map.json").read_text("utf-8")
    )
    read_only = {r["name"]: r for r in spec["modbus_rtu_registers"]["read_only_fc03"]}
    assert int(read_only["Status"]["addr"], 16) == 0
    bits = read_only["Status"]["bits"]
    assert "1 BAT_LOW" in bits and "8 RTC_STOPPED" in bits and "9 RTC_FAULT" in bits
    assert (STATUS_BAT_LOW, STATUS_RTC_STOPPED, STATUS_RTC_FAULT) == (1 << 1, 1 << 8, 1 << 9)
    assert int(read_only["Station_Id"]["addr"], 16) == 1
    assert read_only["Vbat"]["unit"] == "0.1 V" and int(read_only["Vbat"]["addr"], 16) == 2
    assert read_only["Rfid_Tag"]["addr"] == "0x5-0x7" and "5 bytes" in read_only["Rfid_Tag"]["note"]
    assert read_only["RTC"]["addr"] == "0x8-0xB" and STATUS_COUNT == 0xC
    assert "sec,min,hour,day,month,year" in read_only["RTC"]["note"]
    # our record log must not overlap RallyLog's read-write registers
    read_write = spec["modbus_rtu_registers"]["read_write_fc03_fc06"]
    last = max(int(r["addr"].split("-")[-1], 16) for r in read_write)
    assert last < LOG_ADDRESS


def test_json_lines_accept_the_observed_time_forms(realdata: Path) -> None:
    models = json.loads(
        (realdata / "patrol" / "patrol_record_models_observed.json").read_text("utf-8")
    )["models"]
    qr_app = next(m for m in models if m["system"].startswith("jjhy-xunjian"))
    assert "UNIX seconds" in qr_app["fields"]["time"]
    saas = next(m for m in models if m["system"].startswith("PatrolTech"))
    assert "time (UTC)" in saas["scan_fields"]
    unix = parse_json_line('{"tag": "x", "time": 1795954919}', TZ, device_id="app")
    utc = parse_json_line('{"tag": "x", "time": "2026-11-29T12:21:59Z"}', TZ, device_id="app")
    assert unix.devicetime == utc.devicetime
