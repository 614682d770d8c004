"""Device health transitions → ``fault.device_offline`` / ``device.online`` events.

Shared by every kind of device (STYLE.md rule 6: transitions, not failures, make
events): ``offline`` opens an incident with a ``fault.device_offline`` ``active``
event (once per outage); ``online`` gives ``device.online`` ``instant``, carrying
the outage's incident when there was one. ``data`` has the device's ``name``
and ``location``, the ``reason`` and ``failures`` of the transition, and
whatever the caller adds.

An open outage survives a restart: its incident is kept in the outbox with the
``fault.device_offline`` that opened it and deleted with the ``device.online`` that
closes it (kind ``device.offline``, :data:`OFFLINE`). A device still silent after
a restart is the same outage, not a second ``fault.device_offline``; one that
answers again closes the incident opened before (a review of 2026-12-06: an outage
over a restart opened a second incident, and the first was never closed).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.events.model import Event, EventFactory
from gateway.events.observation import DeviceHealth
from gateway.runtime.state import Kind, Recall, StoreWith, read_kept

OFFLINE: Kind[str] = Kind("device.offline", str, str)
"""``device.offline``/``<device id>``: the id of its open ``fault.device_offline``."""


def kept_outages(recall: Recall | None, device_ids: Iterable[str]) -> dict[str, str]:
    """Device id → incident of its outage kept open at the last stop, for
    ``device_ids`` (a device no longer configured is left out); empty when the kept
    state cannot be read (:func:`~gateway.runtime.state.read_kept`)."""
    ids = list(device_ids)
    return read_kept(recall, OFFLINE, lambda kept: {d: kept[d] for d in ids if d in kept}) or {}


@dataclass(slots=True)
class HealthEvents:
    """Makes and stores health events; remembers open outages by device id.

    Attributes:
        factory: makes events.
        emit: stores an event with kept state (the outbox's ``append`` or ``hold``)
            and returns it.
        offline: open outage incident (event id) by device id (restored ones:
            :func:`kept_outages`).
    """

    factory: EventFactory
    emit: StoreWith
    offline: dict[str, str] = field(default_factory=dict)
    _changed: set[str] = field(default_factory=set)  # devices whose outage changed here

    def learn(self, outages: Mapping[str, str]) -> None:
        """Outages kept open at the last stop, learnt late (the outbox could not be
        read at start): taken for the devices whose health has not changed since."""
        for device, incident in outages.items():
            if device not in self._changed:
                self.offline.setdefault(device, incident)

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
        device = obs.device_id
        if obs.state in ("offline", "online"):
            self._changed.add(device)
        if obs.state == "offline" and device not in self.offline:
            event = self._make(obs, "fault.device_offline", data, None)
            self.offline[device] = event.id
            return await self.emit(event, keep=[OFFLINE.write(device, event.id)])
        if obs.state == "online":
            incident = self.offline.pop(device, None)
            # Forgotten whether or not this process knew of it (a device back before
            # the kept state could be read must not stay "offline" in it).
            keep = [OFFLINE.write(device, None)]
            return await self.emit(self._make(obs, "device.online", data, incident), keep=keep)
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
