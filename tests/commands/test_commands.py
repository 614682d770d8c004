"""Commands from the center, checked and carried out by the alarm system: refusals
(bad signature, expired, retained, replayed, malformed), every command's result
and its audit event."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from gateway.commands.signing import sign, verify
from simulators.center_commands import command_payload
from tests.alarm_support import Rig, rig

KEY = b"site-key-for-s1"
PREFIX = "campus/v1/s1/gw1"


async def _send(
    r: Rig, name: str, params: dict[str, Any] | None = None, *, retained: bool = False, **kw: Any
) -> dict[str, Any]:
    kw.setdefault("key", KEY)
    kw.setdefault("issued_at", r.clock.now())
    _, payload = command_payload(f"{PREFIX}/cmd/{name}", params, **kw)
    return await r.commands.handle(name, payload, retained)


def _audits(r: Rig) -> list[dict[str, Any]]:
    return [dict(e.data) for e in r.of("command.result")]


async def test_a_good_signed_command_acts_and_answers_with_its_correlation_id(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path, key=KEY) as r:
        await r.at_rest()
        result = await _send(r, "disarm", {"area": "A"}, correlation_id="c-1", operator="王警官")
        assert not r.system.areas.armed("A")
    assert result == {
        "correlation_id": "c-1",
        "status": "ok",
        "data": {"area": "A", "armed": False, "changed": True, "silenced": []},
    }
    (audit,) = _audits(r)
    assert audit["command"] == "disarm" and audit["operator"] == "王警官"
    assert audit["status"] == "ok" and audit["signed"] and audit["params"] == {"area": "A"}
    assert "signature" not in json.dumps(audit)
    assert r.of("area.disarmed", "A")[0].data["by"] == "王警官"


@pytest.mark.parametrize(
    ("case", "kwargs", "reason"),
    [
        ("bad signature", {"key": b"not-the-site-key"}, "bad_signature"),
        ("unsigned", {"key": None}, "bad_signature"),
        ("expired", {"ttl_s": 30, "issued_at_offset": -60}, "expired"),
        ("retained", {"retained": True}, "retained"),
        ("from the future", {"issued_at_offset": 3600}, "invalid"),
        ("too long lived", {"ttl_s": 7 * 86400}, "invalid"),
    ],
)
async def test_a_refused_command_gets_an_error_result_and_an_audit_event(
    tmp_path: Path, case: str, kwargs: dict[str, Any], reason: str
) -> None:
    async with rig(tmp_path, key=KEY) as r:
        offset = kwargs.pop("issued_at_offset", 0)
        kwargs["issued_at"] = r.clock.now() + dt.timedelta(seconds=offset)
        result = await _send(r, "disarm", {"area": "A"}, correlation_id="c-9", **kwargs)
        assert r.system.areas.armed("A"), case  # nothing happened
    assert result["correlation_id"] == "c-9"
    assert result["status"] == "error" and result["data"] == {"reason": reason}, result
    (audit,) = _audits(r)
    assert (audit["status"], audit["reason"], audit["correlation_id"]) == ("error", reason, "c-9")
    assert r.of("area.disarmed") == []


async def test_a_replayed_command_is_refused(tmp_path: Path) -> None:
    async with rig(tmp_path, key=KEY) as r:
        _, payload = command_payload(
            f"{PREFIX}/cmd/ping", key=KEY, issued_at=r.clock.now(), correlation_id="once"
        )
        first = await r.commands.handle("ping", payload, False)
        again = await r.commands.handle("ping", payload, False)
    assert first["status"] == "ok" and first["data"]["pong"] is True
    assert again["status"] == "error" and again["data"]["reason"] == "duplicate"


async def test_a_command_replayed_after_a_restart_is_still_refused(tmp_path: Path) -> None:
    """The replay guard lives in the state file: a restart does not reopen the window."""
    async with rig(tmp_path, key=KEY) as r:
        start = r.clock.now()
        _, payload = command_payload(
            f"{PREFIX}/cmd/disarm", {"area": "A"}, key=KEY, issued_at=start, correlation_id="c-7"
        )
        first = await r.commands.handle("disarm", payload, False)
    async with rig(tmp_path, key=KEY, start=start + dt.timedelta(seconds=5)) as again:
        replayed = await again.commands.handle("disarm", payload, False)
    assert first["status"] == "ok"
    assert replayed["status"] == "error" and replayed["data"]["reason"] == "duplicate"


async def test_after_a_restart_a_forgotten_id_leaves_its_issue_time_as_the_floor(
    tmp_path: Path,
) -> None:
    """Review of 2026-12-05: a ping (ttl 20 s) before a restart, forgotten after it,
    left its *expiry* as the replay floor, so a fresh command issued 8 s before now
    (a center clock behind the gateway's, a message delayed in the broker) was refused
    as a replay. The floor is the forgotten command's issue time."""
    async with rig(tmp_path, key=KEY) as r:
        start = r.clock.now()
        first = await _send(r, "ping", correlation_id="p-1", issued_at=start, ttl_s=20)
    assert first["status"] == "ok"
    async with rig(tmp_path, key=KEY, start=start + dt.timedelta(seconds=21)) as again:
        fresh = await _send(
            again, "ping", correlation_id="p-2", issued_at=start + dt.timedelta(seconds=13)
        )
        replayed = await _send(again, "ping", correlation_id="p-1", issued_at=start, ttl_s=20)
    assert fresh["status"] == "ok", fresh
    assert replayed["data"]["reason"] in ("duplicate", "expired"), replayed


async def test_a_command_replayed_after_the_clock_steps_back_is_refused(tmp_path: Path) -> None:
    """A captured command expires and its id is forgotten; the wall clock is then
    stepped back so it looks valid again. Replayed, it is refused, before and after
    a restart (review of 2026-12-04: a replayed reset cleared a latched panic)."""
    async with rig(tmp_path, key=KEY) as r:
        start = r.clock.now()
        _, captured = command_payload(
            f"{PREFIX}/cmd/disarm", {"area": "A"}, key=KEY, issued_at=start, ttl_s=60,
            correlation_id="captured",
        )  # fmt: skip
        assert (await r.commands.handle("disarm", captured, False))["status"] == "ok"
        assert (await _send(r, "arm", {"area": "A"}, correlation_id="arm-1"))["status"] == "ok"
        await r.clock.advance(120)
        # Any later command forgets the expired ids.
        assert (await _send(r, "ping", correlation_id="ping-1"))["status"] == "ok"
        await r.clock.set(start + dt.timedelta(seconds=10))
        replayed = await r.commands.handle("disarm", captured, False)
        assert r.system.areas.armed("A")
    assert replayed["status"] == "error" and replayed["data"]["reason"] == "duplicate", replayed
    async with rig(tmp_path, key=KEY, start=start + dt.timedelta(seconds=10)) as again:
        after_restart = await again.commands.handle("disarm", captured, False)
        assert again.system.areas.armed("A")
        fresh = await _send(again, "ping", correlation_id="ping-2")
    assert after_restart["data"]["reason"] == "duplicate", after_restart
    assert fresh["status"] == "ok", fresh  # a command issued after the captured one acts


async def test_a_signature_is_bound_to_its_topic(tmp_path: Path) -> None:
    """A signed ``disarm`` replayed on the ``arm`` topic (or another gateway's) is refused."""
    async with rig(tmp_path, key=KEY) as r:
        _, payload = command_payload(
            f"{PREFIX}/cmd/disarm", {"area": "A"}, key=KEY, issued_at=r.clock.now()
        )
        result = await r.commands.handle("arm", payload, False)
    assert result["data"]["reason"] == "bad_signature"
    body = json.loads(payload)
    assert verify(KEY, f"{PREFIX}/cmd/disarm", body)
    assert not verify(KEY, "campus/v1/s2/gw1/cmd/disarm", body)
    assert body["signature"] == sign(KEY, f"{PREFIX}/cmd/disarm", body)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"not json", "invalid"),
        (b"[1, 2]", "invalid"),
        (b'{"issued_at": "2026-11-30T02:00:00Z"}', "invalid"),
        (b"", "invalid"),
    ],
)
async def test_malformed_payloads_are_refused(tmp_path: Path, payload: bytes, reason: str) -> None:
    async with rig(tmp_path) as r:
        result = await r.commands.handle("arm", payload, False)
    assert result["status"] == "error" and result["data"]["reason"] == reason
    assert result["correlation_id"] is None
    assert _audits(r)[0]["status"] == "error"


