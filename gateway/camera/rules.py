"""Camera signals → events: incidents, ``Initialized`` as state, health, evidence requests.

Rules (the driver has already normalized every vendor topic):

* One **incident** per physical event and camera source: the key is
  ``(camera, kind, source)``. The first detector that goes ``active`` opens it
  (``active`` event; its id is ``data.incident``); further detectors on the same
  key (a CellMotion *and* a MotionAlarm message for one movement, capture
  ``cellmotion_03``) join it silently; when the last of them clears, the
  incident is *closing*: its ``cleared`` (same incident id) is sent only once the
  camera's ``merge_window_s`` (default 3 s) has passed with no detector active again.
* **Flicker merges**: a signal that returns while its incident is closing
  continues that incident: one ``active`` event with ``data.incident`` = the
  incident's id and ``data.update = true``, no new incident, and a picture only
  while the incident has taken fewer than ``snapshot.per_incident`` (default 1;
  issue 11: motion on → off → on within 2 s gave a final ``cleared``, a new
  unlinked incident and a picture per flicker). Windows run on the monotonic
  clock; :meth:`CameraRules.run` sends the ``cleared`` of each incident whose
  window has passed.
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
  ``device.online`` ``instant`` (with the outage's incident after an outage, and
  the camera's ``capabilities``).
* **A camera is what it can do**: its :class:`CameraCapabilities` (found when it
  connects, handed on when they change) give one ``camera.status`` event with
  ``data.capabilities`` and ``data.missing`` (a missing service is said once,
  and is not a fault), and the camera's retained state
  (``…/state/<camera id>``: ``health``, ``capabilities``, ``missing``, ``time``)
  follows every change of health or capabilities.
* **Priorities follow the campus**: on a camera bound to an area (``area``), a
  line crossing or field intrusion is priority 2 with its Contact ID / SIA codes
  while the area is armed and 4 while it is disarmed, like a zone
  (:data:`gateway.events.codes.KINDS`, ``when_armed``); ``data.area`` and
  ``data.armed`` say which. An incident keeps the priority it opened with until
  it is cleared. Camera tamper is priority 2 in every state.
* A new alarm (``active``, or a one-off ``instant`` such as a line crossing) of a
  kind in the camera's ``snapshot.on_events`` asks for an evidence picture: the
  request is stored with the alarm, then queued (``pictures``,
  :class:`~gateway.camera.evidence.Pictures`).
* **Incidents survive a restart**: an incident is kept in the outbox with its
  ``active`` event, changed when a detector joins or leaves it, and ended with
  its ``cleared`` event (:mod:`gateway.camera.memory`); the rules start with the
  incidents that were open, so a camera that comes back with an inactive
  ``Initialized`` message clears the incident opened before the cut.

Every event carries the gateway's receive time; the camera's claim is
``data.devicetime`` exactly as sent (captures with 1970 and MM-DD-YYYY times).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import structlog

from gateway.camera.evidence import EvidenceRequest, Keep, Pictures
from gateway.camera.memory import Incident, IncidentKey, incident_write
from gateway.config.camera import CameraConfig
from gateway.events.model import Event, EventFactory, State, rfc3339
from gateway.events.observation import (
    CameraCapabilities,
    CameraObservation,
    CameraSignal,
    DeviceHealth,
    HealthState,
    utcnow,
)
from gateway.runtime.device_health import HealthEvents
from gateway.runtime.state import StateWrite, StoreWith

log = structlog.get_logger(__name__)

StatePublisher = Callable[[str, dict[str, Any]], None]
"""``publish(camera_id, state)``: the camera's retained ``…/state/<camera id>``."""


