"""The alarm rules' sense of time: an injectable clock, and timers that run on it.

Two kinds of time, kept apart (issue 11; GB 50394 §5.2.2, no missed alarm):

* **durations** — a zone's minimum hold, a siren's ``duration_s``, a write's
  retry — run on the clock's *monotonic* seconds (:meth:`Clock.monotonic`, the
  kernel's ``CLOCK_MONOTONIC``), which an NTP or manual step of the wall clock
  never moves: a step of −120 s or +60 s lengthens or shortens none of them;
* **moments** — a school timetable's 22:00, a bypass ``until`` — are wall times
  and follow a step (within 30 s).

Wall time is otherwise only stamped on events. The daemon uses
:class:`SystemClock`; a test or a bench passes a :class:`ManualClock` and moves
time on by hand (``await clock.advance(3600)``), so a timetable can be checked at
22:00 without waiting for 22:00, and steps only the wall clock with
:meth:`ManualClock.step`.

:class:`Timers` holds one-shot actions keyed by name (setting a key again
replaces its action), due at a wall time (:meth:`Timers.set`) or after a
duration (:meth:`Timers.set_after`), and runs them from one task, in time order.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar

import structlog

from gateway.events.observation import utcnow
from gateway.runtime.tasks import cancel_and_wait

log = structlog.get_logger(__name__)

_MAX_NAP_S = 30.0
"""A system-clock wait re-reads the time at least this often (NTP steps the clock)."""


class Clock(Protocol):
    """What the rules need of time."""

    def now(self) -> datetime:
        """The current UTC time (timezone-aware)."""
        ...

    async def sleep_until(self, when: datetime) -> None:
        """Return once :meth:`now` has reached ``when`` (at once when it has)."""
        ...

    def monotonic(self) -> float:
        """Seconds that never step (only differences mean anything)."""
        ...

    async def sleep_monotonic_until(self, deadline: float) -> None:
        """Return once :meth:`monotonic` has reached ``deadline``."""
        ...


class SystemClock:
    """The real UTC clock; wall waits follow steps of the system time within 30 s,
    monotonic ones never do."""

    def now(self) -> datetime:
        """The gateway's UTC time."""
        return utcnow()

    def monotonic(self) -> float:
        """:func:`time.monotonic` (the event loop's clock too)."""
        return time.monotonic()

    async def sleep_monotonic_until(self, deadline: float) -> None:
        """Sleep until ``time.monotonic()`` reaches ``deadline``."""
        await asyncio.sleep(max(0.0, deadline - time.monotonic()))

    async def sleep_until(self, when: datetime) -> None:
        """Sleep until ``when`` by the wall clock."""
        # polling the wall clock on purpose: an NTP step must shorten or lengthen the wait
        while (left := (when - utcnow()).total_seconds()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(min(left, _MAX_NAP_S))


class ManualClock:
    """A clock that only moves when told to (tests, benches).

    Args:
        start: the initial time; naive values are taken as UTC.
    """

    def __init__(self, start: datetime) -> None:
        self._now = start if start.tzinfo else start.replace(tzinfo=UTC)
        self._mono = 0.0
        self._moved = asyncio.Condition()

    def now(self) -> datetime:
        """The time as last set."""
        return self._now

    def monotonic(self) -> float:
        """Seconds moved forward since the start (:meth:`step` does not move them)."""
        return self._mono

    async def sleep_monotonic_until(self, deadline: float) -> None:
        """Wait until time has moved on to ``deadline`` monotonic seconds."""
        async with self._moved:
            await self._moved.wait_for(lambda: self._mono >= deadline)

    async def sleep_until(self, when: datetime) -> None:
        """Wait until :meth:`advance` or :meth:`set` has moved time to ``when``."""
        async with self._moved:
            await self._moved.wait_for(lambda: self._now >= when)

    async def advance(self, seconds: float) -> None:
        """Move time forward and let everything that waited for it run."""
        await self.set(self._now + timedelta(seconds=seconds))

    async def set(self, when: datetime) -> None:
        """Jump to ``when`` and give woken tasks a few turns of the loop. Forward, time
        passes (the monotonic seconds move too); backward, only the wall clock moves
        (as :meth:`step`).

        Timers due in between all fire, in time order, each told its own due time;
        work they hand to threads (SQLite) may finish later: a test waits for the
        effect it expects, not for this call.
        """
        await self._move(when, max(0.0, (when - self._now).total_seconds()))

    async def step(self, seconds: float) -> None:
        """Step the wall clock by ``seconds`` (negative: back) while no time passes, as
        an NTP or manual correction does: durations are untouched."""
        await self._move(self._now + timedelta(seconds=seconds), 0.0)

    async def _move(self, when: datetime, passed_s: float) -> None:
        async with self._moved:
            self._now = when
            self._mono += passed_s
            self._moved.notify_all()
        for _ in range(20):  # let woken tasks (and what they wake) run to their next wait
            await asyncio.sleep(0)


_Entry = TypeVar("_Entry", tuple[datetime, int, str], tuple[float, int, str])
Action = Callable[[datetime], Awaitable[None]]
"""A timer's action; it is given the time it was due (which may be in the past)."""


class Timers:
    """Keyed one-shot timers on a :class:`Clock`, run by :meth:`run` (one task).

    A timer is due at a wall time (:meth:`set`: a timetable boundary, a bypass
    end) or after a duration on the monotonic clock (:meth:`set_after`: a hold,
    a siren's duration, a retry). An action that raises is logged and counted;
    the others still run.

    Attributes:
        errors: actions that raised.
    """

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        # key -> (seq, wall time or None, monotonic deadline or None, action)
        self._due: dict[str, tuple[int, datetime | None, float | None, Action]] = {}
        self._heap: list[tuple[datetime, int, str]] = []
        self._mono_heap: list[tuple[float, int, str]] = []
        self._seq = itertools.count()
        self._changed = asyncio.Event()
        self.errors = 0

    def set(self, key: str, when: datetime, action: Action) -> None:
        """Run ``action`` at the wall time ``when``; replaces an earlier timer of ``key``."""
        seq = next(self._seq)
        self._due[key] = (seq, when, None, action)
        heapq.heappush(self._heap, (when, seq, key))
        self._changed.set()

    def set_after(self, key: str, seconds: float, action: Action) -> None:
        """Run ``action`` ``seconds`` from now on the monotonic clock (a step of the
        wall clock neither delays nor hastens it); replaces an earlier timer of ``key``."""
        seq = next(self._seq)
        deadline = self._clock.monotonic() + max(0.0, seconds)
        self._due[key] = (seq, None, deadline, action)
        heapq.heappush(self._mono_heap, (deadline, seq, key))
        self._changed.set()

    def cancel(self, key: str) -> None:
        """Forget the timer ``key`` (nothing happens when there is none)."""
        self._due.pop(key, None)

    def due(self, key: str) -> datetime | None:
        """When timer ``key`` fires (a duration's end as the wall time it would be now), or None."""
        entry = self._due.get(key)
        if entry is None:
            return None
        _, when, deadline, _ = entry
        if when is not None:
            return when
        assert deadline is not None
        return self._clock.now() + timedelta(seconds=deadline - self._clock.monotonic())

    async def run(self) -> None:
        """Fire timers as they come due; only cancellation ends it."""
        while True:
            self._changed.clear()
            wall = self._head(self._heap)
            mono = self._head(self._mono_heap)
            if wall is None and mono is None:
                await self._changed.wait()
                continue
            now, mono_now = self._clock.now(), self._clock.monotonic()
            if mono is not None and mono[0] <= mono_now:
                heapq.heappop(self._mono_heap)
                # told as the wall time it came due (a duration's end, not a moment)
                key, fired = mono[2], now - timedelta(seconds=mono_now - mono[0])
            elif wall is not None and wall[0] <= now:
                heapq.heappop(self._heap)
                key, fired = wall[2], wall[0]
            else:
                await self._wait(
                    wall[0] if wall is not None else None, mono[0] if mono is not None else None
                )
                continue
            _, _, _, action = self._due.pop(key)
            try:
                await action(fired)
            except Exception:
                self.errors += 1
                log.exception("timer.action_failed", timer=key)

    def _head(self, heap: list[_Entry]) -> _Entry | None:
        """The earliest live timer of ``heap`` (stale entries of replaced timers dropped)."""
        while heap:
            _when, seq, key = heap[0]
            live = self._due.get(key)
            if live is not None and live[0] == seq:
                return heap[0]
            heapq.heappop(heap)
        return None

    async def _wait(self, when: datetime | None, deadline: float | None) -> None:
        """Sleep until ``when`` (wall), ``deadline`` (monotonic) or a timer is set."""
        waits: list[asyncio.Future[Any]] = [asyncio.ensure_future(self._changed.wait())]
        if when is not None:
            waits.append(asyncio.ensure_future(self._clock.sleep_until(when)))
        if deadline is not None:
            waits.append(asyncio.ensure_future(self._clock.sleep_monotonic_until(deadline)))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await cancel_and_wait(waits)
