"""What drivers hand to the rules: typed readings, no wire formats, no MQTT.

Drivers put these on an :class:`ObservationSink`; the rules (``gateway.alarm.zones``)
turn them into events.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal


def utcnow() -> datetime:
    """The gateway's own UTC time, the receive time of every event."""
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class InputChanged:
    """A digital input of a device changed (after debounce).

    Attributes:
        device_id: configured device id (``gate-io``).
        channel: the input's channel number as the vendor labels it on the
            terminal block (0-based for ADAM ``DI0``, Moxa ``DI-00``).
        closed: True when the contact is closed (current flows), after the
            profile's and the module's active-low inversion is applied.
        received_at: gateway UTC time of the poll that saw the change.
        initial: True for the first reading after (re)connecting: the state as
            found, not a transition that was seen happening.
    """

    device_id: str
    channel: int
    closed: bool
    received_at: datetime = field(default_factory=utcnow)
    initial: bool = False


HealthState = Literal["starting", "online", "degraded", "offline"]


@dataclass(frozen=True, slots=True)
class DeviceHealth:
    """A device's health changed (STYLE.md rule 6: transitions, not failures).

    Attributes:
        device_id: configured device id.
        state: new health state.
        previous: the state before this transition.
        reason: short human text (last error), empty when online.
        failures: consecutive failed polls at the time of the transition.
        received_at: gateway UTC time of the transition.
    """

    device_id: str
    state: HealthState
    previous: HealthState
    reason: str = ""
    failures: int = 0
    received_at: datetime = field(default_factory=utcnow)


@dataclass(frozen=True, slots=True)
class AnalogChanged:
    """An analog input's raw value changed (end-of-line supervision reads it).

    Attributes:
        device_id: configured device id.
        channel: the analog channel as labelled on the module (``AI0`` = 0).
        value: the raw value the module reports, 0..65535 over its configured range.
        received_at: gateway UTC time of the poll that read it.
        initial: True for the first reading after start.
    """

    device_id: str
    channel: int
    value: int
    received_at: datetime = field(default_factory=utcnow)
    initial: bool = False


Observation = InputChanged | DeviceHealth | AnalogChanged
ObservationSink = Callable[[Observation], Awaitable[None]]


CameraState = Literal["active", "cleared", "instant"]


@dataclass(frozen=True, slots=True)
class CameraSignal:
    """One camera notification, normalized (``drivers.onvif_camera.topics``).

    Attributes:
        device_id: configured camera id.
        kind: event type it maps to (``camera.motion``, ``camera.tamper`` …,
            ``camera.status`` for device state, ``camera.event`` for unknown topics).
        source: the source token (video source, input, rule area), "" when none.
        detector: what raised it: the canonical topic plus the rule name, so two
            detectors on one source are told apart (``tns1:RuleEngine/…/Motion#Rule1``).
        state: ``active``/``cleared`` for conditions, ``instant`` for pulses.
        initial: from an ``Initialized`` message: the state as found when the
            subscription started, not a change that was seen happening.
        topic: the vendor topic as sent (prefix resolved to the usual one).
        devicetime: the camera's ``UtcTime`` claim exactly as sent, or None.
        fields: vendor Source/Key/Data items as sent (name → value).
        received_at: gateway UTC receive time of the pull that carried it.
    """

    device_id: str
    kind: str
    source: str
    detector: str
    state: CameraState
    initial: bool
    topic: str
    devicetime: str | None = None
    fields: tuple[tuple[str, str], ...] = ()
    received_at: datetime = field(default_factory=utcnow)


@dataclass(frozen=True, slots=True)
class CameraCapabilities:
    """What a camera can do, as found when connecting (handed on when it changes).

    Attributes:
        device_id: configured camera id.
        present: the capabilities it has (``events``, ``snapshot``, ``stream``, ``ptz``).
        missing: those it lacks: not a fault, the camera is what it can do.
        received_at: gateway UTC time it was found.
    """

    device_id: str
    present: tuple[str, ...]
    missing: tuple[str, ...]
    received_at: datetime = field(default_factory=utcnow)


CameraObservation = CameraSignal | CameraCapabilities | DeviceHealth


@dataclass(frozen=True, slots=True)
class Evidence:
    """One re-encoded, stamped picture.

    Attributes:
        jpeg: the JPEG bytes as they will be sent.
        sha256: hex SHA-256 of ``jpeg``.
        width, height: pixels.
        method: ``snapshot_uri`` (the media service's URI) or ``stream`` (a frame
            read from the stream URI with OpenCV).
        taken_at: gateway UTC time the picture was received.
        snapshot_error: why the snapshot URI gave no picture when the stream
            had to stand in for it, else None.
    """

    jpeg: bytes
    sha256: str
    width: int
    height: int
    method: str
    taken_at: datetime
    snapshot_error: str | None = None
