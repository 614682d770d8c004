"""Hostile patrol reader lines (hypothesis): a record whose fields hold what the line said,
or a DeviceProtocolError carrying the line; never another exception."""

from __future__ import annotations

import json
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.patrol_reader.records import parse_csv_record, parse_json_line
from gateway.errors import DeviceProtocolError
from tests.hypothesis_support import json_values, nested_json

TZ = ZoneInfo("Asia/Shanghai")

json_lines = st.one_of(
    st.text(max_size=200),
    st.dictionaries(
        st.sampled_from(["type", "seq", "tag", "time", "guard", "battery_v", "x"]),
        json_values(),
        max_size=6,
    ).map(lambda d: json.dumps(d, allow_nan=True)),
    nested_json().map(bytes.decode),  # nested too deep
)
csv_lines = st.one_of(
    st.text(max_size=120),
    st.lists(
        st.text(st.characters(blacklist_characters=",\r\n"), max_size=24), min_size=4, max_size=4
    ).map(",".join),
)


@settings(max_examples=150, deadline=None)
@given(json_lines)
def test_any_json_line_parses_soundly_or_is_refused(line: str) -> None:
    try:
        rec = parse_json_line(line, TZ, device_id="app")
    except DeviceProtocolError as exc:
        assert exc.device_id == "app" and exc.raw == line.rstrip("\r\n")
        return
    body = json.loads(line)
    assert rec.type == body.get("type", "hit")
    if rec.type == "hit":
        assert rec.tag and rec.devicetime is not None and rec.devicetime.tzinfo is not None
    assert rec.battery_v is None or 0 <= rec.battery_v <= 60


@settings(max_examples=150, deadline=None)
@given(csv_lines)
def test_any_csv_line_parses_soundly_or_is_refused(line: str) -> None:
    try:
        rec = parse_csv_record(line, TZ, device_id="handheld")
    except DeviceProtocolError as exc:
        assert exc.device_id == "handheld" and exc.raw == line.rstrip("\r\n")
        return
    number, _stamp, tag, _volts = (c.strip() for c in line.rstrip("\r\n").split(","))
    assert rec.reader_number == int(number) and rec.tag and tag
    assert rec.devicetime.tzinfo is TZ
    assert rec.battery_v is None or 0 <= rec.battery_v <= 60
