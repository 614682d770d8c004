"""The intrusion alarm system of one gateway: zones, areas, schedules, outputs, commands.

:class:`AlarmSystem` wires the rules together and is what the daemon talks to:
drivers' observations go to :meth:`AlarmSystem.observe`, the center's commands
to the handlers of :mod:`gateway.alarm.commands` (the daemon hands them to the
command processor), and :meth:`AlarmSystem.run` runs the timers (schedule
boundaries, bypass expiry, hold times, siren durations) for the life of the
daemon. Everything here is local: arming, alarms and sirens work with the
uplink down; the outbox carries the events when it comes back.

Arming (:meth:`AlarmSystem.arm`): an area with open zones (violated, not
bypassed, not 24 h) is refused unless forced; a forced arming — and every
arming by the schedule, which cannot ask — bypasses those zones until the area
is disarmed and says so (``zone.bypassed``, reason ``open at arming``).
Disarming ends those bypasses and silences the outputs linked to the area.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import datetime
from zoneinfo import ZoneInfo

import structlog

from gateway.alarm.areas import AreaBook
from gateway.alarm.outputs import Outputs, Writer
from gateway.alarm.schedule import Scheduler, Timetable
from gateway.alarm.status import StatusBook
from gateway.alarm.zones import ZoneEngine
from gateway.config.alarm import ZoneConfig
from gateway.config.root import GatewayConfig
from gateway.errors import CommandRefused
from gateway.events.model import Event, EventFactory
from gateway.events.observation import DeviceHealth, Observation
from gateway.runtime.state import StoreWith
from gateway.runtime.state_store import StateStore
from gateway.runtime.timebase import Clock, SystemClock, Timers

log = structlog.get_logger(__name__)


class AlarmSystem:
    """Zones, areas, schedules and outputs of one gateway.

    Call :meth:`start` once (restores and persists state, applies a schedule
    boundary missed while off), then run :meth:`run` as a task.

    Args:
        cfg: the gateway config.
        factory: makes events.
        emit: stores an event durably with kept state (the outbox's ``append``) and
            returns it.
        store: the persisted alarm state (opened by the caller).
        writer: switches a module's coil (module id, channel, on).
        clock: the rules' time; the system clock when omitted.
        outages: module id → incident of its outage kept open at the last stop.

    Attributes:
        zones, areas, outputs, scheduler, timers: the parts.
        walk: the walk test (maintenance mode) of the zones.
        status: one state per zone and area, for dashboards and the bench page.
    """

    def __init__(
        self,
        cfg: GatewayConfig,
        factory: EventFactory,
        emit: StoreWith,
        *,
        store: StateStore,
        writer: Writer,
        clock: Clock | None = None,
        outages: Mapping[str, str] | None = None,
    ) -> None:
        self.cfg = cfg
        self._arming = asyncio.Lock()  # a command and a schedule boundary at once
        self.clock: Clock = clock or SystemClock()
        self.timers = Timers(self.clock)
        self.store = store
        self.areas = AreaBook(cfg, store, factory, emit, self.clock)
        self.outputs = Outputs(cfg, factory, emit, writer, timers=self.timers, clock=self.clock)
        self.zones = ZoneEngine(
            cfg,
            factory,
            emit,
            store=store,
            timers=self.timers,
            clock=self.clock,
            armed=self.areas.armed,
            on_alarm=self._alarm_raised,
            outages=outages,
        )
        self.walk = self.zones.walk
        self.status = StatusBook(self.zones, self.areas, self.clock.now, walk=self.walk.probe)
        tz = ZoneInfo(cfg.site.timezone)
        schedules = {s.id: s for s in cfg.schedules}
        self.scheduler = Scheduler(
            {
                a.id: Timetable(schedules[a.schedule], tz)
                for a in cfg.areas
                if a.schedule is not None
            },
            self._scheduled,
            timers=self.timers,
            clock=self.clock,
            store=store,
        )

    async def start(self) -> None:
        """Persist first-start area states, catch up with the schedule, and end a walk
        test whose time ran out while the gateway was off.

        Raises:
            StateError: the alarm state cannot be written.
        """
        await self.areas.start()
        await self.scheduler.start()
        await self.walk.resume()

    async def run(self) -> None:
        """Run the timers and the walk test's clock until cancelled."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.timers.run(), name="alarm-timers")
            tg.create_task(self.walk.run(), name="walk-test")

    async def observe(self, obs: Observation) -> None:
        """A driver's observation: the zone rules, then outputs of a module back online."""
        await self.zones.observe(obs)
        if isinstance(obs, DeviceHealth) and obs.state == "online":
            await self.outputs.device_online(obs.device_id)

    async def arm(
        self, area_id: str, *, by: str, force: bool = False, at: datetime | None = None
    ) -> list[str]:
        """Arm ``area_id``; returns the open zones bypassed for it (forced arming).

        Raises:
            CommandRefused: unknown area, or open zones and not ``force``.
            StateError: the new state cannot be persisted.
        """
        members = self._members(area_id, "arm")
        async with self._arming:
            return await self._arm(area_id, members, by=by, force=force, at=at)

    async def _arm(
        self, area_id: str, members: list[str], *, by: str, force: bool, at: datetime | None
    ) -> list[str]:
        if self.areas.armed(area_id):
            return []
        open_zones = self.zones.not_ready(members)
        if open_zones and not force:
            raise CommandRefused(
                f"area {area_id} has open zones: {', '.join(open_zones)} (force to bypass them)",
                command="arm",
                reason="not_ready",
            )
        for zone_id in open_zones:
            await self.zones.bypasses.bypass(zone_id, until=None, by=by, reason="open at arming")
        await self.areas.set(area_id, True, by=by, at=at, data={"bypassed": open_zones})
        for zone_id in members:
            await self.zones.evaluate(zone_id)
        return open_zones

    async def disarm(self, area_id: str, *, by: str, at: datetime | None = None) -> list[str]:
        """Disarm ``area_id``: end its until-disarm bypasses, silence its outputs.

        Returns:
            The outputs silenced.

        Raises:
            CommandRefused: unknown area.
            StateError: the new state cannot be persisted.
        """
        members = self._members(area_id, "disarm")
        async with self._arming:
            if not await self.areas.set(area_id, False, by=by, at=at):
                return []
            await self.zones.bypasses.area_disarmed(members, by)
        linked = sorted({o for z in members for o in self.outputs.linked(self.zones.config[z])})
        return await self.outputs.silence(linked, f"area {area_id} disarmed")

    def _members(self, area_id: str, command: str) -> list[str]:
        if area_id not in self.areas.config:
            raise CommandRefused(f"no area {area_id!r}", command=command, reason="invalid")
        return self.areas.members[area_id]

    async def _scheduled(self, area_id: str, armed: bool, at: datetime) -> None:
        if armed:
            bypassed = await self.arm(area_id, by="schedule", force=True, at=at)
            log.info("schedule.armed", area=area_id, bypassed=bypassed)
        else:
            await self.disarm(area_id, by="schedule", at=at)
            log.info("schedule.disarmed", area=area_id)

    async def _alarm_raised(self, zone: ZoneConfig, event: Event) -> None:
        await self.outputs.on_alarm(zone, event)