class CameraRules:
    """Turns :class:`CameraSignal` and camera :class:`DeviceHealth` into events.

    Args:
        cameras: the configured cameras.
        factory: makes events.
        store: stores an event durably with kept state (the outbox's ``append``)
            and returns it.
        pictures: plans and queues evidence requests (None: no pictures).
        publish_state: called with each camera's state when it changes.
        armed: tells whether an area is armed now (the alarm system's areas).
        keep: commits kept state without an event (the outbox's ``keep``; None:
            a detector joining or leaving an open incident is kept in memory only).
        incidents: the incidents open before a restart (kept in the outbox); one
            kept with no detector left was closing: its window starts again.
        outages: camera id → incident of its outage kept open at the last stop.
        monotonic: the clock of the merge windows (seconds; tests may give their own).

    Attributes:
        incidents: open incidents by ``(camera, kind, source)``.
        clock_skew_s: last reported clock skew per camera (seconds).
        capabilities: last reported capabilities per camera.
        health: last health per camera.
    """

    def __init__(
        self,
        cameras: Sequence[CameraConfig],
        factory: EventFactory,
        store: StoreWith,
        pictures: Pictures | None = None,
        publish_state: StatePublisher | None = None,
        armed: Callable[[str], bool] | None = None,
        *,
        keep: Keep | None = None,
        incidents: Mapping[IncidentKey, Incident] | None = None,
        outages: Mapping[str, str] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._cameras = {c.id: c for c in cameras}
        self._factory = factory
        self._emit = store
        self._pictures = pictures
        self._keep = keep
        self.incidents: dict[IncidentKey, Incident] = dict(incidents or {})
        self.clock_skew_s: dict[str, float] = {}
        self.capabilities: dict[str, CameraCapabilities] = {}
        self.health: dict[str, HealthState] = {}
        self._publish_state = publish_state
        self._armed = armed
        self._health_events = HealthEvents(factory, store, dict(outages or {}))
        self._monotonic = monotonic
        # incidents whose last detector cleared -> when their window ends (monotonic)
        self._closing: dict[IncidentKey, float] = {}
        self._last_signal: dict[IncidentKey, CameraSignal] = {}
        self._pictures_taken: dict[IncidentKey, int] = {}
        self._closing_changed = asyncio.Event()
        for key, incident in self.incidents.items():
            if not incident.detectors:
                self._closing[key] = monotonic() + self._window(key[0])

    async def run(self) -> None:
        """Send the ``cleared`` of each closing incident when its window ends; runs
        until cancelled (the camera stage's ``camera-incidents`` task)."""
        while True:
            self._closing_changed.clear()
            await self.close_due()
            if self._closing:
                left = min(self._closing.values()) - self._monotonic()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(left, 0.0)):
                        await self._closing_changed.wait()
            else:
                await self._closing_changed.wait()

    async def close_due(self) -> None:
        """Send the ``cleared`` of every incident whose merge window has passed."""
        now = self._monotonic()
        for key in [k for k, end in self._closing.items() if end <= now]:
            del self._closing[key]
            incident = self.incidents.pop(key)
            self._pictures_taken.pop(key, None)
            sig = self._last_signal.pop(key, None)
            event = (
                self._make(sig, "cleared", incident.id, armed=incident.armed)
                if sig is not None
                else self._make_restored(key, incident)
            )
            await self._store(event, [incident_write(key, None)])

    def _window(self, camera_id: str) -> float:
        camera = self._cameras.get(camera_id)
        return camera.merge_window_s if camera is not None else 0.0

    def learn_outages(self, outages: Mapping[str, str]) -> None:
        """Cameras' outages kept open at the last stop, learnt late."""
        self._health_events.learn(outages)

    async def observe(self, obs: CameraObservation) -> None:
        """Handle one observation from a camera driver."""
        if isinstance(obs, DeviceHealth):
            await self._health(obs)
        elif isinstance(obs, CameraCapabilities):
            await self._capabilities(obs)
        else:
            await self._signal(obs)

    async def _capabilities(self, obs: CameraCapabilities) -> None:
        self.capabilities[obs.device_id] = obs
        camera = self._cameras.get(obs.device_id)
        event = self._factory.make(
            "camera.status",
            device=obs.device_id,
            subject=obs.device_id,
            state="instant",
            data={
                "name": camera.name if camera else obs.device_id,
                "location": camera.location if camera else "",
                "camera": obs.device_id,
                "detector": "capabilities",
                "capabilities": list(obs.present),
                "missing": list(obs.missing),
            },
            received_at=obs.received_at,
        )
        await self._emit(event)
        log.info("camera.capabilities", camera=obs.device_id, present=obs.present,
                 missing=obs.missing)  # fmt: skip
        self._state(obs.device_id)

    def _state(self, camera_id: str) -> None:
        if self._publish_state is None:
            return
        found = self.capabilities.get(camera_id)
        self._publish_state(
            camera_id,
            {
                "health": self.health.get(camera_id, "starting"),
                "capabilities": list(found.present) if found else None,
                "missing": list(found.missing) if found else None,
                "time": rfc3339(utcnow()),
            },
        )

    async def _signal(self, sig: CameraSignal) -> None:
        key = (sig.device_id, sig.kind, sig.source)
        incident = self.incidents.get(key)
        if sig.state == "instant":
            if sig.detector == "clock":
                self.clock_skew_s[sig.device_id] = float(dict(sig.fields)["clock_skew_s"])
            if not sig.initial:
                event = self._make(sig, "instant", armed=self._area_armed(sig.device_id))
                await self._store_alarm(sig, event, [])
        elif sig.state == "active":
            if incident is not None and key in self._closing:
                await self._returned(key, incident, sig)
                return
            if incident is not None:
                if sig.detector not in incident.detectors:
                    incident.detectors.add(sig.detector)
                    await self._keep_incident(key, incident)
                return
            armed = self._area_armed(sig.device_id)
            event = self._make(sig, "active", armed=armed)
            opened = Incident(event.id, {sig.detector}, armed)
            if await self._store_alarm(sig, event, [incident_write(key, opened)]):
                self._pictures_taken[key] = 1
            self.incidents[key] = opened
        elif incident is not None and sig.detector in incident.detectors:
            incident.detectors.discard(sig.detector)
            if not incident.detectors and self._window(sig.device_id) > 0:
                # closing: cleared only if the window passes with no return
                self._closing[key] = self._monotonic() + self._window(sig.device_id)
                self._last_signal[key] = sig
                self._closing_changed.set()
            if incident.detectors or key in self._closing:
                await self._keep_incident(key, incident)
                return
            del self.incidents[key]
            self._pictures_taken.pop(key, None)
            event = self._make(sig, "cleared", incident.id, armed=incident.armed)
            await self._store(event, [incident_write(key, None)])

    async def _returned(self, key: IncidentKey, incident: Incident, sig: CameraSignal) -> None:
        """A signal came back within the merge window: the incident goes on, as an update."""
        del self._closing[key]
        self._last_signal.pop(key, None)
        self._closing_changed.set()
        incident.detectors.add(sig.detector)
        event = self._make(sig, "active", incident.id, armed=incident.armed, update=True)
        keep = [incident_write(key, incident)]
        camera = self._cameras.get(sig.device_id)
        taken = self._pictures_taken.get(key, 0)
        if camera is not None and taken < camera.snapshot.per_incident:
            if await self._store_alarm(sig, event, keep):
                self._pictures_taken[key] = taken + 1
            return
        await self._store(event, keep)

    async def _keep_incident(self, key: IncidentKey, incident: Incident) -> None:
        if self._keep is not None:
            await self._keep([incident_write(key, incident)])

    async def _store_alarm(self, sig: CameraSignal, event: Event, keep: list[StateWrite]) -> bool:
        """Store a new alarm with its evidence request (when one is wanted), then queue it.

        Returns:
            True when a picture was asked for.
        """
        request = self._evidence_for(sig, event)
        if request is not None:
            keep.append(request.kept())
        await self._store(event, keep)
        if request is not None and self._pictures is not None:
            self._pictures.submit(request)
        return request is not None

    async def _store(self, event: Event, keep: list[StateWrite]) -> Event:
        stored = await self._emit(event, keep=keep)
        log.info("camera.event", camera=event.data.get("camera"), type=event.type,
                 state=event.state, id=event.id)  # fmt: skip
        return stored

    def _area_armed(self, camera_id: str) -> bool:
        """Is the area this camera watches armed now (False without an area)?"""
        camera = self._cameras.get(camera_id)
        if camera is None or camera.area is None or self._armed is None:
            return False
        return self._armed(camera.area)

    def _evidence_for(self, sig: CameraSignal, event: Event) -> EvidenceRequest | None:
        """A picture request for a new alarm (an ``active`` one, or a one-off such as a
        line crossing) of a kind the camera's ``snapshot.on_events`` lists."""
        camera = self._cameras.get(sig.device_id)
        if camera is None or not camera.snapshot.enabled or self._pictures is None:
            return None
        if sig.kind not in camera.snapshot.on_events:
            return None
        return self._pictures.plan(sig.device_id, event)

    def _make_restored(self, key: IncidentKey, incident: Incident) -> Event:
        """The ``cleared`` of an incident that was closing when the gateway stopped."""
        camera_id, kind, source = key
        sig = CameraSignal(camera_id, kind, source, "merge-window", "cleared", False, "")
        return self._make(sig, "cleared", incident.id, armed=incident.armed)

    def _make(
        self,
        sig: CameraSignal,
        state: State,
        incident: str | None = None,
        *,
        armed: bool = False,
        update: bool = False,
    ) -> Event:
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
        if camera is not None and camera.area is not None:
            data.update(area=camera.area, armed=armed)
        if update:
            data["update"] = True
        return self._factory.make(
            sig.kind,
            device=sig.device_id,
            subject=f"{sig.device_id}/{sig.source}" if sig.source else sig.device_id,
            state=state,
            data=data,
            received_at=sig.received_at,
            incident=incident,
            opens_incident=state == "active" and not update,
            armed=armed,
        )

    async def _health(self, obs: DeviceHealth) -> None:
        camera = self._cameras.get(obs.device_id)
        extra: dict[str, Any] = {}
        if obs.state == "online":
            skew = self.clock_skew_s.get(obs.device_id)
            if skew is not None:
                extra["clock_skew_s"] = skew
            found = self.capabilities.get(obs.device_id)
            if found is not None:
                extra["capabilities"] = list(found.present)
        await self._health_events.transition(
            obs,
            camera.name if camera else obs.device_id,
            camera.location if camera else "",
            extra,
        )
        self.health[obs.device_id] = obs.state
        self._state(obs.device_id)
