"""Kinds of persisted state and the writes that change them (no I/O here).

Every piece of state that must survive a power cut is a value under a *kind* and
a *key*, kept as JSON. A :class:`Kind` names the kind and says how its values
read and write as JSON; a :class:`StateWrite` is one change (a value, or None to
delete). Writes go to one of two places:

* the **state store** (:class:`~gateway.runtime.state_store.StateStore`,
  ``<outbox>-state.sqlite``): committed *before* the events that report the
  change (arming, bypasses, patrol rounds), optionally together with those
  events (:meth:`~gateway.runtime.state_store.StateStore.apply`);
* the **outbox**, in the same transaction as one event (``append(event,
  keep=[...])`` of :mod:`gateway.delivery.outbox`, a :class:`StoreWith`):
  evidence requests stored with their alarm, camera incidents with their
  ``active``/``cleared`` event.

The kinds of the alarm system are here; each domain defines its own beside its
rules (``gateway/patrol/memory.py``, ``gateway/camera/memory.py``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

import structlog

from gateway.errors import OutboxError
from gateway.events.model import Event, rfc3339

T = TypeVar("T")
R = TypeVar("R")

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Kind(Generic[T]):
    """A kind of persisted value.

    Attributes:
        name: the ``kind`` column (``area``, ``patrol.round``).
        encode: value → JSON-ready data.
        decode: JSON data → value; raises ``KeyError``/``TypeError``/``ValueError``
            on data it cannot read.
    """

    name: str
    encode: Callable[[T], Any]
    decode: Callable[[Any], T]

    def write(self, key: str, value: T | None) -> StateWrite:
        """The write that sets ``key`` to ``value`` (None deletes it)."""
        return StateWrite(self.name, key, None if value is None else self.encode(value))


@dataclass(frozen=True, slots=True)
class StateWrite:
    """One change of persisted state: ``data`` is JSON-ready, None deletes the key."""

    kind: str
    key: str
    data: Any


class StoreWith(Protocol):
    """Stores an event with the state kept beside it, in one transaction (the outbox's
    ``append(event, keep=..., blob=...)``); returns the stored event.

    ``keep``: writes of kept state; ``blob``: ``(topic suffix, bytes)`` of a
    non-event message stored just before the event (a picture and its
    ``camera.snapshot``). Called as a plain ``emit(event)`` it is one.
    """

    async def __call__(
        self,
        event: Event,
        *,
        keep: Sequence[StateWrite] = (),
        blob: tuple[str, bytes] | None = None,
    ) -> Event: ...


class Recall(Protocol):
    """Reads state kept with the events (the outbox's ``kept(kind)``): key → value."""

    def __call__(self, kind: Kind[T]) -> Mapping[str, T]: ...


Triple = tuple[str, str, str]
"""A key made of three parts (``(camera, kind, source)``, ``(panel, type, subject)``)."""


def triple_key(parts: Triple) -> str:
    """The kept key of a three-part key: its JSON list (``["east","alarm.fire","E03"]``)."""
    return json.dumps(list(parts), ensure_ascii=False)


def by_triple(kept: Mapping[str, T]) -> dict[Triple, T]:
    """Kept values by their three-part keys (:func:`triple_key` read back).

    Raises:
        ValueError: a key that is not a JSON list of three.
    """
    out: dict[Triple, T] = {}
    for text, value in kept.items():
        try:
            parts = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"kept key {text!r} is not JSON") from exc
        if not isinstance(parts, list) or len(parts) != 3:
            raise ValueError(f"kept key {text!r} is not a list of three")
        out[(str(parts[0]), str(parts[1]), str(parts[2]))] = value
    return out


def read_kept(
    recall: Recall | None, kind: Kind[T], read: Callable[[Mapping[str, T]], R]
) -> R | None:
    """``read`` of the kept values of ``kind``; None without a ``recall``, or when they
    cannot be read (``OutboxError``, or ``ValueError`` from ``read``): logged
    ``state.kept_not_restored``, because the alarm path starts whatever the file holds
    (their restores and returns then carry no incident, as before they were kept)."""
    if recall is None:
        return None
    try:
        return read(recall(kind))
    except (OutboxError, ValueError) as exc:
        log.error("state.kept_not_restored", kind=kind.name, error=str(exc))
        return None


def json_kind(name: str) -> Kind[Any]:
    """A kind whose values are plain JSON (dicts, lists, text, numbers)."""
    return Kind(name, _same, _same)


def _same(value: Any) -> Any:
    return value


def time_of(text: Any) -> datetime:
    """An RFC 3339 time as written by :func:`~gateway.events.model.rfc3339`.

    Raises:
        ValueError, TypeError: not such a time.
    """
    return datetime.fromisoformat(str(text).replace("Z", "+00:00"))


def optional_time(text: Any) -> datetime | None:
    """:func:`time_of`, or None for None."""
    return None if text is None else time_of(text)


def optional_rfc3339(t: datetime | None) -> str | None:
    """:func:`~gateway.events.model.rfc3339`, or None for None."""
    return None if t is None else rfc3339(t)


# -- the alarm system's kinds --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AreaRecord:
    """An area's arming state. ``by``: an operator, ``schedule`` or ``initial``."""

    armed: bool
    since: datetime
    by: str


@dataclass(frozen=True, slots=True)
class BypassRecord:
    """A bypassed zone. ``until`` None: until its area is disarmed."""

    until: datetime | None
    by: str
    reason: str = ""
    incident: str = ""


@dataclass(frozen=True, slots=True)
class AlarmRecord:
    """An active condition: its event type, incident id, start time and detail
    (``cut``/``short`` for a line fault)."""

    type: str
    incident: str
    since: datetime
    detail: str = ""


AREA: Kind[AreaRecord] = Kind(
    "area",
    lambda r: {"armed": r.armed, "since": rfc3339(r.since), "by": r.by},
    lambda v: AreaRecord(bool(v["armed"]), time_of(v["since"]), str(v["by"])),
)
"""``area``/``<area id>``: ``{"armed", "since", "by"}``."""

BYPASS: Kind[BypassRecord] = Kind(
    "bypass",
    lambda r: {
        "until": optional_rfc3339(r.until),
        "by": r.by,
        "reason": r.reason,
        "incident": r.incident,
    },
    lambda v: BypassRecord(
        optional_time(v["until"]), str(v["by"]), str(v["reason"]), str(v.get("incident", ""))
    ),
)
"""``bypass``/``<zone id>``: ``{"until" (null: until disarm), "by", "reason", "incident"}``."""

ALARM: Kind[AlarmRecord] = Kind(
    "alarm",
    lambda r: {
        "type": r.type,
        "incident": r.incident,
        "since": rfc3339(r.since),
        "detail": r.detail,
    },
    lambda v: AlarmRecord(
        str(v["type"]), str(v["incident"]), time_of(v["since"]), str(v.get("detail", ""))
    ),
)
"""``alarm``/``<zone id>/<condition>``: an active alarm, tamper or line fault."""

META = json_kind("meta")
"""``meta``/``<name>``: any JSON (``schedule_checked_at``, ``commands_seen``, ``walk_test``,
``walk_test_reports``)."""
