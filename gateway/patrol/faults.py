"""Patrol reader faults: offline/online and low battery, one event per transition.

* :class:`~gateway.events.observation.DeviceHealth` ``offline`` → ``fault.device_offline``
  ``active`` (opens an incident); ``online`` → ``device.online`` ``instant``
  (carrying the outage's incident after one). The same types as I/O modules, so
  the center treats every device alike.
* :class:`~gateway.events.patrol_observation.ReaderBattery` → ``fault.low_battery``
  ``active`` when the reader flags its battery low or its voltage is below the
  reader's ``low_battery_v``; ``cleared`` (same incident) when it is good again.
  Repeated low readings give no new event (STYLE.md rule 6: transitions, not
  readings).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog

from gateway.config.patrol import ReaderConfig
from gateway.events.model import Emit, Event, EventFactory, State
from gateway.events.observation import DeviceHealth
from gateway.events.patrol_observation import ReaderBattery

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class ReaderFaults:
    """Turns reader health and battery readings into fault events.

    Args:
        readers: reader id → its configuration (names, threshold).
        factory: makes events.
        emit: stores an event durably and returns it.

    Attributes:
        offline: reader id → incident id of its open ``fault.device_offline``.
        low_battery: reader id → incident id of its open ``fault.low_battery``.
    """

    readers: Mapping[str, ReaderConfig]
    factory: EventFactory
    emit: Emit
    offline: dict[str, str] = field(default_factory=dict)
    low_battery: dict[str, str] = field(default_factory=dict)

    async def health(self, obs: DeviceHealth) -> None:
        """Handle a health transition of a reader."""
        data = {"reason": obs.reason, "failures": obs.failures, "previous": obs.previous}
        if obs.state == "offline" and obs.device_id not in self.offline:
            event = await self._emit("fault.device_offline", obs.device_id, "active", data, obs)
            self.offline[obs.device_id] = event.id
        elif obs.state == "online":
            incident = self.offline.pop(obs.device_id, None)
            await self._emit("device.online", obs.device_id, "instant", data, obs, incident)

    async def battery(self, obs: ReaderBattery) -> None:
        """Handle a battery reading of a reader."""
        reader = self.readers.get(obs.reader_id)
        threshold = reader.low_battery_v if reader is not None else 0.0
        low = obs.flagged_low or (obs.volts is not None and obs.volts < threshold)
        incident = self.low_battery.get(obs.reader_id)
        if low == (incident is not None):
            return
        data = {"volts": obs.volts, "flagged_low": obs.flagged_low, "threshold_v": threshold}
        state: State = "active" if low else "cleared"
        event = await self._emit("fault.low_battery", obs.reader_id, state, data, obs, incident)
        if low:
            self.low_battery[obs.reader_id] = event.id
        else:
            del self.low_battery[obs.reader_id]

    async def _emit(
        self,
        type_: str,
        reader_id: str,
        state: State,
        data: dict[str, Any],
        obs: DeviceHealth | ReaderBattery,
        incident: str | None = None,
    ) -> Event:
        reader = self.readers.get(reader_id)
        received_at: datetime = obs.received_at
        event = self.factory.make(
            type_,
            device=reader_id,
            subject=reader_id,
            state=state,
            data={
                "name": reader.name if reader is not None and reader.name else reader_id,
                "location": reader.location if reader is not None else "",
                "reader_kind": reader.type if reader is not None else "unknown",
                **data,
            },
            received_at=received_at,
            incident=incident,
            opens_incident=state == "active",
        )
        log.info("patrol.reader_fault", reader=reader_id, type=type_, state=state, id=event.id)
        return await self.emit(event)
