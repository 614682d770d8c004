"""The tour plan: ``[patrol]`` compiled into lookups and round start times.

Times: every ``datetime`` here is timezone-aware. Schedules are wall-clock times in
the site's timezone (``[site] timezone``); round starts come out in UTC. Wall-clock
arithmetic follows :mod:`zoneinfo` (a 02:30 start on a day that skips 02:00–03:00
is taken as the clock shows it, then normalized).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from gateway.config.patrol import (
    CheckpointConfig,
    GuardConfig,
    PatrolConfig,
    ReaderConfig,
    RouteConfig,
)
from gateway.events.patrol_observation import normalize_tag


@dataclass(frozen=True, slots=True)
class Stop:
    """One checkpoint of a route with its timing relative to the round's start.

    Attributes:
        index: position in the route (0-based).
        checkpoint: the checkpoint.
        offset: due time after the round's start.
        window: length of the on-time window from ``offset``.
        tolerance: slack before the window (still on time) and after it (late).
    """

    index: int
    checkpoint: CheckpointConfig
    offset: dt.timedelta
    window: dt.timedelta
    tolerance: dt.timedelta


@dataclass(frozen=True, slots=True)
class Route:
    """A route of the plan.

    Attributes:
        cfg: its configuration.
        stops: its stops in route order.
    """

    cfg: RouteConfig
    stops: tuple[Stop, ...]

    @property
    def span(self) -> dt.timedelta:
        """From the round's start to the last moment any stop can still be hit (late)."""
        return max(s.offset + s.window + s.tolerance for s in self.stops)

    @property
    def lead(self) -> dt.timedelta:
        """How long before the round's start its first stop may already be hit."""
        return max(s.tolerance - s.offset for s in self.stops)


@dataclass(frozen=True, slots=True)
class RoundStart:
    """A scheduled round.

    Attributes:
        route: the route walked.
        start: scheduled start (UTC).
        local: the same instant in the site's timezone.
        number: 1-based number of the round within its schedule period (a night).
    """

    route: Route
    start: dt.datetime
    local: dt.datetime
    number: int

    @property
    def id(self) -> str:
        """``<route>@<local start YYYY-MM-DDTHH:MM>``: stable across restarts."""
        return f"{self.route.cfg.id}@{self.local:%Y-%m-%dT%H:%M}"


class Plan:
    """Lookups and schedule arithmetic over one ``[patrol]`` section.

    Args:
        patrol: the validated section (cross-checked by the root model).
        timezone: IANA name of the site's timezone.

    Raises:
        zoneinfo.ZoneInfoNotFoundError: unknown timezone (the config check
            refuses it first).
    """

    def __init__(self, patrol: PatrolConfig, timezone: str) -> None:
        self.cfg = patrol
        self.tz = ZoneInfo(timezone)
        checkpoints = {c.id: c for c in patrol.checkpoints}
        self.routes: tuple[Route, ...] = tuple(
            Route(
                r,
                tuple(
                    Stop(
                        i,
                        checkpoints[s.checkpoint],
                        dt.timedelta(minutes=s.offset_min),
                        dt.timedelta(minutes=s.window_min),
                        dt.timedelta(minutes=s.tolerance_min),
                    )
                    for i, s in enumerate(r.stops)
                ),
            )
            for r in patrol.routes
        )
        self.checkpoint_by_tag: dict[str, CheckpointConfig] = {
            normalize_tag(c.tag): c for c in patrol.checkpoints
        }
        self.guard_by_card: dict[str, GuardConfig] = {
            normalize_tag(g.card): g for g in patrol.guards
        }
        self.guards: dict[str, GuardConfig] = {g.id: g for g in patrol.guards}
        self.readers: dict[str, ReaderConfig] = {r.id: r for r in patrol.readers}
        self.keep = dt.timedelta(hours=patrol.keep_rounds_h)
        skews = [r.clock_skew_s for r in patrol.readers] or [0.0]
        self.max_skew = dt.timedelta(seconds=max(skews))

    def stops_of(self, checkpoint_id: str) -> list[tuple[Route, Stop]]:
        """Every (route, stop) that visits ``checkpoint_id``."""
        return [(r, s) for r in self.routes for s in r.stops if s.checkpoint.id == checkpoint_id]

    def round_starts(
        self, route: Route, after: dt.datetime, until: dt.datetime
    ) -> list[RoundStart]:
        """Rounds of ``route`` whose start ``s`` has ``after < s <= until``, in time order.

        Args:
            route: one of :attr:`routes`.
            after: exclusive lower bound (aware).
            until: inclusive upper bound (aware).
        """
        schedule = route.cfg.schedule
        offsets = schedule.offsets()
        longest = offsets[-1] if offsets else dt.timedelta(0)
        first_day = (after.astimezone(self.tz) - longest).date() - dt.timedelta(days=1)
        last_day = until.astimezone(self.tz).date()
        found: list[RoundStart] = []
        day = first_day
        while day <= last_day:
            if day.isoweekday() in schedule.days:
                midnight = dt.datetime.combine(day, dt.time(0), tzinfo=self.tz)
                for number, offset in enumerate(offsets, start=1):
                    local = _normalize(midnight + offset, self.tz)
                    start = local.astimezone(dt.UTC)
                    if after < start <= until:
                        found.append(RoundStart(route, start, local, number))
            day += dt.timedelta(days=1)
        found.sort(key=lambda r: r.start)
        return found


def _normalize(wall: dt.datetime, tz: ZoneInfo) -> dt.datetime:
    """A wall-clock time made real: through UTC and back (fixes times in a DST gap)."""
    return wall.astimezone(dt.UTC).astimezone(tz)
