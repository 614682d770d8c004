"""Durations run on the monotonic clock: a step of the wall clock (NTP, a technician)
neither lengthens nor shortens a zone's hold or a siren's sounding, and swallows no
transition (issue 11: after a −120 s step a 3 s hold lasted 62.6 s and the
violations meanwhile were not reported). The manual clock's ``step`` moves the
wall clock only, as a real step does; the process-level test under libfaketime is
``tests/system/test_wall_clock_steps.py``."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.events.model import Event, EventFactory
from gateway.runtime.clock_step import ClockStepWatch
from tests.alarm_support import rig
from tests.helpers import assert_valid_event


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


async def test_a_step_is_reported_once_with_its_size_and_a_slew_is_not() -> None:
    """``ClockStepWatch`` compares the wall and monotonic clocks between two looks:
    a difference of a second or more is a step (one event, its size), less is a
    slew or jitter (nothing)."""
    emitted: list[Event] = []

    async def emit(event: Event) -> Event:
        emitted.append(event)
        return event

    wall, mono = [1_796_200_000.0], [50.0]
    watch = ClockStepWatch(
        EventFactory("campus/s1/gw1", lambda: True), emit, "gw1",
        wall=lambda: wall[0], monotonic=lambda: mono[0],
    )  # fmt: skip
    seen = (wall[0], mono[0])
    for wall_moves, mono_moves in [(1.0, 1.0), (1.4, 1.0), (-119.0, 1.0), (1.0, 1.0), (61.0, 1.0)]:
        wall[0] += wall_moves
        mono[0] += mono_moves
        seen = await watch.look(*seen)
    assert [e.data["step_s"] for e in emitted] == [-120.0, 60.0]  # the 0.4 s slew: nothing
    back = emitted[0]
    assert (back.type, back.priority, back.cidcode, back.siacode) == (
        "gateway.clock_step", 5, "625", "JT"
    )  # fmt: skip
    assert back.data["before"] > back.data["after"] and watch.steps == 2
    for event in emitted:
        assert_valid_event(event.stored(1, "s").to_dict())
