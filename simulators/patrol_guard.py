"""Simulated guards walking tour routes, through each kind of patrol reader.

A :class:`Walk` is one guard doing one round of a route: at a configurable pace
(seconds between checkpoints), starting late or not, skipping checkpoints, or
walking them in another order. :class:`PatrolDevices` are the simulated readers a
walk goes through: checkpoint stations (the guard holds their card to the
station at the checkpoint), a phone-app bridge (the app sends each scan live) and
a handheld reader (it stores each scan; :meth:`PatrolDevices.upload` sends the
batch, as late as the scenario wants).

Time comes from a ``now`` callable and passes with a ``sleep`` callable, so a test
can walk a whole night on a controllable clock without waiting.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from gateway.config.patrol import GuardConfig, RouteConfig, StationReaderConfig
from gateway.config.root import GatewayConfig
from simulators.patrol_readers import Handheld, PhoneApp
from simulators.patrol_station import SimulatedStation

Via = Literal["auto", "station", "network", "handheld"]


@dataclass(frozen=True, slots=True)
class Step:
    """One checkpoint visit: which checkpoint, its tag, when (aware)."""

    checkpoint: str
    tag: str
    at: dt.datetime


@dataclass(frozen=True, slots=True)
class Walk:
    """One guard walking one round of a route.

    Attributes:
        route: the route.
        guard: the guard (their card is what a station reads).
        tags: checkpoint id → tag.
        pace_s: seconds between consecutive checkpoints.
        late_s: seconds after the round's start the guard sets off.
        skip: checkpoint ids the guard does not visit.
        order: checkpoint ids in the order walked; the route's order when None.
    """

    route: RouteConfig
    guard: GuardConfig
    tags: dict[str, str]
    pace_s: float = 60.0
    late_s: float = 0.0
    skip: frozenset[str] = frozenset()
    order: tuple[str, ...] | None = None

    @classmethod
    def of(
        cls,
        cfg: GatewayConfig,
        route_id: str,
        guard_id: str | None = None,
        *,
        pace_s: float = 60.0,
        late_s: float = 0.0,
        skip: frozenset[str] = frozenset(),
        order: tuple[str, ...] | None = None,
    ) -> Walk:
        """A walk of ``route_id`` by ``guard_id`` (the first guard when None).

        Raises:
            KeyError: no such route or guard.
            ValueError: the config has no guards.
        """
        routes = {r.id: r for r in cfg.patrol.routes}
        guards = {g.id: g for g in cfg.patrol.guards}
        if not guards:
            raise ValueError("the config has no [[patrol.guards]]")
        guard = guards[guard_id] if guard_id is not None else next(iter(guards.values()))
        tags = {c.id: c.tag for c in cfg.patrol.checkpoints}
        return cls(routes[route_id], guard, tags, pace_s, late_s, skip, order)

    def steps(self, start: dt.datetime) -> list[Step]:
        """The visits of a round starting at ``start``."""
        order = self.order or tuple(s.checkpoint for s in self.route.stops)
        visits = [cp for cp in order if cp not in self.skip]
        begin = start + dt.timedelta(seconds=self.late_s)
        return [
            Step(cp, self.tags[cp], begin + dt.timedelta(seconds=self.pace_s * n))
            for n, cp in enumerate(visits)
        ]


@dataclass(slots=True)
class PatrolDevices:
    """The simulated readers a guard's scans go through.

    Attributes:
        stations: checkpoint id → the station standing there.
        app: the phone-app bridge, or None.
        handheld: the handheld reader, or None.
        log: one line per delivered scan, for the console and tests.
    """

    stations: dict[str, SimulatedStation] = field(default_factory=dict)
    app: PhoneApp | None = None
    handheld: Handheld | None = None
    handheld_address: tuple[str, int] | None = None
    log: list[str] = field(default_factory=list)

    async def deliver(self, walk: Walk, step: Step, via: Via) -> str:
        """One scan through the reader ``via`` says (``auto``: the checkpoint's station,
        else the app, else the handheld). Returns the reader kind used.

        Raises:
            ValueError: the asked reader kind is not there.
        """
        kind = self._choose(step.checkpoint, via)
        if kind == "station":
            self.stations[step.checkpoint].read_card(walk.guard.card, step.at)
        elif kind == "network" and self.app is not None:
            await self.app.hit(step.tag, step.at, guard=walk.guard.id)
        elif self.handheld is not None:
            self.handheld.scan(step.tag, step.at)
        self.log.append(f"{step.at.isoformat()} {walk.guard.id} {step.checkpoint} via {kind}")
        return kind

    async def upload(self) -> str:
        """Upload the handheld's stored scans; returns the gateway's answer.

        Raises:
            ValueError: no handheld or no address for it.
            ReaderLinkError: the upload failed.
        """
        if self.handheld is None or self.handheld_address is None:
            raise ValueError("no handheld reader to upload from")
        host, port = self.handheld_address
        answer = await self.handheld.upload(host, port)
        self.log.append(f"handheld upload: {answer}")
        return answer

    def _choose(self, checkpoint: str, via: Via) -> str:
        if via in ("auto", "station") and checkpoint in self.stations:
            return "station"
        if via in ("auto", "network") and self.app is not None:
            return "network"
        if via in ("auto", "handheld") and self.handheld is not None:
            return "handheld"
        raise ValueError(f"no {via} reader for checkpoint {checkpoint!r}")


async def walk_round(
    walk: Walk,
    devices: PatrolDevices,
    start: dt.datetime,
    *,
    via: Via = "auto",
    now: Callable[[], dt.datetime],
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> list[Step]:
    """Walk one round: wait until each visit's time on ``now``, then scan.

    With a handheld, the guard signs in with their card first. Returns the steps walked.
    """
    steps = walk.steps(start)
    if devices.handheld is not None and via in ("handheld", "auto") and steps:
        devices.handheld.scan(walk.guard.card, steps[0].at - dt.timedelta(seconds=1))
    for step in steps:
        wait = (step.at - now()).total_seconds()
        if wait > 0:
            await sleep(wait)
        await devices.deliver(walk, step, via)
    return steps


def station_configs(cfg: GatewayConfig) -> Sequence[StationReaderConfig]:
    """The station readers of a config."""
    return [r for r in cfg.patrol.readers if isinstance(r, StationReaderConfig)]
