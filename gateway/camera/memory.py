"""What the cameras keep across a power cut: pending evidence requests, open incidents.

Kinds kept in the outbox database (:mod:`gateway.delivery.outbox.kept`), each
written in the same transaction as the event it belongs to:

* ``camera.evidence``/``<snapshot id>`` (the id its ``camera.snapshot`` will
  have): the :class:`EvidenceRequest` (camera, snapshot_id, requested_at (UTC),
  for_event, for_type, incident, command, operator);
* ``camera.incident``/``["<camera>", "<kind>", "<source>"]`` (JSON): an open
  :class:`Incident` (id of its ``active`` event, detectors, armed).

A request is written with the alarm it documents (or, for the ``snapshot``
command, before the command is answered) and deleted with the
``camera.snapshot`` event that fulfils it, so after a power cut every request
whose event is not stored is still there (:meth:`EvidenceCollector.resume
<gateway.camera.evidence.EvidenceCollector.resume>`). An incident is written
with its ``active`` event, changed when a detector joins or leaves it, and
deleted with its ``cleared`` event.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ulid import ULID

from gateway.events.model import Event, rfc3339
from gateway.runtime.state import Kind, StateWrite, Triple, by_triple, time_of, triple_key


@dataclass(frozen=True, slots=True)
class EvidenceRequest:
    """A picture asked for.

    Attributes:
        camera: the camera id.
        snapshot_id: the id its ``camera.snapshot`` event will have.
        requested_at: gateway UTC time of the request (the alarm's time for an alarm).
        for_event, for_type, incident: the alarm it documents (None for a command).
        command, operator: the ``snapshot`` command's correlation id and operator
            (None for an alarm).
        late: it was pending across a restart (its picture is taken late).
    """

    camera: str
    snapshot_id: str
    requested_at: datetime
    for_event: str | None = None
    for_type: str | None = None
    incident: str | None = None
    command: str | None = None
    operator: str | None = None
    late: bool = False

    @classmethod
    def for_alarm(cls, camera_id: str, alarm: Event) -> EvidenceRequest:
        """A picture from ``camera_id`` documenting ``alarm`` (made before it is stored)."""
        incident = alarm.data.get("incident")
        return cls(
            camera_id,
            _new_id(alarm.time),
            alarm.time,
            for_event=alarm.id,
            for_type=alarm.type,
            incident=incident if isinstance(incident, str) else None,
        )

    @classmethod
    def for_command(
        cls, camera_id: str, correlation_id: str, operator: str, now: datetime
    ) -> EvidenceRequest:
        """A picture from ``camera_id`` the center asked for."""
        return cls(camera_id, _new_id(now), now, command=correlation_id, operator=operator)

    @property
    def topic(self) -> str:
        """``snapshots/<snapshot id>``: where its bytes go."""
        return f"snapshots/{self.snapshot_id}"

    def kept(self) -> StateWrite:
        """The write that keeps this request until its ``camera.snapshot`` is stored."""
        return EVIDENCE.write(self.snapshot_id, self)

    def done(self) -> StateWrite:
        """The write that forgets it (with its ``camera.snapshot``)."""
        return EVIDENCE.write(self.snapshot_id, None)


def _new_id(at: datetime) -> str:
    return str(ULID.from_timestamp(at.timestamp()))


def _encode_request(r: EvidenceRequest) -> dict[str, Any]:
    return {
        "camera": r.camera,
        "snapshot_id": r.snapshot_id,
        "requested_at": rfc3339(r.requested_at),
        "for_event": r.for_event,
        "for_type": r.for_type,
        "incident": r.incident,
        "command": r.command,
        "operator": r.operator,
    }


def _text(v: Any) -> str | None:
    return None if v is None else str(v)


def _decode_request(v: Any) -> EvidenceRequest:
    return EvidenceRequest(
        str(v["camera"]),
        str(v["snapshot_id"]),
        time_of(v["requested_at"]),
        _text(v.get("for_event")),
        _text(v.get("for_type")),
        _text(v.get("incident")),
        _text(v.get("command")),
        _text(v.get("operator")),
    )


EVIDENCE: Kind[EvidenceRequest] = Kind("camera.evidence", _encode_request, _decode_request)
"""``camera.evidence``/``<snapshot id>``: a request whose ``camera.snapshot`` is not stored yet."""


IncidentKey = Triple
"""``(camera, kind, source)``."""


@dataclass(slots=True)
class Incident:
    """An open camera incident: the id of its ``active`` event, who holds it open,
    and whether its camera's area was armed when it opened."""

    id: str
    detectors: set[str] = field(default_factory=set)
    armed: bool = False


def _encode_incident(i: Incident) -> dict[str, Any]:
    return {"id": i.id, "detectors": sorted(i.detectors), "armed": i.armed}


def _decode_incident(v: Any) -> Incident:
    return Incident(str(v["id"]), {str(d) for d in v["detectors"]}, bool(v["armed"]))


INCIDENT: Kind[Incident] = Kind("camera.incident", _encode_incident, _decode_incident)
"""``camera.incident``/``["<camera>", "<kind>", "<source>"]``: an open incident."""


def incident_write(key: IncidentKey, incident: Incident | None) -> StateWrite:
    """The write that keeps (or, with None, ends) the incident under ``key``."""
    return INCIDENT.write(triple_key(key), incident)


def open_incidents(kept: Mapping[str, Incident]) -> dict[IncidentKey, Incident]:
    """Kept incidents by their key.

    Raises:
        ValueError: a key that is not ``[camera, kind, source]``.
    """
    return by_triple(kept)
