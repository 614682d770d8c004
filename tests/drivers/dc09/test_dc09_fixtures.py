"""Our own small DC-09 fixtures (``tests/fixtures/dc09/``): one frame per dialect the
receiver takes, and a few it must not. They run everywhere (no ``../shared``
needed); their CRCs are checked here by a bit-by-bit CRC-16/ARC written from the
catalogue's definition, independent of the library the driver uses."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from drivers.dc09 import writer
from drivers.dc09.frame import FrameError, parse_frame
from gateway.config.panels import PanelConfig
from simulators.dc09_link import PanelLink
from tests.helpers import FIXTURES_PATH
from tests.panels_support import Sink, receiving

FIXTURES = FIXTURES_PATH / "dc09"
WHEN = datetime(2026, 11, 29, 7, 0, 1, tzinfo=UTC)
SENTINEL = writer.build("NULL", "0000", line="0", account="5E17", body="]")


def reference_crc(data: bytes) -> int:
    """CRC-16/ARC bit by bit: poly 0x8005 reflected (0xA001), init 0, no final XOR."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def _frames() -> list[dict[str, Any]]:
    index = json.loads((FIXTURES / "dialects.index.json").read_text(encoding="utf-8"))
    lines = (FIXTURES / "dialects.txt").read_text(encoding="latin-1").splitlines()
    frames: list[dict[str, Any]] = index["frames"]
    assert [f["line"] for f in frames] == lines
    return frames


def test_the_reference_crc_is_the_catalogue_s() -> None:
    assert reference_crc(b"123456789") == 0xBB3D


@pytest.mark.parametrize("entry", _frames(), ids=lambda e: e["note"][:40])
def test_each_fixture_frame_is_taken_or_refused_as_its_index_says(entry: dict[str, Any]) -> None:
    raw = entry["line"].encode("latin-1")
    if not entry["valid"]:
        with pytest.raises(FrameError):
            parse_frame(raw)
        return
    frame = parse_frame(raw)
    span = raw[8:]
    sent = int(entry["line"][:4], 16)
    with_cr = "crc_with_cr" in frame.deviations
    assert sent == reference_crc(span + b"\r" if with_cr else span)


async def test_each_fixture_frame_gets_its_answer_over_tcp(tmp_path: Path) -> None:
    key = tmp_path / "5678.key"
    key.write_text("CampusGateway128", encoding="utf-8")
    panels = [
        PanelConfig(id="plain", account="1234", supervision_s=3600),
        PanelConfig(id="keyed", account="5678", supervision_s=3600, key_file=key),
        PanelConfig(id="sentinel", account="5E17", supervision_s=3600),
    ]
    sink = Sink()
    answers = []
    async with receiving(panels, sink, now=lambda: WHEN) as (_, tcp, _):
        link = PanelLink("127.0.0.1", tcp.port)
        for entry in _frames():
            await link.send(b"\n" + entry["line"].encode("latin-1") + b"\r" + SENTINEL)
            first = await link.next_answer(5)
            assert first is not None
            token = None if b"#5E17" in first else parse_frame(first).token
            if token is not None:
                assert await link.next_answer(5) is not None
            answers.append(token)
        await link.close()
    assert answers == [entry.get("answer") for entry in _frames()]
    codes = [r.code for m in sink.messages() for r in m.reports]
    expected = [c for e in _frames() if e.get("answer") == "ACK" for c in e["codes"]]
    assert codes == expected