async def test_unknown_command_and_bad_params_are_refused(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        unknown = await _send(r, "selfdestruct", key=None)
        no_area = await _send(r, "arm", {"area": "nowhere"}, key=None)
        bad_type = await _send(r, "output", {"output": "S1", "on": "yes"}, key=None)
        no_output = await _send(r, "output", {"output": "S9", "on": True}, key=None)
    assert unknown["data"]["reason"] == "unknown_command" and "ping" in unknown["error"]
    assert no_area["data"]["reason"] == "invalid" and "nowhere" in no_area["error"]
    assert bad_type["data"]["reason"] == "invalid"
    assert no_output["data"]["reason"] == "invalid" and "S9" in no_output["error"]


async def test_every_command_acts(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        await r.at_rest()
        await r.contact("io", 0, True)  # panic pressed ...
        held = await _send(r, "reset", {"zone": "P1"}, key=None)
        await r.contact("io", 0, False)  # ... and released
        reset = await _send(r, "reset", {"zone": "P1"}, key=None)
        await r.contact("io", 2, False)  # intrusion: the siren sounds
        await r.wait_for(lambda: r.writes == [("io", 0, True)])
        ack = await _send(r, "ack", {"zone": "I1"}, key=None)
        bypass = await _send(r, "bypass", {"zone": "L1", "duration_s": 600}, key=None)
        unbypass = await _send(r, "unbypass", {"zone": "L1"}, key=None)
        output = await _send(r, "output", {"output": "S1", "on": True, "duration_s": 5}, key=None)
        arm = await _send(r, "arm", {"area": "PERIM"}, key=None)
        state = await _send(r, "get_state", key=None)
        ping = await _send(r, "ping", key=None)
    assert held["status"] == "error" and "still violated" in held["error"]
    assert reset["data"] == {"cleared": ["P1"], "still_violated": []}
    assert ack["data"] == {"acknowledged": ["I1"], "silenced": ["S1"]}
    assert bypass["data"]["until"] == "2026-11-30T02:10:00.000Z"
    assert unbypass["data"] == {"zone": "L1", "changed": True}
    assert output["data"] == {"output": "S1", "on": True}
    assert arm["data"] == {"area": "PERIM", "armed": True, "changed": True, "bypassed": []}
    zones = state["data"]["zones"]
    assert zones["I1"]["alarm"] and zones["I1"]["acknowledged"] and zones["I1"]["violated"]
    assert zones["P1"]["alarm"] is False and state["data"]["areas"]["PERIM"]["armed"]
    assert state["data"]["outputs"]["S1"]["on"] is True
    assert ping["data"] == {"pong": True, "time": "2026-11-30T02:00:00.000Z"}
    assert r.writes == [("io", 0, True), ("io", 0, False), ("io", 0, True)]
    assert [a["command"] for a in _audits(r)] == [
        "reset",
        "reset",
        "ack",
        "bypass",
        "unbypass",
        "output",
        "arm",
        "get_state",
        "ping",
    ]


@pytest.mark.parametrize("depth", [17, 200, 1000], ids=["one-too-deep", "200", "2KB-1000"])
async def test_a_command_nested_deeper_than_the_limit_is_refused_and_audited(
    tmp_path: Path, depth: int
) -> None:
    """Issue 11: a 2 KB payload nested 1000 deep raised RecursionError ("internal
    error", a traceback, no audit event). Now: a clear refusal, audited, for any
    nesting over MAX_DEPTH (16), checked before decoding."""
    inner = "[" * (depth - 2) + "]" * (depth - 2)
    payload = f'{{"correlation_id": "deep", "params": {{"a": {inner}}}}}'.encode()
    async with rig(tmp_path) as r:
        result = await r.commands.handle("ping", payload, False)
    assert result["status"] == "error" and result["data"] == {"reason": "invalid"}
    assert f"nested {depth} deep, more than 16" in result["error"], result
    (audit,) = _audits(r)
    assert (audit["status"], audit["reason"], audit["command"]) == ("error", "invalid", "ping")
    assert "nested" in audit["error"]


async def test_a_command_nested_up_to_the_limit_is_checked_as_usual(tmp_path: Path) -> None:
    """16 levels pass the depth check; brackets inside strings do not count."""
    deep: Any = "[[[{{ not structure"
    for _ in range(14):  # the body and params make 16 with these 14
        deep = [deep]
    async with rig(tmp_path) as r:
        result = await _send(r, "ping", {"deep": deep}, key=None, correlation_id="c-16")
    assert result["status"] == "ok", result
