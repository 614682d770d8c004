"""The school timetable arms and disarms areas at the right local times, driven by a
manual clock (no real waiting). Asia/Shanghai, no daylight saving: 22:00 local is
14:00 UTC."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from gateway.alarm.schedule import Timetable
from tests.alarm_support import Rig, local, rig, school


def _night() -> Timetable:
    cfg = school()
    return Timetable(cfg.schedules[0], ZoneInfo(cfg.site.timezone))


@pytest.mark.parametrize(
    ("when", "armed"),
    [
        ("2026-11-30 21:59", False),  # Monday evening
        ("2026-11-30 22:00", True),
        ("2026-12-01 05:59", True),  # Tuesday morning
        ("2026-12-01 06:00", False),
        ("2026-12-01 12:00", False),
        ("2026-12-05 12:00", True),  # Saturday
        ("2026-12-06 23:59", True),  # Sunday night runs into Monday
        ("2026-12-07 05:00", True),
        ("2026-12-07 06:00", False),
        ("2026-10-01 12:00", True),  # a holiday (National Day), a Thursday
    ],
)
def test_timetable_is_armed_in_its_windows_and_on_holidays(when: str, armed: bool) -> None:
    assert _night().armed_at(local(when)) is armed


@pytest.mark.parametrize(
    ("after", "change"),
    [
        ("2026-11-30 10:00", "2026-11-30 22:00"),
        ("2026-11-30 23:00", "2026-12-01 06:00"),
        ("2026-12-04 23:00", "2026-12-07 06:00"),  # Friday night: the whole weekend
        ("2026-09-30 23:00", "2026-10-02 06:00"),  # the night before a holiday
    ],
)
def test_next_change_skips_boundaries_that_change_nothing(after: str, change: str) -> None:
    assert _night().next_change(local(after)) == local(change)


async def _set(r: Rig, when: str) -> None:
    await r.clock.set(local(when))
    await r.advance(0)


async def test_schedule_arms_at_22_and_disarms_at_06_local(tmp_path: Path) -> None:
    async with rig(tmp_path, start=local("2026-11-30 21:00")) as r:
        assert not r.system.areas.armed("PERIM")
        assert r.system.scheduler.next_boundary("PERIM") == local("2026-11-30 22:00")
        await _set(r, "2026-11-30 21:59")
        assert not r.system.areas.armed("PERIM")
        await _set(r, "2026-11-30 22:00")
        await r.wait_for(lambda: r.system.areas.armed("PERIM"))
        await _set(r, "2026-12-01 05:59")
        assert r.system.areas.armed("PERIM")
        await _set(r, "2026-12-01 06:00")
        await r.wait_for(lambda: not r.system.areas.armed("PERIM"))
    armed, disarmed = r.of("area.armed", "PERIM")[0], r.of("area.disarmed", "PERIM")[0]
    assert armed.time == local("2026-11-30 22:00") and armed.data["by"] == "schedule"
    assert disarmed.time == local("2026-12-01 06:00") and disarmed.data["by"] == "schedule"
    assert r.system.areas.armed("A")  # an area without schedule is left alone


async def test_a_command_between_boundaries_holds_until_the_next_one(tmp_path: Path) -> None:
    async with rig(tmp_path, start=local("2026-11-30 21:00")) as r:
        await _set(r, "2026-11-30 22:00")
        await r.wait_for(lambda: r.system.areas.armed("PERIM"))
        await _set(r, "2026-11-30 22:30")
        await r.system.disarm("PERIM", by="duty-1")  # a late football match
        await _set(r, "2026-12-01 05:00")
        assert not r.system.areas.armed("PERIM")
        await _set(r, "2026-12-01 22:00")
        await r.wait_for(lambda: r.system.areas.armed("PERIM"))
    assert [e.data["by"] for e in r.events if e.type.startswith("area.")] == [
        "schedule",
        "duty-1",
        "schedule",
    ]


async def test_weekend_and_holiday_stay_armed(tmp_path: Path) -> None:
    async with rig(tmp_path, start=local("2026-09-30 21:00")) as r:
        await _set(r, "2026-09-30 22:00")
        await r.wait_for(lambda: r.system.areas.armed("PERIM"))
        await _set(r, "2026-10-01 12:00")  # National Day
        assert r.system.areas.armed("PERIM")
        await _set(r, "2026-10-02 06:00")
        await r.wait_for(lambda: not r.system.areas.armed("PERIM"))
        await _set(r, "2026-10-02 22:00")  # Friday night
        await r.wait_for(lambda: r.system.areas.armed("PERIM"))
        await _set(r, "2026-10-04 12:00")  # Sunday noon
        assert r.system.areas.armed("PERIM")
        await _set(r, "2026-10-05 06:00")
        await r.wait_for(lambda: not r.system.areas.armed("PERIM"))
    assert len(r.of("area.armed", "PERIM")) == len(r.of("area.disarmed", "PERIM")) == 2


async def test_scheduled_arming_bypasses_an_open_zone_until_disarmed(tmp_path: Path) -> None:
    async with rig(tmp_path, start=local("2026-11-30 21:00")) as r:
        await r.at_rest()
        await r.contact("io", 3, False)  # the beam is blocked by a parked van
        await _set(r, "2026-11-30 22:00")
        await r.wait_for(lambda: r.system.areas.armed("PERIM"))
        assert r.of("alarm.perimeter") == []
        await _set(r, "2026-12-01 06:00")
        await r.wait_for(lambda: not r.system.areas.armed("PERIM"))
    assert r.of("area.armed", "PERIM")[0].data["bypassed"] == ["R1"]
    assert [e.data["reason"] for e in r.of("zone.bypassed", "R1")] == ["open at arming", "disarmed"]


async def test_a_boundary_missed_while_off_is_applied_at_start(tmp_path: Path) -> None:
    async with rig(tmp_path, start=local("2026-11-30 21:00")):
        pass  # the gateway loses power at 21:00 ...
    async with rig(tmp_path, start=local("2026-11-30 23:00")) as r:  # ... and is back at 23:00
        assert r.system.areas.armed("PERIM")
    (armed,) = r.of("area.armed", "PERIM")
    assert armed.data["by"] == "schedule" and armed.time == local("2026-11-30 23:00")


async def test_a_command_after_the_last_boundary_survives_a_restart(tmp_path: Path) -> None:
    async with rig(tmp_path, start=local("2026-11-30 21:00")) as r:
        await _set(r, "2026-11-30 22:00")
        await r.wait_for(lambda: r.system.areas.armed("PERIM"))
        await _set(r, "2026-11-30 22:30")
        await r.system.disarm("PERIM", by="duty-1")
    async with rig(tmp_path, start=local("2026-11-30 23:00")) as again:
        assert not again.system.areas.armed("PERIM")
        assert again.system.scheduler.next_boundary("PERIM") == local("2026-12-01 06:00")
    assert again.events == []


async def test_a_state_file_that_cannot_be_read_leaves_a_scheduled_area_as_its_timetable_says(
    tmp_path: Path,
) -> None:
    """The arming and the last check in the file are unknown: at 23:00 the perimeter is
    armed by its timetable (and says so), not left at its first-start ``disarmed``; the
    schedule runs on (review of 2026-12-03: its timers were never set)."""
    (tmp_path / "state.sqlite").mkdir()  # a state file SQLite cannot open
    async with rig(tmp_path, start=local("2026-11-30 23:00")) as r:
        assert r.system.areas.armed("PERIM")
        assert r.system.scheduler.next_boundary("PERIM") == local("2026-12-01 06:00")
        await _set(r, "2026-12-01 06:00")
        await r.wait_for(lambda: not r.system.areas.armed("PERIM"))
    [armed] = r.of("area.armed", "PERIM")
    assert armed.data["by"] == "schedule"


async def test_an_area_record_or_check_time_that_cannot_be_read_takes_the_timetable(
    tmp_path: Path,
) -> None:
    """At 22:30 the schedule has armed PERIM; its record and the last check time are
    then torn. Before, the torn check time stopped the start (in a loop under
    systemd); an unreadable record left PERIM disarmed at night. Now PERIM is armed
    again by its timetable at the restart (review of 2026-12-03)."""
    async with rig(tmp_path, start=local("2026-11-30 21:00")) as r:
        await _set(r, "2026-11-30 22:30")
        await r.wait_for(lambda: r.system.areas.armed("PERIM"))
    with contextlib.closing(sqlite3.connect(tmp_path / "state.sqlite")) as db:
        db.execute("""UPDATE state SET value = '{"armed": true}' WHERE kind = 'area'""")
        db.execute("""UPDATE state SET value = '"garbage"' WHERE key = 'schedule_checked_at'""")
        db.commit()
    async with rig(tmp_path, start=local("2026-11-30 22:40")) as again:
        assert again.system.areas.armed("PERIM")
        assert again.system.scheduler.next_boundary("PERIM") == local("2026-12-01 06:00")
