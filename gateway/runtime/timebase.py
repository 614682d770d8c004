"""The alarm rules' sense of time: an injectable clock, and timers that run on it.

Schedules, bypass expiry, minimum hold times and siren durations all wait on a
:class:`Clock`. The daemon uses :class:`SystemClock`; a test or a bench passes a
:class:`ManualClock` and moves time on by hand (``await clock.advance(3600)``),
so a timetable can be checked at 22:00 without waiting for 22:00.

:class:`Timers` holds one-shot actions keyed by name (setting a key again
replaces its action) and runs them from one task, in time order.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

import structlog

from gateway.events.observation import utcnow

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


class SystemClock:
    """The real UTC clock; waits follow steps of the system time within 30 s."""

    def now(self) -> datetime:
        """The gateway's UTC time."""
        return utcnow()

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
        self._moved = asyncio.Condition()

    def now(self) -> datetime:
        """The time as last set."""
        return self._now

    async def sleep_until(self, when: datetime) -> None:
        """Wait until :meth:`advance` or :meth:`set` has moved time to ``when``."""
        async with self._moved:
            await self._moved.wait_for(lambda: self._now >= when)

    async def advance(self, seconds: float) -> None:
        """Move time forward and let everything that waited for it run."""
        await self.set(self._now + timedelta(seconds=seconds))

    async def set(self, when: datetime) -> None:
        """Jump to ``when`` (forward or back) and give woken tasks a few turns of the loop.

        Timers due in between all fire, in time order, each told its own due time;
        work they hand to threads (SQLite) may finish later: a test waits for the
        effect it expects, not for this call.
        """
        async with self._moved:
            self._now = when
            self._moved.notify_all()
        for _ in range(20):  # let woken tasks (and what they wake) run to their next wait
            await asyncio.sleep(0)


Action = Callable[[datetime], Awaitable[None]]
"""A timer's action; it is given the time it was due (which may be in the past)."""


class Timers:
    """Keyed one-shot timers on a :class:`Clock`, run by :meth:`run` (one task).

    An action that raises is logged and counted; the others still run.

    Attributes:
        errors: actions that raised.
    """

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._due: dict[str, tuple[datetime, int, Action]] = {}
        self._heap: list[tuple[datetime, int, str]] = []
        self._seq = itertools.count()
        self._changed = asyncio.Event()
        self.errors = 0

    def set(self, key: str, when: datetime, action: Action) -> None:
        """Run ``action`` at ``when``; replaces an earlier timer of the same ``key``."""
        seq = next(self._seq)
        self._due[key] = (when, seq, action)
        heapq.heappush(self._heap, (when, seq, key))
        self._changed.set()

    def cancel(self, key: str) -> None:
        """Forget the timer ``key`` (nothing happens when there is none)."""
        self._due.pop(key, None)

    def due(self, key: str) -> datetime | None:
        """When timer ``key`` fires, or None."""
        entry = self._due.get(key)
        return entry[0] if entry else None

    async def run(self) -> None:
        """Fire timers as they come due; only cancellation ends it."""
        while True:
            self._changed.clear()
            head = self._head()
            if head is None:
                await self._changed.wait()
                continue
            when, _, key = head
            if when > self._clock.now():
                await self._wait(when)
                continue
            heapq.heappop(self._heap)
            _, _, action = self._due.pop(key)
            try:
                await action(when)
            except Exception:
                self.errors += 1
                log.exception("timer.action_failed", timer=key)

    def _head(self) -> tuple[datetime, int, str] | None:
        """The earliest live timer (stale heap entries of replaced timers dropped)."""
        while self._heap:
            _when, seq, key = self._heap[0]
            live = self._due.get(key)
            if live is not None and live[1] == seq:
                return self._heap[0]
            heapq.heappop(self._heap)
        return None

    async def _wait(self, when: datetime) -> None:
        """Sleep until ``when`` or until a timer is set (it may be earlier)."""
        sleeper = asyncio.ensure_future(self._clock.sleep_until(when))
        changed = asyncio.ensure_future(self._changed.wait())
        try:
            await asyncio.wait({sleeper, changed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeper, changed):
                if not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
