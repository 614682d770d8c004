"""The real DC-09 captures (``../shared/realdata/dc09/*.txt``), read in place.

Every frame its index marks valid — CRC and length right, or wrong only in a way
the README documents (Eldes's ``<CR>`` in the CRC and length, a decimal length) —
is decoded to the meaning its index gives; the encrypted ones with the keys the
README names. Every frame goes through a real receiver over TCP, and gets the
answer the standard requires: ``ACK`` for a message taken, ``NAK`` for one that
cannot be decrypted, nothing for a frame with a bad CRC or length, nothing for an
answer sent to a receiver. A NULL link test of another panel follows each frame
on the same connection, so "no answer" is seen, not waited for.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from drivers.dc09 import writer
from drivers.dc09.content import parse_plain
from drivers.dc09.frame import FrameError, parse_frame
from gateway.config.panels import PanelConfig
from gateway.events.panel_observation import PanelMessage, PanelReport
from simulators.dc09_link import PanelLink
from tests.panels_support import Sink, receiving

# The keys the README names for the decryptable samples (ASCII bytes, not hex).
KEYS = {"AAA": "aaaaaaaaaaaaaaaa", "AAAB": "AAAAAAAAAAAAAAAA", "12345": "0123456789ABCDEF"}
SENTINEL = writer.build("NULL", "0000", line="0", account="5E17", body="]")


def _t(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def sia(code: str, **kw: Any) -> PanelReport:
    return PanelReport(protocol="SIA-DCS", code=code, **kw)


def cid(code: str, q: str, partition: int, number: int) -> PanelReport:
    return PanelReport(
        protocol="ADM-CID", code=code, qualifier=q, partition=partition, number=number
    )  # type: ignore[arg-type]


ITALIAN = "$PR,SCOMPARSA          ,Centrale,Zona1,ROtTe.6MyLittlPoint"
AJAX, ELDES, FIOLETOVEN = (
    "ajax_and_other_panels.txt",
    "eldes_adm_cid.txt",
    "fioletoven_dc09_tests.txt",
)
IOBROKER, PYSIA = "iobroker_sia_test_files.txt", "pysiaalarm_test_vectors.txt"
RP = (sia("RP", partition=0, number=0),)
DOWNLOAD_ABORT = (cid("900", "new", 0, 1),)


def _ut(date: str, time: str) -> tuple[PanelReport, ...]:
    modifiers = (("pi", "0006"), ("da", date), ("ti", time))
    return (sia("UT", partition=0, number=0, text=ITALIAN, modifiers=modifiers),)


Meaning = tuple[str | None, str, str, tuple[PanelReport, ...] | None, str | None]
# (file, line) → (answer, account, seq, reports, devicetime) as the index interprets it;
# reports None: not a message (a NULL, an answer, or one that cannot be decrypted).
MEANING: dict[tuple[str, int], Meaning] = {
    (AJAX, 1): ("ACK", "AAA", "0004", RP, "2023-02-20T09:10:30"),
    (AJAX, 2): ("NAK", "ABC", "0373", None, None),  # key unknown
    (AJAX, 3): ("NAK", "ABC", "0373", None, None),
    (AJAX, 4): ("NAK", "ABC", "0373", None, None),
    (AJAX, 5): ("ACK", "AAA", "0016", RP, "2024-10-04T08:19:22"),
    (AJAX, 6): ("ACK", "AAAB", "0000", None, "2020-07-05T18:25:49"),
    (AJAX, 7): ("ACK", "8312", "0000", None, None),
    (AJAX, 8): ("ACK", "foc7688", "6616", (cid("351", "new", 1, 0),), None),
    (AJAX, 9): (None, "A0", "0000", None, "2019-08-07T16:56:28"),
    (ELDES, 1): ("ACK", "9999", "0056", DOWNLOAD_ABORT, None),
    (ELDES, 2): ("ACK", "9999", "0058", DOWNLOAD_ABORT, None),
    (ELDES, 3): ("ACK", "9999", "0059", DOWNLOAD_ABORT, None),
    (ELDES, 4): ("ACK", "9999", "0061", (cid("602", "new", 0, 1),), None),
    (FIOLETOVEN, 1): ("ACK", "1234", "0001", (sia("RR", text="test"),), None),
    (FIOLETOVEN, 2): ("ACK", "1234", "0001", (), None),
    (FIOLETOVEN, 3): (None, "A0", "0000", None, "2025-09-24T16:20:01"),
    (IOBROKER, 1): ("ACK", "12345", "0005", _ut("10-25-18", "14:37:53"), "2018-10-25T12:37:53"),
    (IOBROKER, 2): ("ACK", "12345", "0018", _ut("10-26-18", "09:50:24"), "2018-10-26T07:50:26"),
    (PYSIA, 5): ("ACK", "4F39", "0247", (cid("401", "restore", 1, 57),), None),
    (PYSIA, 10): ("NAK", "123F", "6879", None, None),  # key unknown
    (PYSIA, 14): ("ACK", "AAAB", "0000", None, "2020-07-05T18:24:52"),
    (PYSIA, 16): ("ACK", "7890", "0000", None, "2022-12-29T22:13:29"),
}


def _valid(check: dict[str, Any]) -> bool:
    """Valid by the book or by a deviation the README documents."""
    if not check.get("framed"):
        return False
    crc = check["crc_ok"] or check["crc_ok_if_CR_included"]
    with_cr = not check["crc_ok"] and check["crc_ok_if_CR_included"]
    sent, calc = int(check["len_sent"], 16), int(check["len_calc"], 16)
    length = (
        check["len_ok"] or check["len_matches_if_read_as_decimal"] or (with_cr and sent == calc + 1)
    )
    return bool(crc and length)


def _frames(realdata: Path) -> list[tuple[str, int, str, bool]]:
    out = []
    for index in sorted((realdata / "dc09").glob("*.index.json")):
        text = index.name.replace(".index.json", ".txt")
        lines = (realdata / "dc09" / text).read_text(encoding="latin-1").splitlines()
        entries = json.loads(index.read_text(encoding="utf-8"))["frames"]
        assert len(entries) == len(lines), text
        for n, (entry, line) in enumerate(zip(entries, lines, strict=True), 1):
            assert entry["line"] == line, (text, n)
            out.append((text, n, line, _valid(entry["check"])))
    return out


def test_every_valid_capture_is_decoded_to_its_indexed_meaning(realdata: Path) -> None:
    frames = _frames(realdata)
    valid = {(f, n) for f, n, _, ok in frames if ok}
    assert valid == set(MEANING), "the index and this test disagree on which frames are valid"
    for name, n, line, ok in frames:
        if not ok:
            with pytest.raises(FrameError):
                parse_frame(line.encode("latin-1"))
            continue
        frame = parse_frame(line.encode("latin-1"))
        _, account, seq, _, stamp = MEANING[(name, n)]
        assert (frame.account, frame.seq) == (account, seq), (name, n)
        if not frame.encrypted and stamp is not None:
            assert parse_plain(frame.body).devicetime() == _t(stamp), (name, n)


def test_the_deviations_are_the_documented_ones(realdata: Path) -> None:
    by_line = {(f, n): line for f, n, line, ok in _frames(realdata) if ok}
    deviations = {
        key: parse_frame(line.encode("latin-1")).deviations for key, line in by_line.items()
    }
    assert {k for k, d in deviations.items() if d} == {
        (ELDES, 1), (ELDES, 2), (ELDES, 3), (ELDES, 4), (PYSIA, 5),
    }  # fmt: skip
    assert deviations[(ELDES, 1)] == ("crc_with_cr",)
    assert deviations[(PYSIA, 5)] == ("decimal_length",)


@pytest.mark.timeout(60)
async def test_every_capture_gets_the_answer_the_standard_requires(
    realdata: Path, tmp_path: Path
) -> None:
    for name, n, line, ok in _frames(realdata):
        raw = line.encode("latin-1")
        expected = MEANING[(name, n)] if ok else (None, "", "", None, None)
        answer, account, _, reports, stamp = expected
        panels = [_panel(tmp_path, "sentinel", "5E17")]
        if ok and account != "A0":
            key = KEYS.get(account) if '"*' in line else None
            panels.append(_panel(tmp_path, "captured", account, key))
        sink = Sink()
        clock = _t(stamp) if stamp else datetime(2026, 1, 1, tzinfo=UTC)
        async with receiving(panels, sink, now=lambda at=clock: at) as (_, tcp, _):
            link = PanelLink("127.0.0.1", tcp.port)
            await link.send(b"\n" + raw + b"\r" + SENTINEL)
            first = await link.next_answer(5)
            assert first is not None, (name, n)
            got = None if b"#5E17" in first else first[9:13].decode().strip('*"')
            if got is not None:
                assert await link.next_answer(5) is not None  # then the sentinel's ACK
            await link.close()
        assert got == answer, (name, n, first)
        messages = [m for m in sink.messages() if m.panel_id == "captured"]
        if reports is not None:
            (message,) = messages
            _assert_meaning(message, reports, stamp, (name, n))
        elif answer != "ACK":
            assert messages == [], (name, n)


def _assert_meaning(
    message: PanelMessage, reports: tuple[PanelReport, ...], stamp: str | None, where: object
) -> None:
    assert message.reports == reports, where
    assert message.unparsed is None, where
    assert message.devicetime == (_t(stamp) if stamp else None), where


def _panel(tmp_path: Path, panel_id: str, account: str, key: str | None = None) -> PanelConfig:
    extra: dict[str, Any] = {}
    if key is not None:
        path = tmp_path / f"{panel_id}.key"
        path.write_text(key, encoding="utf-8")
        extra["key_file"] = path
    return PanelConfig(id=panel_id, account=account, supervision_s=3600, **extra)
