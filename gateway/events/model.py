"""The one event schema: CloudEvents 1.0, JSON structured mode (DESIGN.md "The event").

An :class:`Event` is made by :class:`EventFactory` at the gateway's receive time
with a ULID ``id``; the outbox gives it ``seq`` and ``stream`` in the transaction
that stores it. ``gateway/events/event.schema.json`` is the JSON Schema every test checks.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, timezone
from importlib import resources
from typing import Any, Literal

from ulid import ULID

from gateway.events.codes import kind_of
from gateway.events.observation import utcnow

State = Literal["active", "cleared", "instant"]


Emit = Callable[["Event"], Awaitable["Event"]]
"""Stores an event durably (the outbox's ``append``) and returns it with ``seq``."""


def rfc3339(t: datetime) -> str:
    """UTC time as RFC 3339 with milliseconds and ``Z`` (``2026-11-29T07:00:00.123Z``)."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))"
)


def parse_rfc3339(text: str) -> datetime:
    """An RFC 3339 ``date-time`` (§5.6) as an aware datetime.

    ``T`` and ``Z`` may be written in either case (§5.6 NOTE); the offset is
    required (``Z`` or ``±hh:mm``); a fraction is kept to the microsecond. A leap
    second (``:60``) is refused: Python has no such time.

    Raises:
        ValueError: ``text`` is not an RFC 3339 date-time (a space for ``T``, no
            zone, a basic ISO 8601 form, an impossible date).
    """
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise ValueError(f"not an RFC 3339 date-time: {text[:40]!r}")
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    micro = int((match.group(7) or "0")[:6].ljust(6, "0"))
    if match.group(8):
        zone = UTC
    else:
        offset = timedelta(hours=int(match.group(10)), minutes=int(match.group(11)))
        if offset >= timedelta(hours=24):
            raise ValueError(f"offset out of range: {text[:40]!r}")
        zone = timezone(-offset if match.group(9) == "-" else offset)
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=zone)


@dataclass(frozen=True, slots=True)
class Event:
    """One event, as stored in the outbox and sent to the center.

    ``seq``/``stream`` are None until the outbox has stored it.
    """

    id: str
    type: str
    source: str
    subject: str
    time: datetime
    priority: int
    clocksynced: bool
    data: Mapping[str, Any]
    siacode: str | None = None
    cidcode: str | None = None
    seq: int | None = None
    stream: str | None = None

    def stored(self, seq: int, stream: str) -> Event:
        """A copy with the outbox's ``seq`` and ``stream``."""
        return replace(self, seq=seq, stream=stream)

    def to_dict(self) -> dict[str, Any]:
        """The CloudEvents structured-mode JSON object."""
        out: dict[str, Any] = {
            "specversion": "1.0",
            "id": self.id,
            "source": self.source,
            "type": self.type,
            "subject": self.subject,
            "time": rfc3339(self.time),
            "datacontenttype": "application/json",
            "priority": self.priority,
            "clocksynced": self.clocksynced,
        }
        if self.seq is not None:
            out["seq"] = self.seq
            out["stream"] = self.stream
        if self.siacode:
            out["siacode"] = self.siacode
        if self.cidcode:
            out["cidcode"] = self.cidcode
        out["data"] = dict(self.data)
        return out

    @classmethod
    def from_dict(cls, body: Mapping[str, Any]) -> Event:
        """The event of a :meth:`to_dict` object (one kept in persisted state).

        Raises:
            KeyError, TypeError, ValueError: not such an object.
        """
        seq = body.get("seq")
        return cls(
            id=str(body["id"]),
            type=str(body["type"]),
            source=str(body["source"]),
            subject=str(body["subject"]),
            time=datetime.fromisoformat(str(body["time"]).replace("Z", "+00:00")),
            priority=int(body["priority"]),
            clocksynced=bool(body["clocksynced"]),
            data=dict(body["data"]),
            siacode=body.get("siacode"),
            cidcode=body.get("cidcode"),
            seq=None if seq is None else int(seq),
            stream=body.get("stream"),
        )

    def to_json(self) -> bytes:
        """UTF-8 JSON (non-ASCII names kept as they are)."""
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":")).encode()

    @property
    def topic_suffix(self) -> str:
        """``events/<type with / for .>`` (``events/alarm/panic``)."""
        return "events/" + self.type.replace(".", "/")

    @property
    def state(self) -> str | None:
        value = self.data.get("state")
        return value if isinstance(value, str) else None


@dataclass(slots=True)
class EventFactory:
    """Makes events for one gateway: stamps id, source, time, priority, codes.

    Attributes:
        source_prefix: ``campus/<site>/<gateway>``.
        clock_synced: callable telling whether the system clock is NTP-synced.
        now: clock used for the receive time (a test may pass its own).
    """

    source_prefix: str
    clock_synced: Callable[[], bool]
    now: Callable[[], datetime] = field(default=utcnow)

    def make(
        self,
        type_: str,
        *,
        device: str,
        subject: str,
        state: State,
        data: Mapping[str, Any] | None = None,
        received_at: datetime | None = None,
        incident: str | None = None,
        opens_incident: bool = False,
        armed: bool = False,
        event_id: str | None = None,
        siacode: str | None = None,
        cidcode: str | None = None,
    ) -> Event:
        """Build an event of a known type.

        Args:
            type_: event type (must be in ``gateway.events.codes.KINDS``).
            device: device id, last element of ``source`` (``gateway`` for our own).
            subject: the point (zone id, device id, camera channel).
            state: ``active``, ``cleared`` or ``instant``.
            data: more ``data`` fields (names, location, raw vendor fields).
            received_at: gateway UTC receive time; now when omitted.
            incident: ``data.incident`` of an incident this event continues or ends.
            opens_incident: this event starts an incident: its own id becomes
                ``data.incident``.
            armed: the source watches an armed area: a type whose priority and
                codes follow arming (``EventKind.when_armed``) takes its armed ones.
            event_id: the id, when it was given out before the event was made (a
                picture promised to the center); a new ULID of ``received_at``
                otherwise.
            siacode, cidcode: the codes a device sent (a DC-09 panel), instead of
                the type's own.

        Raises:
            KeyError: unknown event type.
        """
        kind = kind_of(type_).in_area(armed)
        t = received_at or self.now()
        ulid = ULID.from_str(event_id) if event_id else ULID.from_timestamp(t.timestamp())
        sia = kind.sia_restore if state == "cleared" else kind.sia
        body: dict[str, Any] = {"state": state, **(data or {})}
        if opens_incident or incident is not None:
            body["incident"] = str(ulid) if opens_incident else incident
        return Event(
            id=str(ulid),
            type=type_,
            source=f"{self.source_prefix}/{device}",
            subject=subject,
            time=t,
            priority=kind.priority,
            clocksynced=self.clock_synced(),
            data=body,
            siacode=siacode or sia,
            cidcode=cidcode or kind.cid,
        )


def event_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of an event on the wire."""
    text = (
        resources.files("gateway.events").joinpath("event.schema.json").read_text(encoding="utf-8")
    )
    schema: dict[str, Any] = json.loads(text)
    return schema
