"""The signing recipe as outsiders implement it: RFC 8785 over the parsed payload,
bound to the topic; RFC 3339 times in either case; a member named twice refused."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
from pathlib import Path

import pytest

from gateway.commands.signing import DuplicateKeyError, loads, sign, signing_input, verify
from gateway.events.model import parse_rfc3339
from simulators.center_commands import command_payload
from tests.alarm_support import rig

KEY = bytes(range(32))
PREFIX = "campus/v1/s1/gw1"
TOPIC = f"{PREFIX}/cmd/disarm"


def _hmac(key: bytes, topic: str, canonical: bytes) -> str:
    return hmac.new(key, topic.encode() + b"\n" + canonical, hashlib.sha256).hexdigest()


def test_a_non_ascii_operator_signed_over_its_rfc8785_form_verifies() -> None:
    """RFC 8785 §3.2.2.2: non-ASCII is written as UTF-8, never escaped. A center that
    sends ``\\u738b`` escapes (Python's default ``ensure_ascii=True``) still verifies:
    both sides sign the parsed value."""
    canonical = '{"operator":"王警官","params":{"area":"A"}}'.encode()
    body = {"operator": "王警官", "params": {"area": "A"}}
    body["signature"] = _hmac(KEY, TOPIC, canonical)
    escaped = json.dumps(body, ensure_ascii=True).encode()
    assert b"\\u738b" in escaped
    assert verify(KEY, TOPIC, loads(escaped))
    assert verify(KEY, TOPIC, loads(json.dumps(body, ensure_ascii=False).encode()))


def test_a_number_sent_as_5_0_verifies_as_5() -> None:
    """RFC 8785 §3.2.2.3 writes numbers as ECMAScript does: 5.0 is ``5``, 1e21 is ``1e+21``."""
    canonical = b'{"params":{"big":1e+21,"duration_s":5}}'
    signature = _hmac(KEY, TOPIC, canonical)
    payload = b'{"params": {"duration_s": 5.0, "big": 1E21}, "signature": "%s"}'
    assert signing_input(TOPIC, loads(payload % signature.encode())) == TOPIC.encode() + b"\n" + (
        canonical
    )
    assert verify(KEY, TOPIC, loads(payload % signature.encode()))
    assert verify(KEY, TOPIC, loads(payload % signature.upper().encode()))  # hex in either case


def test_the_signature_binds_topic_key_and_every_member() -> None:
    body = {"correlation_id": "c-1", "params": {"area": "A"}}
    body["signature"] = sign(KEY, TOPIC, body)
    assert verify(KEY, TOPIC, body)
    assert not verify(KEY, f"{PREFIX}/cmd/arm", body)
    assert not verify(KEY, "campus/v1/s2/gw1/cmd/disarm", body)
    assert not verify(bytes(32), TOPIC, body)
    assert not verify(KEY, TOPIC, {**body, "params": {"area": "B"}})
    assert not verify(KEY, TOPIC, {k: v for k, v in body.items() if k != "signature"})


def test_a_value_rfc8785_cannot_represent_has_no_valid_signature() -> None:
    """I-JSON (RFC 7493) integers stop at 2^53; Python parses NaN: neither can be signed."""
    for payload in (
        b'{"n": 9007199254740993, "signature": "00"}',
        b'{"n": NaN, "signature": "00"}',
    ):
        assert verify(KEY, TOPIC, loads(payload)) is False


def test_a_member_named_twice_is_refused() -> None:
    """Two parsers may keep different copies: the gateway reads no such payload."""
    with pytest.raises(DuplicateKeyError):
        loads(b'{"params": {"area": "A"}, "params": {"area": "B"}}')
    with pytest.raises(DuplicateKeyError):
        loads(b'{"ids": ["x"], "nested": {"a": 1, "a": 2}}')


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-02T16:00:00Z", dt.datetime(2026, 12, 2, 16, tzinfo=dt.UTC)),
        ("2026-12-02t16:00:00z", dt.datetime(2026, 12, 2, 16, tzinfo=dt.UTC)),
        ("2026-12-02t16:00:00.5+08:00", dt.datetime(2026, 12, 2, 8, 0, 0, 500000, tzinfo=dt.UTC)),
        (
            "2026-12-02T16:00:00.123456789-00:30",
            dt.datetime(2026, 12, 2, 16, 30, 0, 123456, dt.UTC),
        ),
    ],
)
def test_rfc3339_times_are_read_in_either_case(text: str, expected: dt.datetime) -> None:
    assert parse_rfc3339(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "2026-12-02T16:00:00",  # no offset
        "2026-12-02 16:00:00Z",  # a space for T
        "20261202T160000Z",  # ISO 8601 basic format
        "2026-02-30T16:00:00Z",  # no such day
        "2026-12-02T16:00:00+24:00",
    ],
)
def test_what_is_not_rfc3339_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"RFC 3339|day|range|must be"):
        parse_rfc3339(text)


async def test_a_command_with_lower_case_t_and_z_is_carried_out(tmp_path: Path) -> None:
    async with rig(tmp_path, key=KEY) as r:
        await r.at_rest()
        now = r.clock.now().astimezone(dt.UTC)
        body = {
            "correlation_id": "lower-1",
            "issued_at": now.strftime("%Y-%m-%dt%H:%M:%S.000z"),
            "expires_at": (now + dt.timedelta(seconds=30)).strftime("%Y-%m-%dt%H:%M:%Sz"),
            "operator": "李",
            "params": {"area": "A"},
        }
        body["signature"] = sign(KEY, TOPIC, body)
        result = await r.commands.handle("disarm", json.dumps(body).encode(), False)
        assert result["status"] == "ok", result
        assert not r.system.areas.armed("A")


async def test_a_command_naming_a_member_twice_is_refused_as_invalid(tmp_path: Path) -> None:
    async with rig(tmp_path, key=KEY) as r:
        _, payload = command_payload(TOPIC, {"area": "A"}, key=KEY, issued_at=r.clock.now())
        doubled = payload[:-1] + b', "params": {"area": "B"}}'
        result = await r.commands.handle("disarm", doubled, False)
    assert result["status"] == "error" and result["data"] == {"reason": "invalid"}, result
