"""Walk test (maintenance mode, gateway/alarm/walk_test.py) through the rules, with a manual
clock and a real SQLite state file: trips are reported as tests, never as alarms; panic zones
stay live; the test ends at its time, and neither a restart nor a clock step extends it."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import CommandRefused
from gateway.events.model import rfc3339
from simulators.center_commands import command_payload
from tests.alarm_support import Rig, rig
from tests.helpers import locked

# Area A of the test school: P1 (panic), T1 (tamper), I1, E1 (EOL), D1 (paired), L1.
A_TESTABLE = ["T1", "I1", "E1", "D1", "L1"]


async def _every_input_read(r: Rig) -> None:
    await r.at_rest()
    await r.contact("io", 0, False)  # P1's button, released


async def _start(r: Rig, **kwargs: object) -> None:
    params = {"by": "tech-1", "source": "command", "duration_s": 600.0, "area": "A", **kwargs}
    await r.system.walk.start(**params)  # type: ignore[arg-type]


async def test_trips_in_the_area_are_tests_never_alarms_and_panic_stays_live(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path) as r:
        await _every_input_read(r)
        await _start(r)
        (started,) = r.of("maintenance.started", "A")
        assert started.priority == 3 and started.cidcode == "607"
        assert started.data["zones"] == A_TESTABLE and started.data["kept_live"] == ["P1"]
        assert started.data["by"] == "tech-1" and started.data["until"] == rfc3339(
            r.clock.now() + dt.timedelta(seconds=600)
        )
        await r.contact("io", 2, False)  # I1: the detector trips (its siren S1 is linked)
        await r.contact("io", 2, True)
        await r.contact("io", 6, False)  # D1's cover opened: a tamper trip
        await r.contact("io", 6, True)
        await r.analog("ai", 0, 65000)  # E1's loop cut: a trip, and still a line fault
        await r.analog("ai", 0, 12000)
        await r.contact("io", 0, True)  # P1, the panic button of area A: still live
        trips = [(e.subject, e.data["condition"]) for e in r.of("zone.walk_test")]
        assert trips == [("I1", "alarm"), ("D1", "tamper"), ("E1", "cut")]
        for event in r.of("zone.walk_test"):
            assert (event.priority, event.siacode, event.data["test"]) == (5, "TP", True)
            assert event.data["incident"] == started.id
        assert [e.type for e in r.events if e.type.startswith("alarm.")] == ["alarm.panic"]
        assert r.states("fault.line", "E1") == ["active", "cleared"]
        assert r.writes == []  # no siren for a test trip (P1 has none linked)
        assert r.system.status.zone("I1").state == "walk_tested"
        assert r.system.status.zone("T1").state == "walk_test"
        report = r.system.walk.snapshot()["active"]
        assert report["untripped"] == ["T1", "L1"]
        assert report["tripped"]["I1"]["count"] == 1


async def test_the_test_ends_at_its_time_with_its_report_and_zones_are_live_again(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path) as r:
        await r.at_rest()
        await _start(r, duration_s=300.0)
        await r.contact("io", 2, False)  # I1 tripped ...
        await r.contact("io", 2, True)
        await r.contact("io", 7, False)  # ... and L1 left open when the test ends
        await r.advance(299)
        assert r.of("maintenance.ended") == [] and r.of("alarm.intrusion") == []
        await r.advance(1)
        await r.wait_for(lambda: bool(r.of("maintenance.ended")))
        (ended,) = r.of("maintenance.ended")
        assert ended.state == "cleared" and ended.data["reason"] == "time_up"
        assert ended.data["incident"] == r.of("maintenance.started")[0].id
        assert ended.data["untripped"] == ["T1", "E1", "D1"]
        assert set(ended.data["tripped"]) == {"I1", "L1"}
        await r.wait_for(lambda: bool(r.of("alarm.intrusion", "L1")))  # open door: live again
        assert r.system.walk.active is None
        assert r.system.walk.reports()[0]["untripped"] == ["T1", "E1", "D1"]
        assert r.system.status.zone("I1").state == "normal"
        state = await _send(r, "get_state")
        assert state["data"]["walk_test"]["last_report"]["reason"] == "time_up"


async def test_panic_zones_only_when_a_signed_command_names_them_with_a_shorter_limit(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path) as r:
        await _every_input_read(r)
        with pytest.raises(CommandRefused, match="P1 stay live"):
            await _start(r, source="bench", area=None, zones=["P1", "I1"])
        with pytest.raises(CommandRefused, match="panic_duration_s"):
            await _start(r, area=None, zones=["P1"], allow_panic=True)
        with pytest.raises(CommandRefused, match=r"panic_duration_s of 0\.\.300"):
            await _start(r, area=None, zones=["P1"], allow_panic=True, panic_duration_s=301.0)
        await _start(r, area=None, zones=["P1", "I1"], allow_panic=True, panic_duration_s=60.0)
        await r.contact("io", 0, True)
        await r.contact("io", 0, False)
        assert r.of("alarm.panic") == [] and [e.subject for e in r.of("zone.walk_test")] == ["P1"]
        await r.advance(60)
        await r.wait_for(lambda: r.system.walk.probe("P1") is None)
        assert r.system.walk.probe("I1") == "untested"  # the other zones go on
        await r.contact("io", 0, True)
        assert r.states("alarm.panic", "P1") == ["active"]


async def test_a_restart_does_not_extend_it(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        await r.at_rest()
        await _start(r, duration_s=600.0)
        until = r.system.walk.active.until if r.system.walk.active else None
        await r.advance(300)
    async with rig(tmp_path, clock=r.clock) as again:
        await again.at_rest()
        assert again.system.walk.active is not None and again.system.walk.active.until == until
        await again.contact("io", 2, False)
        assert again.of("alarm.intrusion") == [] and again.of("zone.walk_test", "I1")
        await again.advance(300)
        await again.wait_for(lambda: bool(again.of("maintenance.ended")))
        assert again.of("maintenance.ended")[0].data["ended"] == rfc3339(until)  # type: ignore[arg-type]


async def test_a_test_that_ran_out_while_the_gateway_was_off_ends_at_start(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        await r.at_rest()
        await _start(r, duration_s=600.0)
        until = r.clock.now() + dt.timedelta(seconds=600)
    r.clock._now += dt.timedelta(hours=2)  # off for two hours
    async with rig(tmp_path, clock=r.clock) as again:
        (ended,) = again.of("maintenance.ended")
        assert ended.data["reason"] == "expired" and ended.data["ended"] == rfc3339(until)
        await again.at_rest()
        await again.contact("io", 2, False)
        assert again.states("alarm.intrusion", "I1") == ["active"]


async def test_a_clock_stepped_back_extends_it_neither_running_nor_across_a_restart(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path) as r:
        await r.at_rest()
        await _start(r, duration_s=1.5)  # real seconds, counted on the monotonic clock
        await r.clock.set(r.clock.now() - dt.timedelta(hours=1))  # NTP steps back an hour
        await r.wait_for(lambda: bool(r.of("maintenance.ended")), within=5.0)
        assert r.of("maintenance.ended")[0].data["reason"] == "time_up"
        await _start(r, duration_s=600.0)
    r.clock._now -= dt.timedelta(hours=2)  # stepped back again while the gateway was off
    async with rig(tmp_path, clock=r.clock) as again:
        test = again.system.walk.active
        assert test is not None
        assert test.until - again.clock.now() <= dt.timedelta(seconds=600)


async def test_stop_and_the_commands_checks(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        await r.at_rest()

        async def walk(params: dict[str, Any]) -> dict[str, Any]:
            return await _send(r, "walk_test", params)

        refused = await walk({"duration_s": 60})
        assert refused["data"]["reason"] == "invalid"  # neither area nor zones
        assert (await walk({"area": "A", "duration_s": 99999}))["data"]["reason"] == "invalid"
        assert (await walk({"zones": ["NOPE"], "duration_s": 60}))["data"]["reason"] == "invalid"
        assert (await walk({"stop": True}))["status"] == "error"  # nothing to stop
        ok = await walk({"area": "A", "duration_s": 60})
        assert ok["status"] == "ok" and ok["data"]["kept_live"] == ["P1"]
        assert (await walk({"area": "A", "duration_s": 60}))["data"]["reason"] == "busy"
        await r.contact("io", 2, False)
        stopped = await walk({"stop": True})
        assert stopped["status"] == "ok", stopped
        assert stopped["data"]["reason"] == "stopped" and stopped["data"]["ended_by"] == "duty-1"
        assert stopped["data"]["untripped"] == ["T1", "E1", "D1", "L1"]
    assert r.states("maintenance.ended", "A") == ["cleared"]


async def _send(r: Rig, name: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """A command as the center sends it (unsigned: the rig has no key), at the rig's time."""
    _, payload = command_payload(
        f"{r.system.cfg.topic_prefix}/cmd/{name}",
        params,
        key=None,
        issued_at=r.clock.now(),
        operator="duty-1",
    )
    return await r.commands.handle(name, payload, False)


