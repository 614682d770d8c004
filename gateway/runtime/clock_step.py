"""Notices a step of the wall clock and reports it as a ``gateway.clock_step`` event.

Every ``interval_s`` seconds the watch compares how far the wall clock moved with
how far the monotonic clock moved. The monotonic clock (``CLOCK_MONOTONIC``) is
never stepped, so a difference of ``threshold_s`` or more is a step of the wall
clock — NTP's ``step`` after a long outage, a technician's ``date -s``, an RTC
read wrongly at boot — and not a slew (NTP slews at most 0.5 ms per second).

The rules' durations (holds, siren durations, retries) run on the monotonic clock
and are not changed by a step (:mod:`gateway.runtime.timebase`); the event tells
the center that the ``time`` stamped on events jumped, by how much, and when
(issue 11). ``gateway.clock_step`` is priority 5, Contact ID 625 "Time/Date reset"
→ SIA JT "Time Changed" (the pairing of ``gateway/panels/codes.py``).

``data``: ``step_s`` (seconds, positive forward, rounded to the millisecond),
``before`` (the wall time that would have been read without the step),
``after`` (the wall time read).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import structlog

from gateway.events.model import Emit, EventFactory, rfc3339

log = structlog.get_logger(__name__)


class ClockStepWatch:
    """Runs :meth:`run` as a task; emits one event per step seen.

    Args:
        factory, emit: make and store the ``gateway.clock_step`` events.
        gateway_id: the event's ``subject``.
        interval_s: seconds between two looks.
        threshold_s: the smallest difference reported as a step (seconds).
        wall, monotonic: the clocks (seconds); the system's unless a test gives its own.

    Attributes:
        steps: steps seen since start.
    """

    def __init__(
        self,
        factory: EventFactory,
        emit: Emit,
        gateway_id: str,
        *,
        interval_s: float = 1.0,
        threshold_s: float = 1.0,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._factory = factory
        self._emit = emit
        self._gateway_id = gateway_id
        self._interval = interval_s
        self._threshold = threshold_s
        self._wall = wall
        self._monotonic = monotonic
        self.steps = 0

    async def run(self) -> None:
        """Look every ``interval_s`` until cancelled."""
        wall, mono = self._wall(), self._monotonic()
        while True:
            await asyncio.sleep(self._interval)
            wall, mono = await self.look(wall, mono)

    async def look(self, wall: float, mono: float) -> tuple[float, float]:
        """Compare with the readings ``(wall, mono)`` of the last look; report a step.

        Returns:
            The readings of this look, for the next one.
        """
        now_wall, now_mono = self._wall(), self._monotonic()
        expected = wall + (now_mono - mono)
        step = now_wall - expected
        if abs(step) >= self._threshold:
            self.steps += 1
            before = datetime.fromtimestamp(expected, UTC)
            after = before + timedelta(seconds=step)
            log.warning("gateway.clock_step", step_s=round(step, 3), after=rfc3339(after))
            await self._emit(
                self._factory.make(
                    "gateway.clock_step",
                    device="gateway",
                    subject=self._gateway_id,
                    state="instant",
                    data={
                        "step_s": round(step, 3),
                        "before": rfc3339(before),
                        "after": rfc3339(after),
                    },
                )
            )
        return now_wall, now_mono
