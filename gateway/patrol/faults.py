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

* :class:`~gateway.events.patrol_observation.ReaderRejected` → ``fault.reader_rejected``
  ``instant``: connections to a keyed reader's port that did not answer the
  challenge. The driver hands on the first of each reason at once, then at most
  one a minute with the count refused in between (``refused_since``,
  :data:`drivers.patrol_reader.lines.REJECTED_EVERY_S`): someone on the network
  trying to send reads, or a reader whose key is wrong, must reach the duty room,
  a flood of them must not reach the engine.

Open faults are persisted (kind ``patrol.fault``, :mod:`gateway.patrol.memory`)
with the event that opens or closes them, so after a restart a reader that
comes back still closes the outage it opened.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

from gateway.config.patrol import ReaderConfig
from gateway.events.model import Event, EventFactory, State
from gateway.events.observation import DeviceHealth
from gateway.events.patrol_observation import ReaderBattery, ReaderRejected
from gateway.patrol.memory import FAULT, Change

log = structlog.get_logger(__name__)

_REJECTED = {
    "no_answer": "a connection closed or stayed silent without answering the challenge",
    "malformed": "a connection answered the challenge with something that is not AUTH",
    "bad_proof": "a connection's answer to the challenge did not verify under the "
    "reader's key (a wrong key, or not this reader)",
}


@dataclass(slots=True)
class ReaderFaults:
    """Turns reader health and battery readings into fault events.

    Args:
        readers: reader id → its configuration (names, threshold).
        factory: makes events.
        offline: reader id → incident id of its open ``fault.device_offline``
            (restored ones, after a restart).
        low_battery: reader id → incident id of its open ``fault.low_battery``.
    """

    readers: Mapping[str, ReaderConfig]
    factory: EventFactory
    offline: dict[str, str] = field(default_factory=dict)
    low_battery: dict[str, str] = field(default_factory=dict)

    def health(self, obs: DeviceHealth, change: Change) -> None:
        """Judge a health transition of a reader; its events and state go to ``change``."""
        data = {"reason": obs.reason, "failures": obs.failures, "previous": obs.previous}
        if obs.state == "offline" and obs.device_id not in self.offline:
            event = self._make("fault.device_offline", obs.device_id, "active", data, obs)
            self._open(self.offline, "offline", obs.device_id, event, change)
        elif obs.state == "online":
            incident = self.offline.get(obs.device_id)
            event = self._make("device.online", obs.device_id, "instant", data, obs, incident)
            self._close(self.offline, "offline", obs.device_id, event, change)

    def battery(self, obs: ReaderBattery, change: Change) -> None:
        """Judge a battery reading of a reader; its events and state go to ``change``."""
        reader = self.readers.get(obs.reader_id)
        threshold = reader.low_battery_v if reader is not None else 0.0
        low = obs.flagged_low or (obs.volts is not None and obs.volts < threshold)
        incident = self.low_battery.get(obs.reader_id)
        if low == (incident is not None):
            return
        data = {"volts": obs.volts, "flagged_low": obs.flagged_low, "threshold_v": threshold}
        state: State = "active" if low else "cleared"
        event = self._make("fault.low_battery", obs.reader_id, state, data, obs, incident)
        if low:
            self._open(self.low_battery, "low_battery", obs.reader_id, event, change)
        else:
            self._close(self.low_battery, "low_battery", obs.reader_id, event, change)

    def rejected(self, obs: ReaderRejected, change: Change) -> None:
        """Report connections refused at a reader's port (already rate-limited)."""
        data = {
            "reason": obs.reason,
            "detail": _REJECTED.get(obs.reason, obs.reason),
            "peer": obs.peer,
            "refused_since": obs.refused_since,
        }
        change.report(self._make("fault.reader_rejected", obs.reader_id, "instant", data, obs))

    @staticmethod
    def _open(
        book: dict[str, str], kind: str, reader_id: str, event: Event, change: Change
    ) -> None:
        book[reader_id] = event.id
        change.write(FAULT.write(f"{kind}/{reader_id}", event.id))
        change.report(event)

    @staticmethod
    def _close(
        book: dict[str, str], kind: str, reader_id: str, event: Event, change: Change
    ) -> None:
        if book.pop(reader_id, None) is not None:
            change.write(FAULT.write(f"{kind}/{reader_id}", None))
        change.report(event)

    def _make(
        self,
        type_: str,
        reader_id: str,
        state: State,
        data: dict[str, Any],
        obs: DeviceHealth | ReaderBattery | ReaderRejected,
        incident: str | None = None,
    ) -> Event:
        reader = self.readers.get(reader_id)
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
            received_at=obs.received_at,
            incident=incident,
            opens_incident=state == "active",
        )
        log.info("patrol.reader_fault", reader=reader_id, type=type_, state=state, id=event.id)
        return event
