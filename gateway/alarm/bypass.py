"""Zone bypass: a zone's violations are ignored for a while (its faults are not).

A bypass lasts until its expiry time, until an ``unbypass``, or — with no expiry
— until the zone's area is disarmed (how a forced arming leaves an open window
out). Panic zones are never bypassed (GB 50394 §5.2.3). Each bypass is persisted
together with its report (``zone.bypassed`` ``active``, SIA BB; one state-store
transaction, :meth:`~gateway.runtime.state_store.StateStore.report`), and its end
with ``zone.bypassed`` ``cleared`` (SIA BU, the same ``incident``): a power cut
never leaves a bypass the center was not told of.
When a bypass ends, the zone is evaluated again: a zone still open in an armed
area alarms at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

import structlog

from gateway.config.alarm import ZoneConfig, ZoneRule
from gateway.errors import CommandRefused
from gateway.events.model import Emit, Event, EventFactory, State, rfc3339
from gateway.runtime.state import BYPASS
from gateway.runtime.state_store import BypassRecord, StateStore
from gateway.runtime.timebase import Clock, Timers

log = structlog.get_logger(__name__)


class Zones(Protocol):
    """What bypasses and walk tests need of the zone engine
    (:class:`gateway.alarm.zones.ZoneEngine`)."""

    @property
    def factory(self) -> EventFactory: ...

    @property
    def emit(self) -> Emit: ...

    @property
    def config(self) -> Mapping[str, ZoneConfig]: ...

    @property
    def rules(self) -> Mapping[str, ZoneRule]: ...

    async def evaluate(self, zone_id: str, received_at: datetime | None = None) -> None: ...


class Bypasses:
    """The bypassed zones of one :class:`~gateway.alarm.zones.ZoneEngine`.

    Args:
        engine: the zones (config, events, re-evaluation).
        store: where bypasses are persisted; those found there are restored.
        timers: runs the expiry timers.
        clock: the rules' time.
    """

    def __init__(self, engine: Zones, store: StateStore, timers: Timers, clock: Clock) -> None:
        self._engine = engine
        self._store = store
        self._timers = timers
        self._clock = clock
        for zone_id, record in store.bypasses.items():
            if zone_id in engine.config and record.until is not None:
                self._arm_timer(zone_id, record.until)

    def active(self, zone_id: str) -> bool:
        """True while ``zone_id`` is bypassed."""
        return zone_id in self._store.bypasses

    def describe(self, zone_id: str) -> str | None:
        """``until`` as RFC 3339, ``"disarm"`` for until-disarm, or None when not bypassed."""
        record = self._store.bypasses.get(zone_id)
        if record is None:
            return None
        return rfc3339(record.until) if record.until is not None else "disarm"

    async def bypass(self, zone_id: str, *, until: datetime | None, by: str, reason: str) -> None:
        """Bypass ``zone_id`` until ``until`` (None: until its area is disarmed).

        Bypassing an already bypassed zone replaces its expiry (one new event).

        Raises:
            CommandRefused: unknown zone, a panic zone, or an expiry in the past.
        """
        zone = self._engine.config.get(zone_id)
        if zone is None:
            raise CommandRefused(f"no zone {zone_id!r}", command="bypass", reason="invalid")
        if not self._engine.rules[zone_id].bypassable:
            raise CommandRefused(
                f"zone {zone_id} is a {zone.type} zone: it cannot be bypassed (GB 50394 §5.2.3)",
                command="bypass",
            )
        if until is not None and until <= self._clock.now():
            raise CommandRefused("the bypass would end in the past", command="bypass")
        previous = self._store.bypasses.get(zone_id)
        data = {"until": rfc3339(until) if until else "disarm", "by": by, "reason": reason}
        event = self._event(zone_id, "active", None, data)
        events = [event]
        if previous is not None:
            renewed = {"by": by, "reason": "renewed"}
            events.insert(0, self._event(zone_id, "cleared", previous.incident, renewed))
        record = BypassRecord(until, by, reason, event.id)
        await self._store.report([BYPASS.write(zone_id, record)], events, self._engine.emit)
        self._timers.cancel(f"bypass:{zone_id}")
        if until is not None:
            self._arm_timer(zone_id, until)
        log.info("zone.bypassed", zone=zone_id, until=data["until"], by=by)

    async def unbypass(self, zone_id: str, *, by: str, reason: str = "command") -> bool:
        """End the bypass of ``zone_id``; False when it was not bypassed.

        Raises:
            CommandRefused: unknown zone.
        """
        if zone_id not in self._engine.config:
            raise CommandRefused(f"no zone {zone_id!r}", command="unbypass", reason="invalid")
        record = self._store.bypasses.get(zone_id)
        if record is None:
            return False
        self._timers.cancel(f"bypass:{zone_id}")
        ended = self._event(zone_id, "cleared", record.incident, {"by": by, "reason": reason})
        await self._store.report([BYPASS.write(zone_id, None)], [ended], self._engine.emit)
        log.info("zone.unbypassed", zone=zone_id, by=by, reason=reason)
        await self._engine.evaluate(zone_id)
        return True

    async def area_disarmed(self, zone_ids: list[str], by: str) -> None:
        """End the until-disarm bypasses of these zones (their area was disarmed)."""
        for zone_id in zone_ids:
            record = self._store.bypasses.get(zone_id)
            if record is not None and record.until is None:
                await self.unbypass(zone_id, by=by, reason="disarmed")

    def _arm_timer(self, zone_id: str, until: datetime) -> None:
        async def expire(_due: datetime) -> None:
            await self.unbypass(zone_id, by="gateway", reason="expired")

        self._timers.set(f"bypass:{zone_id}", until, expire)

    def _event(
        self, zone_id: str, state: State, incident: str | None, data: dict[str, Any]
    ) -> Event:
        zone = self._engine.config[zone_id]
        return self._engine.factory.make(
            "zone.bypassed",
            device=zone.module,
            subject=zone_id,
            state=state,
            data={"name": zone.name, "location": zone.location, "area": zone.area, **data},
            received_at=self._clock.now(),
            incident=incident,
            opens_incident=state == "active",
        )
