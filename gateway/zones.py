"""Zones: turn input changes into alarms (the minimum alarm system of issue 2).

Rules (GB 50394):

* ``panic`` — 24 h zone, self-latching (§5.2.3): the press raises ``alarm.panic``
  ``active``; releasing the button changes nothing; only :meth:`ZoneEngine.reset`
  clears the latch (``cleared``), and only once the button is released.
* ``tamper`` — 24 h zone (§5.2.4): ``alarm.tamper`` ``active`` then ``cleared``.
* ``intrusion`` / ``perimeter`` — ``active`` on violation, ``cleared`` on restore.
  Every such zone counts as armed until areas and arming arrive (issue 4).

A zone found in alarm at start-up (the first reading of its module) is reported.
Each physical incident carries one ``incident`` id (the id of its ``active``
event) on its start and end. Device health transitions become
``fault.device_offline`` (``active``) and ``device.online`` (``instant``; after an
outage it carries the outage's ``incident``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog

from gateway.config import GatewayConfig, ModuleConfig, ZoneConfig
from gateway.observation import DeviceHealth, InputChanged, Observation
from gateway.schema import Event, EventFactory, State

log = structlog.get_logger(__name__)

Emit = Callable[[Event], Awaitable[Event]]

_ALARM_TYPE = {
    "panic": "alarm.panic",
    "intrusion": "alarm.intrusion",
    "perimeter": "alarm.perimeter",
    "tamper": "alarm.tamper",
}


@dataclass(slots=True)
class ZoneState:
    """Live state of one zone.

    Attributes:
        violated: the input is in its alarm condition now.
        alarm: an alarm is active (for a panic zone: latched).
        incident: id of the ``active`` event of the current alarm.
    """

    violated: bool = False
    alarm: bool = False
    incident: str | None = None


@dataclass(slots=True)
class ZoneEngine:
    """Applies the zone rules; every event it makes goes through ``emit``.

    Args:
        cfg: the gateway config (zones, modules).
        factory: makes events.
        emit: stores an event durably (the outbox's ``append``) and returns it.
    """

    cfg: GatewayConfig
    factory: EventFactory
    emit: Emit
    zones: dict[str, ZoneState] = field(default_factory=dict)
    _zone_cfg: dict[str, ZoneConfig] = field(default_factory=dict)
    _by_input: dict[tuple[str, int], ZoneConfig] = field(default_factory=dict)
    _modules: dict[str, ModuleConfig] = field(default_factory=dict)
    _offline_incident: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._modules = {m.id: m for m in self.cfg.modules}
        for zone in self.cfg.zones:
            self._zone_cfg[zone.id] = zone
            self._by_input[(zone.module, zone.input)] = zone
            self.zones[zone.id] = ZoneState()

    async def observe(self, obs: Observation) -> None:
        """Handle one observation from a driver."""
        if isinstance(obs, InputChanged):
            await self._input(obs)
        else:
            await self._health(obs)

    async def reset(self, zone_id: str) -> bool:
        """Clear a latched alarm (the center's ``reset`` command).

        Returns True when an alarm was cleared; False when the zone had none or
        its input is still violated (a held panic button stays latched).

        Raises:
            KeyError: unknown zone id.
        """
        zone = self._zone_cfg[zone_id]
        state = self.zones[zone_id]
        if not state.alarm or state.violated:
            return False
        await self._alarm_event(zone, state, "cleared", None, {"reset": True})
        return True

    async def _input(self, obs: InputChanged) -> None:
        zone = self._by_input.get((obs.device_id, obs.channel))
        if zone is None:
            return
        state = self.zones[zone.id]
        state.violated = obs.closed if zone.contact == "NO" else not obs.closed
        if state.violated and not state.alarm:
            await self._alarm_event(zone, state, "active", obs.received_at)
        elif not state.violated and state.alarm:
            if zone.type == "panic":
                log.info("zone.released_still_latched", zone=zone.id)
            else:
                await self._alarm_event(zone, state, "cleared", obs.received_at)

    async def _alarm_event(
        self,
        zone: ZoneConfig,
        state: ZoneState,
        kind: State,
        received_at: datetime | None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        event = self.factory.make(
            _ALARM_TYPE[zone.type],
            device=zone.module,
            subject=zone.id,
            state=kind,
            data={
                "name": zone.name,
                "location": zone.location,
                "zone_type": zone.type,
                "module": zone.module,
                "input": zone.input,
                "latched": zone.type == "panic" and kind == "active",
                **(extra or {}),
            },
            received_at=received_at,
            incident=state.incident,
            opens_incident=kind == "active",
        )
        state.alarm = kind == "active"
        state.incident = event.id if state.alarm else None
        await self.emit(event)
        log.info("zone.alarm", zone=zone.id, type=event.type, state=kind, id=event.id)

    async def _health(self, obs: DeviceHealth) -> None:
        module = self._modules.get(obs.device_id)
        data: dict[str, Any] = {
            "name": module.name if module else obs.device_id,
            "location": module.location if module else "",
            "reason": obs.reason,
            "failures": obs.failures,
        }
        if obs.state == "offline" and obs.device_id not in self._offline_incident:
            event = self._device_event(obs, "fault.device_offline", "active", data)
            self._offline_incident[obs.device_id] = event.id
            await self.emit(event)
        elif obs.state == "online":
            incident = self._offline_incident.pop(obs.device_id, None)
            await self.emit(self._device_event(obs, "device.online", "instant", data, incident))

    def _device_event(
        self,
        obs: DeviceHealth,
        type_: str,
        state: State,
        data: dict[str, Any],
        incident: str | None = None,
    ) -> Event:
        return self.factory.make(
            type_,
            device=obs.device_id,
            subject=obs.device_id,
            state=state,
            data=data,
            received_at=obs.received_at,
            incident=incident,
            opens_incident=state == "active",
        )
