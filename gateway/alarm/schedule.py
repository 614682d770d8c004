"""The school timetable: when an area is armed by schedule (local time, holidays).

:class:`Timetable` is pure: is the area armed at an instant, and when does that
next change. :class:`Scheduler` acts on it at the boundaries, through the
injected clock's timers: it arms or disarms at each boundary and nowhere else, so
a command between two boundaries holds until the next one. After a restart it
compares the time it last looked (persisted) with now: a boundary that passed
while the gateway was off is applied once, at start.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Mapping
from zoneinfo import ZoneInfo

import structlog

from gateway.config.alarm import WEEKDAYS, ArmWindow, ScheduleConfig
from gateway.events.model import rfc3339
from gateway.runtime.state import AREA
from gateway.runtime.state_store import StateStore
from gateway.runtime.timebase import Clock, Timers

log = structlog.get_logger(__name__)

_HORIZON_DAYS = 8
"""Windows repeat weekly: a change, if there is one, comes within 8 days (or on a holiday)."""

Apply = Callable[[str, bool, dt.datetime], Awaitable[None]]
"""(area id, armed, boundary time) -> arm or disarm the area."""


class Timetable:
    """One ``[[schedules]]`` entry in one time zone.

    Args:
        cfg: the schedule.
        tz: the site's time zone (``[site] timezone``).
    """

    def __init__(self, cfg: ScheduleConfig, tz: ZoneInfo) -> None:
        self.cfg = cfg
        self.tz = tz
        self._holidays = frozenset(cfg.holidays)

    def armed_at(self, t: dt.datetime) -> bool:
        """Is the area armed by this timetable at instant ``t`` (timezone-aware)?"""
        local = t.astimezone(self.tz)
        if local.date() in self._holidays:
            return self.cfg.on_holidays == "armed"
        for window in self.cfg.armed:
            for day in (local.date(), local.date() - dt.timedelta(days=1)):
                bounds = self._bounds(window, day)
                if bounds is not None and bounds[0] <= t < bounds[1]:
                    return True
        return False

    def next_change(self, t: dt.datetime) -> dt.datetime | None:
        """The first instant after ``t`` at which :meth:`armed_at` differs from now,
        or None when it never changes (armed, or disarmed, all the time)."""
        now_armed = self.armed_at(t)
        for candidate in self._boundaries(t):
            if self.armed_at(candidate) != now_armed:
                return candidate
        return None

    def _boundaries(self, t: dt.datetime) -> list[dt.datetime]:
        """Every instant after ``t`` where the timetable may change, in order."""
        today = t.astimezone(self.tz).date()
        found: set[dt.datetime] = set()
        for offset in range(-1, _HORIZON_DAYS):
            day = today + dt.timedelta(days=offset)
            for window in self.cfg.armed:
                bounds = self._bounds(window, day)
                if bounds is not None:
                    found.update(bounds)
        for holiday in self._holidays:
            found.add(self._at(holiday, "00:00"))
            found.add(self._at(holiday + dt.timedelta(days=1), "00:00"))
        return sorted(b for b in found if b > t)

    def _bounds(self, window: ArmWindow, day: dt.date) -> tuple[dt.datetime, dt.datetime] | None:
        """The window's start and end when it starts on ``day``, else None."""
        if WEEKDAYS[day.weekday()] not in window.days:
            return None
        start = self._at(day, window.start)
        end = self._at(day, window.end)
        if end <= start:
            end = self._at(day + dt.timedelta(days=1), window.end)
        return start, end

    def _at(self, day: dt.date, hhmm: str) -> dt.datetime:
        if hhmm == "24:00":
            day, hhmm = day + dt.timedelta(days=1), "00:00"
        hour, minute = (int(part) for part in hhmm.split(":"))
        return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=self.tz)


class Scheduler:
    """Arms and disarms scheduled areas at their timetable's boundaries.

    Args:
        timetables: area id → its timetable.
        apply: arms (True) or disarms an area, given the boundary time.
        timers: runs the boundary timers.
        clock: the rules' time.
        store: keeps ``schedule_checked_at`` (when the schedule last looked).
    """

    def __init__(
        self,
        timetables: Mapping[str, Timetable],
        apply: Apply,
        *,
        timers: Timers,
        clock: Clock,
        store: StateStore,
    ) -> None:
        self._timetables = dict(timetables)
        self._apply = apply
        self._timers = timers
        self._clock = clock
        self._store = store

    async def start(self) -> None:
        """Apply a boundary missed while the gateway was off, then set the timers.

        Raises:
            StateError: the check time cannot be persisted.
        """
        now = self._clock.now()
        last_text = self._store.meta("schedule_checked_at")
        last: dt.datetime | None = None
        if isinstance(last_text, str):
            try:
                last = dt.datetime.fromisoformat(last_text)
            except ValueError:
                log.error("schedule.check_time_unreadable", value=repr(last_text)[:80])
        # The state file could not be read, or what it says of the schedule or of an
        # area cannot be: that area's arming is unknown, so it takes what its
        # timetable says now (armed at night), not its first-start state (reviews of
        # 2026-12-03; a torn check time had stopped the start in a loop).
        unknown = self._store.unread is not None or (last_text is not None and last is None)
        for area_id, timetable in self._timetables.items():
            if unknown or (AREA.name, area_id) in self._store.left_out:
                log.warning("schedule.applied_unknown_state", area=area_id)
                await self._apply(area_id, timetable.armed_at(now), now)
                continue
            missed = timetable.next_change(last) if last is not None else None
            if missed is not None and missed <= now:
                log.info("schedule.missed_boundary", area=area_id, at=rfc3339(missed))
                await self._apply(area_id, timetable.armed_at(now), now)
        await self._store.put_meta("schedule_checked_at", rfc3339(now))
        for area_id in self._timetables:
            self._plan(area_id, now)

    def next_boundary(self, area_id: str) -> dt.datetime | None:
        """When the schedule next acts on ``area_id``, or None."""
        return self._timers.due(f"schedule:{area_id}")

    def _plan(self, area_id: str, after: dt.datetime) -> None:
        boundary = self._timetables[area_id].next_change(after)
        if boundary is None:
            return

        async def act(due: dt.datetime) -> None:
            try:
                await self._apply(area_id, self._timetables[area_id].armed_at(due), due)
                await self._store.put_meta("schedule_checked_at", rfc3339(due))
            finally:
                self._plan(area_id, due)

        self._timers.set(f"schedule:{area_id}", boundary, act)
