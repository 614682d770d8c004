"""The ack gate alone: what it admits, how it counts, and that a flood of forged acks
makes one log line per reason and claimed source, within a bound, and one
``fault.ack_refused`` per reason a minute."""

from __future__ import annotations

import json

from structlog.testing import capture_logs

from gateway.commands.signing import sign
from gateway.delivery.ack_auth import MAX_ACK_BYTES, MAX_SOURCES, AckGate
from gateway.delivery.ack_refusals import AckRefusalReporter
from gateway.delivery.acks import StreamAck, parse_stream_ack
from gateway.events.model import EventFactory
from tests.helpers import ManualClock
from tests.patrol_support import EventLog

KEY = bytes(range(32))
TOPIC = "campus/v1/s1/gw1/ack"
ID = "01KBFQ4X8Q5P0Z8V6M2N3R4S5T"


def _signed(body: dict[str, object]) -> bytes:
    return json.dumps({**body, "signature": sign(KEY, TOPIC, body)}).encode()


def test_only_a_signed_ack_is_admitted_and_each_refusal_is_counted() -> None:
    reasons: list[str] = []
    gate = AckGate(KEY, TOPIC, reasons.append)
    assert gate.admit(_signed({"ids": [ID]}))
    assert gate.admit(_signed({"stream": "s", "up_to_seq": 3, "center": "王"}))
    assert not gate.admit(json.dumps({"ids": [ID]}).encode())
    assert not gate.admit(json.dumps({"ids": [ID], "signature": "0" * 64}).encode())
    assert not gate.admit(b"\xff not json")
    assert not gate.admit(b'{"ids": ["a"], "ids": ["b"], "signature": "00"}')  # named twice
    assert not gate.admit(b"[" * 100_000)  # deeper than the decoder's stack
    assert reasons == ["unsigned", "bad_signature", "malformed", "malformed", "malformed"]
    assert gate.refused == {"malformed": 3, "unsigned": 1, "bad_signature": 1}


def test_without_a_key_every_ack_is_admitted() -> None:
    assert AckGate(None, TOPIC).admit(b'{"ids": []}')


def test_refusals_are_logged_once_per_reason_and_source_and_the_sources_are_bounded() -> None:
    gate = AckGate(KEY, TOPIC)
    with capture_logs() as logs:
        for _ in range(3):
            gate.admit(json.dumps({"ids": [ID], "center": "c1"}).encode())
            gate.admit(json.dumps({"ids": [ID], "center": "c2"}).encode())
            gate.admit(json.dumps({"ids": [ID]}).encode())
    lines = [(e["reason"], e["source"]) for e in logs if e["event"] == "uplink.ack_refused"]
    assert lines == [("unsigned", "c1"), ("unsigned", "c2"), ("unsigned", "-")]
    with capture_logs() as logs:
        for n in range(MAX_SOURCES + 50):
            gate.admit(json.dumps({"ids": [ID], "center": f"x{n}"}).encode())
    refused = [e for e in logs if e["event"] == "uplink.ack_refused"]
    full = [e for e in logs if e["event"] == "uplink.ack_refused_sources_full"]
    assert len(refused) == MAX_SOURCES - 3 and len(full) == 1
    assert gate.refused["unsigned"] == 9 + MAX_SOURCES + 50


def test_an_ack_over_a_mib_is_refused_unread_signed_or_not() -> None:
    """A broker client cannot grow the gateway by hundreds of MB per ack (review of
    2026-12-05); an ack of thousands of ids still fits."""
    reasons: list[str] = []
    gate = AckGate(KEY, TOPIC, reasons.append)
    many = _signed({"ids": [ID] * 30_000})
    assert len(many) < MAX_ACK_BYTES and gate.admit(many)
    huge = _signed({"ids": [ID] * 40_000})
    assert len(huge) > MAX_ACK_BYTES and not gate.admit(huge)
    assert not AckGate(None, TOPIC).admit(b" " * (MAX_ACK_BYTES + 1))
    assert reasons == ["malformed"]


def test_a_stream_ack_may_write_its_seq_as_a_float_with_no_fraction() -> None:
    """``122`` and ``122.0`` are one JSON number (RFC 8785, docs/center-protocol.md);
    ``122.5``, ``true``, a string and NaN are not a seq."""
    assert parse_stream_ack(b'{"stream": "s", "up_to_seq": 122.0}') == StreamAck("s", 122)
    assert parse_stream_ack(b'{"stream": "s", "up_to_seq": 122}') == StreamAck("s", 122)
    for bad in ("122.5", "true", '"122"', "NaN", "0.0", "1e300"):
        assert parse_stream_ack(f'{{"stream": "s", "up_to_seq": {bad}}}'.encode()) is None, bad


async def test_refused_acks_are_reported_once_per_reason_then_once_a_minute() -> None:
    log, clock = EventLog(), ManualClock()
    gate = AckGate(KEY, TOPIC)
    reporter = AckRefusalReporter(
        EventFactory("campus/s1/gw1", lambda: True), log, "gw1", clock=clock
    )
    forged = json.dumps({"ids": [ID], "signature": "0" * 64, "center": "duty-9"}).encode()
    for _ in range(500):  # a flood of forged acks
        refusal = gate.check(forged)
        assert refusal is not None
        await reporter.refused(refusal)
    unsigned = gate.check(json.dumps({"ids": [ID]}).encode())
    assert unsigned is not None
    await reporter.refused(unsigned)  # another reason: reported at once
    assert gate.check(_signed({"ids": [ID]})) is None  # a good ack is not a refusal
    clock.now += 59.9
    await reporter.refused(refusal)
    clock.now += 0.2
    await reporter.refused(refusal)
    events = log.of("fault.ack_refused")
    assert [
        (e.subject, e.priority, e.data["refusal"], e.data["source"], e.data["refused_since"])
        for e in events
    ] == [
        ("gw1", 3, "bad_signature", "duty-9", 0),
        ("gw1", 3, "unsigned", "-", 0),
        ("gw1", 3, "bad_signature", "duty-9", 500),
    ]
    assert events[0].data["bytes"] == len(forged)
    assert events[0].data["state"] == "instant"
