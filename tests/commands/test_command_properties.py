"""Hostile commands (hypothesis): any payload on any command topic gets an answer and an
audit event, and nothing acts unless it carries the site key's signature."""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from simulators.center_commands import command_payload
from tests.alarm_support import rig
from tests.hypothesis_support import json_values, nested_json

KEY = b"site-key-for-s1"
PREFIX = "campus/v1/s1/gw1"
REASONS = {"retained", "invalid", "bad_signature", "expired", "duplicate", "unknown_command",
           "rejected", "failed", "not_ready"}  # fmt: skip
ACTING = {"area.armed", "area.disarmed", "zone.bypassed", "zone.unbypassed", "output.switched"}

fields = st.dictionaries(
    st.sampled_from(
        ["correlation_id", "issued_at", "expires_at", "operator", "params", "signature", "x"]
    ),
    json_values(allow_nan=False),
    max_size=7,
)
names = st.sampled_from(["arm", "disarm", "bypass", "reset", "output", "get_state", "", "x" * 300])
payloads = st.one_of(
    st.binary(max_size=300),
    fields.map(lambda d: json.dumps(d).encode()),
    nested_json(),
)


async def _handle(tmp: Path, name: str, payload: bytes, retained: bool) -> None:
    async with rig(tmp, key=KEY) as r:
        await r.at_rest()
        before = len(r.events)
        result = await r.commands.handle(name, payload, retained)
        assert result["status"] in ("ok", "error")
        if result["status"] == "error":
            assert result["data"]["reason"] in REASONS, result
        audits = r.of("command.result")
        assert len(audits) == 1 and audits[0].data["status"] == result["status"]
        # Random bytes never carry the site key's signature: nothing may act.
        assert result["status"] == "error", result
        assert not [e for e in r.events[before:] if e.type in ACTING]


@settings(max_examples=40, deadline=None)
@given(names, payloads, st.booleans())
def test_any_unsigned_payload_is_answered_audited_and_refused(
    name: str, payload: bytes, retained: bool
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(_handle(Path(tmp), name, payload, retained))


async def _signed(tmp: Path, name: str, params: dict[str, Any]) -> None:
    async with rig(tmp, key=KEY) as r:
        await r.at_rest()
        _, payload = command_payload(f"{PREFIX}/cmd/{name}", params, key=KEY,
                                     issued_at=r.clock.now())  # fmt: skip
        result = await r.commands.handle(name, payload, False)
        assert result["status"] in ("ok", "error")
        if result["status"] == "error":
            assert result["data"]["reason"] in REASONS, result
        assert len(r.of("command.result")) == 1


PARAM_KEYS = st.sampled_from(["area", "zone", "output", "on", "reason", "duration_s", "force", "x"])


@settings(max_examples=40, deadline=None)
@given(names, st.dictionaries(PARAM_KEYS, json_values(i_json=True), max_size=4))
def test_any_signed_command_with_any_params_gets_an_answer(
    name: str, params: dict[str, Any]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(_signed(Path(tmp), name, params))
