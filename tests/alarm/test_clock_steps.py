"""Durations run on the monotonic clock: a step of the wall clock (NTP, a technician)
neither lengthens nor shortens a zone's hold or a siren's sounding, and swallows no
transition (issue 11: after a −120 s step a 3 s hold lasted 62.6 s and the
violations meanwhile were not reported). The manual clock's ``step`` moves the
wall clock only, as a real step does; the process-level test under libfaketime is
``tests/system/test_wall_clock_steps.py``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.alarm_support import rig


@pytest.mark.parametrize("step_s", [-120.0, 60.0], ids=["back-120s", "forward-60s"])
async def test_a_hold_lasts_its_time_across_a_step_and_the_next_violation_is_reported(
    tmp_path: Path, step_s: float
) -> None:
    async with rig(tmp_path) as r:
        await r.at_rest()
        await r.contact("io", 2, False)  # I1: intrusion, 5 s hold
        await r.advance(1)
        await r.contact("io", 2, True)  # restored after 1 s of its 5 s hold
        await r.clock.step(step_s)
        await r.advance(3.9)
        assert r.states("alarm.intrusion", "I1") == ["active"]  # 4.9 s: still held
        await r.advance(0.2)
        await r.wait_for(lambda: r.states("alarm.intrusion", "I1") == ["active", "cleared"])
        await r.contact("io", 2, False)  # a new violation right after: a new alarm
        await r.wait_for(lambda: len(r.of("alarm.intrusion", "I1")) == 3)
    assert r.states("alarm.intrusion", "I1") == ["active", "cleared", "active"]


@pytest.mark.parametrize("step_s", [-120.0, 60.0], ids=["back-120s", "forward-60s"])
async def test_a_siren_sounds_for_its_duration_across_a_step(tmp_path: Path, step_s: float) -> None:
    async with rig(tmp_path) as r:
        await r.at_rest()
        await r.contact("io", 2, False)
        await r.wait_for(lambda: r.writes == [("io", 0, True)])
        await r.advance(20)
        await r.clock.step(step_s)
        await r.advance(39)  # 59 s of its 60
        assert r.writes == [("io", 0, True)]
        await r.advance(1.5)
        await r.wait_for(lambda: len(r.writes) == 2)
    assert r.writes == [("io", 0, True), ("io", 0, False)]
    on, off = r.of("output.switched", "S1")
    assert off.data["reason"] == "duration over" and off.data["incident"] == on.id
