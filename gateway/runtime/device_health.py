"""Device health transitions → ``fault.device_offline`` / ``device.online`` events.

Shared by every kind of device (STYLE.md rule 6: transitions, not failures, make
events): ``offline`` opens an incident with a ``fault.device_offline`` ``active``
event (once per outage); ``online`` gives ``device.online`` ``instant``, carrying
the outage's incident when there was one. ``data`` has the device's ``name``
and ``location``, the ``reason`` and ``failures`` of the transition, and
whatever the caller adds.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.events.model import Event, EventFactory
from gateway.events.observation import DeviceHealth


@dataclass(slots=True)
class HealthEvents:
    """Makes and stores health events; remembers open outages by device id.

    Attributes:
        factory: makes events.
        emit: stores an event (the outbox's ``append``) and returns it.
        offline: open outage incident (event id) by device id.
    """

    factory: EventFactory
    emit: Callable[[Event], Awaitable[Event]]
    offline: dict[str, str] = field(default_factory=dict)

    async def transition(
        self,
        obs: DeviceHealth,
        name: str,
        location: str,
        extra: Mapping[str, Any] | None = None,
    ) -> Event | None:
        """Store the event for ``obs``; None for a transition that makes none."""
        data: dict[str, Any] = {
            "name": name,
            "location": location,
            "reason": obs.reason,
            "failures": obs.failures,
            **(extra or {}),
        }
        if obs.state == "offline" and obs.device_id not in self.offline:
            event = self._make(obs, "fault.device_offline", data, None)
            self.offline[obs.device_id] = event.id
            return await self.emit(event)
        if obs.state == "online":
            incident = self.offline.pop(obs.device_id, None)
            return await self.emit(self._make(obs, "device.online", data, incident))
        return None

    def _make(
        self, obs: DeviceHealth, type_: str, data: dict[str, Any], incident: str | None
    ) -> Event:
        active = type_ == "fault.device_offline"
        return self.factory.make(
            type_,
            device=obs.device_id,
            subject=obs.device_id,
            state="active" if active else "instant",
            data=data,
            received_at=obs.received_at,
            incident=incident,
            opens_incident=active,
        )
