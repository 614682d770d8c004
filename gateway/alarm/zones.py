"""Zones: turn input readings into alarms, tamper and line-fault events (GB 50394).

Per zone (rules in :mod:`gateway.config.alarm`, wiring in :mod:`gateway.alarm.supervision`):

* ``panic`` — 24 h, always latching (§5.2.3): the press raises ``alarm.panic``
  ``active``; releasing it changes nothing; only :meth:`ZoneEngine.reset` clears
  the latch (``cleared``), and only once the button is released. Never bypassed.
* ``tamper``, ``technical`` — 24 h (§5.2.4): they alarm armed or disarmed.
* ``intrusion``, ``perimeter`` — alarm only while their area is armed (a zone
  without an area counts as always armed) and not bypassed.
* ``latch`` zones keep the alarm ``active`` after the input restores until a
  reset; other zones report ``cleared`` on restore, but not before ``hold_ms``
  after the alarm began (minimum hold time).
* Line supervision: a cut or short raises ``fault.line`` (priority 3) in every
  arming state, bypassed or not; on a zone that would alarm now (armed or 24 h,
  not bypassed) it is its alarm too — a cut cable must not hide an intruder. A
  paired tamper loop open raises ``alarm.tamper`` for the zone (24 h).

Each condition (alarm, tamper, line) carries one ``incident`` id — the id of its
``active`` event — on its start and end. Every active condition is kept with its
``active`` event in the outbox (one transaction) and deleted with its ``cleared``;
the state store (:class:`~gateway.runtime.state_store.StateStore`) follows once the
outbox has committed, so a restart neither repeats it nor loses its ``cleared``,
nor keeps one the outbox never stored (issue 14). Device health transitions
become ``fault.device_offline`` (``active``) and ``device.online`` (``instant``;
after an outage it carries the outage's ``incident``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog

from gateway.alarm.bypass import Bypasses
from gateway.alarm.supervision import ZoneInputs, ZoneReading, read_zone, update_analog
from gateway.alarm.walk_test import WalkTests
from gateway.config.alarm import EolLine, PairedLine, ZoneConfig, ZoneRule, zone_rule
from gateway.config.root import GatewayConfig, ModuleConfig
from gateway.events.model import Event, EventFactory, State
from gateway.events.observation import AnalogChanged, DeviceHealth, InputChanged, Observation
from gateway.runtime.device_health import HealthEvents
from gateway.runtime.state import ALARM, StoreWith
from gateway.runtime.state_store import AlarmRecord, StateStore
from gateway.runtime.timebase import Clock, SystemClock, Timers

log = structlog.get_logger(__name__)

AlarmHook = Callable[[ZoneConfig, Event], Awaitable[None]]


@dataclass(slots=True)
class Condition:
    """One reportable condition of a zone (its alarm, its tamper loop, its line).

    Attributes:
        active: the ``active`` event was sent and no ``cleared`` yet.
        incident: id of that ``active`` event.
        since: when it became active (wall time, as stored and reported).
        since_mono: when it became active on the clock's monotonic seconds (None
            for a condition restored from the state file at start).
        detail: for the line: ``cut`` or ``short``.
    """

    active: bool = False
    incident: str | None = None
    since: datetime | None = None
    since_mono: float | None = None
    detail: str = ""


@dataclass(slots=True)
class ZoneState:
    """Live state of one zone.

    Attributes:
        inputs: last raw readings of its inputs.
        reading: what its wiring says now (None until every input was read).
        alarm, tamper, line: its reportable conditions.
        acknowledged: the center acknowledged the current alarm (``ack``).
    """

    inputs: ZoneInputs = field(default_factory=ZoneInputs)
    reading: ZoneReading | None = None
    alarm: Condition = field(default_factory=Condition)
    tamper: Condition = field(default_factory=Condition)
    line: Condition = field(default_factory=Condition)
    acknowledged: bool = False

    @property
    def violated(self) -> bool:
        """The zone is in alarm condition now: its detector, or a fault on its line."""
        r = self.reading
        return r is not None and (r.violated or r.line != "ok")


class ZoneEngine:
    """Applies the zone rules; every event it makes goes through ``emit``.

    Args:
        cfg: the gateway config (zones, zone types, modules).
        factory: makes events.
        emit: stores an event durably (the outbox's ``append``) and returns it; an
            alarm, tamper or line condition is kept with its event (``keep``).
        store: the persisted alarm state (open conditions, bypasses).
        timers: runs hold and bypass-expiry timers (its task is run by the owner).
        clock: the rules' time.
        armed: area id (or None) → is it armed now.
        on_alarm: awaited after an alarm or tamper became active (sirens).
        outages: module id → incident of its outage kept open at the last stop
            (:func:`gateway.runtime.device_health.kept_outages`).
    """

    def __init__(
        self,
        cfg: GatewayConfig,
        factory: EventFactory,
        emit: StoreWith,
        *,
        store: StateStore,
        timers: Timers,
        clock: Clock | None = None,
        armed: Callable[[str | None], bool] = lambda _area: True,
        on_alarm: AlarmHook | None = None,
        outages: Mapping[str, str] | None = None,
    ) -> None:
        self.factory = factory
        self.emit = emit
        self._store = store
        self._timers = timers
        self._clock: Clock = clock or SystemClock()
        self._armed = armed
        self._on_alarm = on_alarm
        self.zones: dict[str, ZoneState] = {}
        """Live state per zone id."""
        self.config: dict[str, ZoneConfig] = {}
        self.rules: dict[str, ZoneRule] = {}
        self._by_di: dict[tuple[str, int], ZoneConfig] = {}
        self._by_ai: dict[tuple[str, int], ZoneConfig] = {}
        self._modules: dict[str, ModuleConfig] = {m.id: m for m in cfg.modules}
        self._health_events = HealthEvents(factory, emit, dict(outages or {}))
        for zone in cfg.zones:
            self.config[zone.id] = zone
            self.rules[zone.id] = zone_rule(zone, cfg.zone_types)
            state = self.zones[zone.id] = ZoneState()
            if isinstance(zone.line, EolLine):
                self._by_ai[(zone.module, zone.input)] = zone
            else:
                self._by_di[(zone.module, zone.input)] = zone
            if isinstance(zone.line, PairedLine):
                self._by_di[(zone.module, zone.line.tamper_input)] = zone
            for name in ("alarm", "tamper", "line"):
                record = store.alarms.get(f"{zone.id}/{name}")
                if record is not None:
                    condition: Condition = getattr(state, name)
                    condition.active, condition.incident = True, record.incident
                    condition.since, condition.detail = record.since, record.detail
        self.bypasses = Bypasses(self, store, timers, self._clock)
        self.walk = WalkTests(self, cfg.walk_test, [a.id for a in cfg.areas], store, self._clock)

    # -- observations ---------------------------------------------------------------

    async def observe(self, obs: Observation) -> None:
        """Handle one observation from a driver (other kinds are not ours: ignored)."""
        if isinstance(obs, InputChanged):
            zone = self._by_di.get((obs.device_id, obs.channel))
            if zone is not None:
                self.zones[zone.id].inputs.closed[obs.channel] = obs.closed
                await self.evaluate(zone.id, obs.received_at)
        elif isinstance(obs, AnalogChanged):
            zone = self._by_ai.get((obs.device_id, obs.channel))
            if zone is not None:
                update_analog(zone, self.zones[zone.id].inputs, obs.value)
                await self.evaluate(zone.id, obs.received_at)
        elif isinstance(obs, DeviceHealth):
            await self._health(obs)

    async def evaluate(self, zone_id: str, received_at: datetime | None = None) -> None:
        """Re-apply the rules to ``zone_id`` (after a reading, an arming, a bypass change)."""
        zone, state = self.config[zone_id], self.zones[zone_id]
        reading = read_zone(zone, state.inputs)
        if reading is None:
            return
        before, state.reading = state.reading, reading
        testing = self.walk.covers(zone_id)
        if testing:
            await self._walk_trips(zone_id, before, reading, received_at)
        raw: dict[str, Any] = {"value": reading.raw} if reading.raw is not None else {}
        if state.line.active and state.line.detail != reading.line:
            await self._end(zone, "line", "fault.line", received_at, {"condition": "ok", **raw})
        if reading.line != "ok" and not state.line.active:
            fault = {"condition": reading.line, **raw}
            await self._start(zone, "line", "fault.line", received_at, fault, detail=reading.line)
        if reading.tamper != state.tamper.active:
            tamper: dict[str, Any] = {"condition": "tamper"}
            if reading.tamper and not testing:
                await self._start(zone, "tamper", "alarm.tamper", received_at, tamper)
            elif not reading.tamper:
                await self._end(zone, "tamper", "alarm.tamper", received_at, tamper)
        await self._update_alarm(zone, state, received_at, testing)

    async def _walk_trips(
        self,
        zone_id: str,
        before: ZoneReading | None,
        reading: ZoneReading,
        received_at: datetime | None,
    ) -> None:
        """A zone under walk test: each new violation, tamper or line fault is a trip."""
        if before is None:
            return  # the first reading after start: a state found, not a trip seen
        if reading.line != "ok" and before.line != reading.line:
            await self.walk.trip(zone_id, reading.line, received_at)
        elif reading.violated and not before.violated and before.line == "ok":
            await self.walk.trip(zone_id, "alarm", received_at)
        if reading.tamper and not before.tamper:
            await self.walk.trip(zone_id, "tamper", received_at)

    # -- commands ----------------------------------------------------------------------

    def would_alarm(self, zone_id: str) -> bool:
        """True when a violation of ``zone_id`` raises its alarm now (armed or 24 h,
        not bypassed)."""
        zone, rule = self.config[zone_id], self.rules[zone_id]
        return (rule.twenty_four_hour or self._armed(zone.area)) and not self.bypasses.active(
            zone_id
        )

    async def reset(self, zone_id: str) -> bool:
        """Clear an alarm (the center's ``reset`` command), latched or held.

        Returns True when an alarm was cleared; False when the zone had none or is
        still violated where it would alarm again (a held panic button stays
        latched).

        Raises:
            KeyError: unknown zone id.
        """
        state = self.zones[zone_id]
        if not state.alarm.active or (state.violated and self.would_alarm(zone_id)):
            return False
        self._timers.cancel(f"hold:{zone_id}")
        await self._end(self.config[zone_id], "alarm", None, None, {"reset": True})
        return True

    def acknowledge(self, zone_id: str) -> bool:
        """Mark the zone's active alarm acknowledged; False when it has none.

        Raises:
            KeyError: unknown zone id.
        """
        state = self.zones[zone_id]
        if not state.alarm.active:
            return False
        state.acknowledged = True
        return True

    def not_ready(self, zone_ids: list[str]) -> list[str]:
        """Of ``zone_ids``, those violated now and not bypassed (they would alarm on arming)."""
        return [
            z
            for z in zone_ids
            if self.zones[z].violated
            and not self.rules[z].twenty_four_hour
            and not self.bypasses.active(z)
        ]

    def learn_outages(self, outages: Mapping[str, str]) -> None:
        """Modules' outages kept open at the last stop, learnt late (the outbox could
        not be read at start)."""
        self._health_events.learn(outages)

    @property
    def offline_modules(self) -> frozenset[str]:
        """Ids of the modules reported offline and not back yet."""
        return frozenset(self._health_events.offline)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Every zone's state for ``get_state`` (JSON-ready)."""
        out: dict[str, dict[str, Any]] = {}
        for zone_id, state in self.zones.items():
            zone, rule = self.config[zone_id], self.rules[zone_id]
            out[zone_id] = {
                "type": zone.type,
                "area": zone.area,
                "violated": state.violated if state.reading is not None else None,
                "alarm": state.alarm.active,
                "incident": state.alarm.incident,
                "latched": state.alarm.active and rule.latch,
                "acknowledged": state.acknowledged,
                "tamper": state.tamper.active,
                "line": state.line.detail if state.line.active else "ok",
                "bypassed": self.bypasses.describe(zone_id),
            }
        return out

    # -- rules ------------------------------------------------------------------------

    async def _update_alarm(
        self, zone: ZoneConfig, state: ZoneState, received_at: datetime | None, testing: bool
    ) -> None:
        rule = self.rules[zone.id]
        if state.violated and not state.alarm.active and self.would_alarm(zone.id):
            if testing:
                return  # a walk-test trip, not an alarm
            reading = state.reading
            line = {"line": reading.line} if reading is not None and reading.line != "ok" else {}
            await self._start(zone, "alarm", None, received_at, line)
        elif not state.violated and state.alarm.active and not rule.latch:
            left = self._hold_left(state.alarm, rule.hold_ms / 1000)
            if left > 0:
                self._timers.set_after(f"hold:{zone.id}", left, lambda _t: self.evaluate(zone.id))
                return
            await self._end(zone, "alarm", None, received_at, {"restored": True})
        elif not state.violated and state.alarm.active:
            log.info("zone.restored_still_latched", zone=zone.id)

    def _hold_left(self, alarm: Condition, hold_s: float) -> float:
        """Seconds the alarm must still stay active, on the monotonic clock (a step of
        the wall clock lengthens or shortens no hold; issue 11). An alarm restored
        from the state file at start has only its wall ``since``: its time served
        is taken from that, never below 0 nor above the hold."""
        if alarm.since_mono is not None:
            served = self._clock.monotonic() - alarm.since_mono
        elif alarm.since is not None:
            served = min(max((self._clock.now() - alarm.since).total_seconds(), 0.0), hold_s)
        else:
            served = 0.0
        return hold_s - served

    async def _start(
        self,
        zone: ZoneConfig,
        name: str,
        type_: str | None,
        received_at: datetime | None,
        extra: dict[str, Any],
        *,
        detail: str = "",
    ) -> None:
        """Raise one condition: the event and its record in one outbox transaction (the
        durable record: a cut right after it leaves the condition open); the state
        store's memory at once, its file once the outbox has committed."""
        condition: Condition = getattr(self.zones[zone.id], name)
        event = self._event(zone, name, type_, "active", received_at, None, extra)
        now = self._clock.now()
        key = f"{zone.id}/{name}"
        record = AlarmRecord(event.type, event.id, now, detail)
        stored = await self.emit(event, keep=[ALARM.write(key, record)])
        condition.active, condition.incident, condition.since = True, event.id, now
        condition.since_mono = self._clock.monotonic()
        condition.detail = detail
        await self._store.put_alarm(key, record)
        log.info("zone.raised", zone=zone.id, type=event.type, condition=name, id=event.id)
        if name == "alarm":
            self.zones[zone.id].acknowledged = False
        if name in ("alarm", "tamper") and self._on_alarm is not None:
            await self._on_alarm(zone, stored)

    async def _end(
        self,
        zone: ZoneConfig,
        name: str,
        type_: str | None,
        received_at: datetime | None,
        extra: dict[str, Any],
    ) -> None:
        condition: Condition = getattr(self.zones[zone.id], name)
        event = self._event(zone, name, type_, "cleared", received_at, condition.incident, extra)
        await self.emit(event, keep=[ALARM.write(f"{zone.id}/{name}", None)])
        condition.active, condition.incident, condition.since, condition.detail = (
            False,
            None,
            None,
            "",
        )
        condition.since_mono = None
        await self._store.put_alarm(f"{zone.id}/{name}", None)
        log.info("zone.cleared", zone=zone.id, type=event.type, condition=name, id=event.id)

    def _event(
        self,
        zone: ZoneConfig,
        name: str,
        type_: str | None,
        state: State,
        received_at: datetime | None,
        incident: str | None,
        extra: dict[str, Any],
    ) -> Event:
        rule = self.rules[zone.id]
        data: dict[str, Any] = {**zone.event_fields(), **extra}
        if name == "alarm":
            data["latched"] = rule.latch and state == "active"
        return self.factory.make(
            type_ or f"alarm.{zone.type}",
            device=zone.module,
            subject=zone.id,
            state=state,
            data=data,
            received_at=received_at or self._clock.now(),
            incident=incident,
            opens_incident=state == "active",
        )

    # -- device health ---------------------------------------------------------------

    async def _health(self, obs: DeviceHealth) -> None:
        module = self._modules.get(obs.device_id)
        name = module.name if module else obs.device_id
        await self._health_events.transition(obs, name, module.location if module else "")
