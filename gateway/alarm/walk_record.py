"""A walk test as it is kept: what is under test, until when, what was tripped, and its report.

The running test is persisted in the state store (``meta``/``walk_test``) on
start, on every trip and every :data:`CHECKPOINT_S` seconds; finished tests are
kept as reports (``meta``/``walk_test_reports``, the last :data:`KEEP_REPORTS`),
read by the bench page, ``get_state`` and ``campus-gateway status``. Times are
RFC 3339 UTC in the JSON.

Two clocks bound a test, so neither a restart nor a clock step extends it:
``until`` (wall clock, the planned end) and ``remaining_s`` (monotonic seconds
left at the last checkpoint). After a restart the test runs for whichever is
shorter; the time the gateway was off counts against it through ``until``. Only
when the wall clock was also stepped back while the gateway was off can it run
on for as long as was left at the last checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gateway.events.model import rfc3339

CHECKPOINT_S = 30.0
"""How often the time left is written down while a test runs (seconds)."""

KEEP_REPORTS = 10
"""How many finished walk tests are kept as reports."""

ACTIVE_KEY = "walk_test"
REPORTS_KEY = "walk_test_reports"


@dataclass(slots=True)
class Trip:
    """The trips of one zone in one walk test.

    Attributes:
        first, last: the first and the latest trip (UTC).
        count: how many trips.
        conditions: what tripped it, each once (``alarm``, ``tamper``, ``cut``, ``short``).
    """

    first: datetime
    last: datetime
    count: int = 1
    conditions: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """As stored and reported."""
        return {
            "first": rfc3339(self.first),
            "last": rfc3339(self.last),
            "count": self.count,
            "conditions": list(self.conditions),
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Trip:
        """Back from :meth:`to_json`."""
        return cls(
            _time(raw["first"]), _time(raw["last"]), int(raw["count"]), list(raw["conditions"])
        )


@dataclass(slots=True)
class WalkTest:
    """One walk test (maintenance mode) of some zones.

    Attributes:
        id: the id of its ``maintenance.started`` event (the incident of its events).
        by: who started it (an operator, or ``bench:<name>`` from the page).
        source: ``command`` or ``bench``.
        area: the area it was started for, or None for a list of zones.
        zones: every zone under test, in config order.
        panic_zones: those of ``zones`` that are panic zones (named explicitly).
        kept_live: panic zones of the area that were left out (they stay live).
        started: when it started (UTC).
        until: when it ends for every zone (UTC, wall clock).
        panic_until: when the panic zones go live again (UTC), or None.
        remaining_s, panic_remaining_s: monotonic seconds left at the last checkpoint.
        checkpoint: when those were written (UTC).
        tripped: zone id → its trips.
        released: panic zones already live again (their own limit passed).
    """

    id: str
    by: str
    source: str
    area: str | None
    zones: list[str]
    panic_zones: list[str]
    kept_live: list[str]
    started: datetime
    until: datetime
    panic_until: datetime | None
    remaining_s: float
    panic_remaining_s: float | None
    checkpoint: datetime
    tripped: dict[str, Trip] = field(default_factory=dict)
    released: list[str] = field(default_factory=list)

    @property
    def untripped(self) -> list[str]:
        """Zones under test not tripped yet, in config order."""
        return [z for z in self.zones if z not in self.tripped]

    def summary(self) -> dict[str, Any]:
        """What the bench page and ``get_state`` show of a running test."""
        return {
            "id": self.id,
            "by": self.by,
            "source": self.source,
            "area": self.area,
            "zones": list(self.zones),
            "panic_zones": list(self.panic_zones),
            "kept_live": list(self.kept_live),
            "started": rfc3339(self.started),
            "until": rfc3339(self.until),
            "panic_until": rfc3339(self.panic_until) if self.panic_until else None,
            "tripped": {z: t.to_json() for z, t in self.tripped.items()},
            "untripped": self.untripped,
        }

    def to_json(self) -> dict[str, Any]:
        """As persisted in the state store."""
        return {
            **self.summary(),
            "remaining_s": self.remaining_s,
            "panic_remaining_s": self.panic_remaining_s,
            "checkpoint": rfc3339(self.checkpoint),
            "released": list(self.released),
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> WalkTest:
        """Back from :meth:`to_json`.

        Raises:
            KeyError, TypeError, ValueError: not a walk test as this version writes it.
        """
        panic_until = raw.get("panic_until")
        panic_left = raw.get("panic_remaining_s")
        return cls(
            id=str(raw["id"]),
            by=str(raw["by"]),
            source=str(raw["source"]),
            area=raw.get("area"),
            zones=[str(z) for z in raw["zones"]],
            panic_zones=[str(z) for z in raw["panic_zones"]],
            kept_live=[str(z) for z in raw.get("kept_live", [])],
            started=_time(raw["started"]),
            until=_time(raw["until"]),
            panic_until=_time(panic_until) if panic_until else None,
            remaining_s=float(raw["remaining_s"]),
            panic_remaining_s=float(panic_left) if panic_left is not None else None,
            checkpoint=_time(raw["checkpoint"]),
            tripped={z: Trip.from_json(t) for z, t in raw.get("tripped", {}).items()},
            released=[str(z) for z in raw.get("released", [])],
        )

    def report(self, *, ended: datetime, reason: str, ended_by: str) -> dict[str, Any]:
        """The stored report of a finished test: zones tripped (with times), never tripped."""
        return {
            **self.summary(),
            "ended": rfc3339(ended),
            "reason": reason,
            "ended_by": ended_by,
        }


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
