"""One state per zone for dashboards (gateway/alarm/status.py), driven through the rules
with a manual clock: the conditions a technician and a dashboard must tell apart."""

from __future__ import annotations

from pathlib import Path

from gateway.events.model import rfc3339
from gateway.events.observation import DeviceHealth
from tests.alarm_support import Rig, rig


def _state(r: Rig, zone: str) -> str:
    return r.system.status.zone(zone).state


async def test_states_before_and_after_the_first_reading(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        assert _state(r, "I1") == "unknown"  # nothing read yet: never published
        await r.at_rest()
        assert _state(r, "P1") == "unknown"  # its input (DI0) is not read yet
        await r.contact("io", 0, False)
        assert {z: _state(r, z) for z in ("P1", "I1", "E1", "D1")} == dict.fromkeys(
            ("P1", "I1", "E1", "D1"), "normal"
        )


async def test_a_released_panic_stays_latched_alarm_until_reset(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        await r.at_rest()
        await r.contact("io", 0, True)
        pressed = r.system.status.zone("P1")
        await r.contact("io", 0, False)
        await r.advance(600)
        released = r.system.status.zone("P1")
        assert (released.state, released.latched, released.violated) == ("alarm", True, False)
        assert released.since == pressed.since  # the alarm's own start, not the release
        assert released.incident == r.of("alarm.panic", "P1")[0].id
        assert released.public("P1", r.system.status)["since"] == rfc3339(pressed.since)
        assert await r.system.zones.reset("P1")
        after = r.system.status.zone("P1")
        assert (after.state, after.latched, after.incident) == ("normal", False, None)
        assert after.since == r.clock.now()


async def test_open_bypassed_line_fault_tamper_and_offline(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        await r.at_rest()
        await r.system.disarm("A", by="t")
        await r.contact("io", 2, False)  # I1 open in a disarmed area: no alarm
        assert _state(r, "I1") == "open"
        assert r.system.status.zone("I1").area_armed is False
        await r.system.zones.bypasses.bypass("I1", until=None, by="t", reason="test")
        status = r.system.status.zone("I1")
        assert (status.state, status.bypassed) == ("bypassed", True)
        await r.analog("ai", 0, 65000)  # E1's loop cut while disarmed: a fault, no alarm
        assert _state(r, "E1") == "line_fault"
        await r.contact("io", 6, False)  # D1's cover opened
        assert _state(r, "D1") == "tamper"
        await r.system.observe(DeviceHealth("io", "offline", "online", "timeout", 3))
        assert _state(r, "R1") == "offline"
        assert _state(r, "D1") == "tamper"  # a condition outranks the module's silence
        await r.online("io")
        assert _state(r, "R1") == "normal"


async def test_an_armed_cut_line_is_an_alarm_and_the_area_state_lists_it(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        await r.at_rest()
        await r.analog("ai", 0, 65000)  # E1 in armed area A: its alarm and its fault
        assert _state(r, "E1") == "alarm"
        area = r.system.status.area("A")
        assert (area["state"], area["armed"], area["in_alarm"]) == ("armed", True, ["E1"])
        await r.system.disarm("A", by="duty-1")
        area = r.system.status.area("A")
        assert (area["state"], area["by"]) == ("disarmed", "duty-1")
        assert r.system.status.zone("I1").area_armed is False
        assert r.system.status.zone("X1").area_armed is True  # no area: counts as armed


async def test_latched_state_and_its_since_survive_a_restart(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        await r.at_rest()
        await r.contact("io", 0, True)
        before = r.system.status.zone("P1")
    async with rig(tmp_path, clock=r.clock) as again:
        await r.clock.advance(60)
        after = again.system.status.zone("P1")  # before any reading: restored from the store
        assert (after.state, after.latched, after.since) == ("alarm", True, before.since)
