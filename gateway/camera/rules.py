"""Camera signals → events: incidents, ``Initialized`` as state, health, evidence requests.

Rules (the driver has already normalized every vendor topic):

* One **incident** per physical event and camera source: the key is
  ``(camera, kind, source)``. The first detector that goes ``active`` opens it
  (``active`` event; its id is ``data.incident``); further detectors on the same
  key (a CellMotion *and* a MotionAlarm message for one movement, capture
  ``cellmotion_03``) join it silently; it is ``cleared`` (same incident id) when
  the last of them clears.
* ``Initialized`` messages (``initial``) are **state, not alarms**: an inactive
  one only clears an incident still open (a camera that rebooted during an
  alarm); an active one opens an incident once (``data.initial = true``: found
  active at subscription), never twice.
* ``instant`` signals (a line-crossing pulse, a status reading) give one
  ``instant`` event; the ``Initialized`` reading of one gives none.
* ``camera.status`` with ``detector == "clock"`` (the driver's clock-skew
  measurement) is forwarded and remembered: ``device.online`` carries
  ``clock_skew_s``.
* Health: ``offline`` → ``fault.device_offline`` ``active``; ``online`` →
  ``device.online`` ``instant`` (with the outage's incident after an outage).
* A new alarm (``active``, or a one-off ``instant`` such as a line crossing) of a
  kind in the camera's ``snapshot.on_events`` asks
  ``on_alarm(camera_id, event)`` for an evidence picture.

Every event carries the gateway's receive time; the camera's claim is
``data.devicetime`` exactly as sent (captures with 1970 and MM-DD-YYYY times).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from gateway.config.camera import CameraConfig
from gateway.events.model import Emit, Event, EventFactory, State
from gateway.events.observation import CameraSignal, DeviceHealth
from gateway.runtime.device_health import HealthEvents

log = structlog.get_logger(__name__)

AlarmHook = Callable[[str, Event], object]


@dataclass(slots=True)
class Incident:
    """An open camera incident: the id of its ``active`` event and who holds it open."""

    id: str
    detectors: set[str] = field(default_factory=set)


class CameraRules:
    """Turns :class:`CameraSignal` and camera :class:`DeviceHealth` into events.

    Args:
        cameras: the configured cameras.
        factory: makes events.
        emit: stores an event durably (the outbox's ``append``) and returns it.
        on_alarm: called with ``(camera_id, stored event)`` when evidence is wanted.

    Attributes:
        incidents: open incidents by ``(camera, kind, source)``.
        clock_skew_s: last reported clock skew per camera (seconds).
    """

    def __init__(
        self,
        cameras: Sequence[CameraConfig],
        factory: EventFactory,
        emit: Emit,
        on_alarm: AlarmHook | None = None,
    ) -> None:
        self._cameras = {c.id: c for c in cameras}
        self._factory = factory
        self._emit = emit
        self._on_alarm = on_alarm
        self.incidents: dict[tuple[str, str, str], Incident] = {}
        self.clock_skew_s: dict[str, float] = {}
        self._health_events = HealthEvents(factory, emit)

    async def observe(self, obs: CameraSignal | DeviceHealth) -> None:
        """Handle one observation from a camera driver."""
        if isinstance(obs, DeviceHealth):
            await self._health(obs)
        else:
            await self._signal(obs)

    async def _signal(self, sig: CameraSignal) -> None:
        key = (sig.device_id, sig.kind, sig.source)
        incident = self.incidents.get(key)
        if sig.state == "instant":
            if sig.detector == "clock":
                self.clock_skew_s[sig.device_id] = float(dict(sig.fields)["clock_skew_s"])
            if not sig.initial:
                self._want_evidence(sig, await self._event(sig, "instant"))
        elif sig.state == "active":
            if incident is not None:
                incident.detectors.add(sig.detector)
                return
            event = await self._event(sig, "active")
            self.incidents[key] = Incident(event.id, {sig.detector})
            self._want_evidence(sig, event)
        elif incident is not None:
            incident.detectors.discard(sig.detector)
            if not incident.detectors:
                del self.incidents[key]
                await self._event(sig, "cleared", incident.id)

    def _want_evidence(self, sig: CameraSignal, event: Event) -> None:
        """Ask for a picture for a new alarm (an ``active`` one, or a one-off such as a
        line crossing) of a kind the camera's ``snapshot.on_events`` lists."""
        camera = self._cameras.get(sig.device_id)
        if camera is None or not camera.snapshot.enabled or self._on_alarm is None:
            return
        if sig.kind in camera.snapshot.on_events:
            self._on_alarm(sig.device_id, event)

    async def _event(self, sig: CameraSignal, state: State, incident: str | None = None) -> Event:
        camera = self._cameras.get(sig.device_id)
        data: dict[str, Any] = {
            "name": camera.name if camera else sig.device_id,
            "location": camera.location if camera else "",
            "camera": sig.device_id,
            "source": sig.source,
            "detector": sig.detector,
            "topic": sig.topic,
            "devicetime": sig.devicetime,
            "initial": sig.initial,
            "raw": dict(sig.fields),
        }
        event = self._factory.make(
            sig.kind,
            device=sig.device_id,
            subject=f"{sig.device_id}/{sig.source}" if sig.source else sig.device_id,
            state=state,
            data=data,
            received_at=sig.received_at,
            incident=incident,
            opens_incident=state == "active",
        )
        stored = await self._emit(event)
        log.info("camera.event", camera=sig.device_id, type=sig.kind, state=state, id=event.id)
        return stored

    async def _health(self, obs: DeviceHealth) -> None:
        camera = self._cameras.get(obs.device_id)
        skew = self.clock_skew_s.get(obs.device_id)
        await self._health_events.transition(
            obs,
            camera.name if camera else obs.device_id,
            camera.location if camera else "",
            {"clock_skew_s": skew} if obs.state == "online" and skew is not None else None,
        )