async def test_a_test_that_ends_while_the_state_file_refuses_writes_still_ends(
    tmp_path: Path,
) -> None:
    """Another process holds the state file's lock when the test's time is up: the
    ending is reported, the zone left open alarms, and the alarm system's timers run
    on (before, the refused write stopped the ending half-way and killed the timers)."""
    async with rig(tmp_path) as r:
        await r.at_rest()
        await _start(r, duration_s=60.0)
        await r.contact("io", 7, False)  # L1 left open when the test ends
        with locked(tmp_path / "state.sqlite"):
            await r.advance(60)
            await r.wait_for(lambda: bool(r.of("maintenance.ended")), 10)
            await r.wait_for(lambda: bool(r.of("alarm.intrusion", "L1")), 5)
        assert r.system.walk.active is None
        running = {t.get_name() for t in asyncio.all_tasks()}  # done tasks are not listed
        assert "alarm-timers" in running, running
    async with rig(tmp_path) as again:  # the lock is gone: the end was saved after all
        assert again.system.walk.active is None
        assert again.system.walk.reports()[0]["reason"] == "time_up"


async def test_a_test_stopped_while_the_state_file_refuses_writes_stays_stopped(
    tmp_path: Path,
) -> None:
    """Stopped with most of its hour left while another process holds the lock: the end
    is saved once the lock is gone, so a restart never brings the test back with its
    zones silenced (review of 2026-12-03: a refused waiting write never lands)."""
    async with rig(tmp_path) as r:
        await r.at_rest()
        await _start(r, duration_s=3600.0)
        with locked(tmp_path / "state.sqlite"):
            await r.system.walk.stop(by="duty-1")
            assert r.of("maintenance.ended")
    async with rig(tmp_path) as again:
        assert again.system.walk.active is None
        assert again.system.walk.reports()[0]["reason"] == "stopped"
