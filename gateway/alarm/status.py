"""Zone and area states for dashboards and the bench page: one word per zone, and since when.

The rules keep conditions (an alarm, a tamper loop, a line fault, a bypass, an
offline module); a dashboard wants one state per zone. :class:`StatusBook`
reduces them, first match wins:

=============  ================================================================
``alarm``      its alarm is active (``latched`` says whether only a reset ends it)
``tamper``     its tamper loop is open (paired wiring)
``line_fault`` its line is cut or shorted
``offline``    its module does not answer (the last reading may be stale)
``walk_tested`` in a running walk test, tripped at least once
``walk_test``  in a running walk test, not tripped yet
``bypassed``   bypassed (its violations are ignored)
``open``       violated now without alarming (its area is disarmed)
``normal``     at rest
``unknown``    not read yet since start (never published: the last retained
               state stands until the first reading)
=============  ================================================================

``since`` is when the zone entered its state: the condition's own start for
``alarm``/``tamper``/``line_fault`` (persisted, so it survives a restart),
otherwise the first time this process saw the state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from gateway.alarm.areas import AreaBook
from gateway.alarm.zones import ZoneEngine
from gateway.events.model import rfc3339

ZoneStateName = Literal[
    "alarm",
    "tamper",
    "line_fault",
    "offline",
    "walk_tested",
    "walk_test",
    "bypassed",
    "open",
    "normal",
    "unknown",
]

WalkProbe = Callable[[str], Literal["tripped", "untested"] | None]
"""Zone id → its walk-test status now: ``tripped``, ``untested``, or None (not in one)."""


@dataclass(frozen=True, slots=True)
class ZoneStatus:
    """One zone's state as dashboards see it.

    Attributes:
        state: see the module docstring.
        latched: the alarm is active and only a ``reset`` ends it.
        bypassed: the zone is bypassed (whatever its state).
        area_armed: its area is armed (a zone without an area counts as armed).
        since: when it entered ``state`` (UTC).
        acknowledged: the center acknowledged its active alarm.
        incident: the active alarm's incident id, or None.
        violated: its detector reports alarm condition now; None before the first reading.
    """

    state: ZoneStateName
    latched: bool
    bypassed: bool
    area_armed: bool
    since: datetime
    acknowledged: bool
    incident: str | None
    violated: bool | None

    def public(self, zone_id: str, book: StatusBook) -> dict[str, Any]:
        """The retained ``…/zone/<id>/state`` payload (JSON-ready)."""
        zone = book.zones.config[zone_id]
        return {
            "state": self.state,
            "latched": self.latched,
            "bypassed": self.bypassed,
            "area_armed": self.area_armed,
            "since": rfc3339(self.since),
            "zone": zone_id,
            "name": zone.name,
            "type": zone.type,
            "area": zone.area,
            "acknowledged": self.acknowledged,
            "incident": self.incident,
            "violated": self.violated,
        }


class StatusBook:
    """Reduces the alarm system's conditions to one :class:`ZoneStatus` per zone.

    Args:
        zones: the zone engine (conditions, bypasses, offline modules).
        areas: the areas (arming state).
        now: the rules' clock (``since`` of states first seen here).
        walk: the walk-test probe; None when walk tests are not wired.
    """

    def __init__(
        self,
        zones: ZoneEngine,
        areas: AreaBook,
        now: Callable[[], datetime],
        walk: WalkProbe | None = None,
    ) -> None:
        self.zones = zones
        self.areas = areas
        self._now = now
        self.walk = walk
        self._seen: dict[str, tuple[ZoneStateName, datetime]] = {}

    def zone(self, zone_id: str) -> ZoneStatus:
        """The state of ``zone_id`` now.

        Raises:
            KeyError: unknown zone id.
        """
        zone, live = self.zones.config[zone_id], self.zones.zones[zone_id]
        rule = self.zones.rules[zone_id]
        name, condition_since = self._state(zone_id)
        seen = self._seen.get(zone_id)
        if condition_since is not None:
            since = condition_since
        elif seen is not None and seen[0] == name:
            since = seen[1]
        else:
            since = self._now()
        self._seen[zone_id] = (name, since)
        return ZoneStatus(
            state=name,
            latched=live.alarm.active and rule.latch,
            bypassed=self.zones.bypasses.active(zone_id),
            area_armed=self.areas.armed(zone.area),
            since=since,
            acknowledged=live.alarm.active and live.acknowledged,
            incident=live.alarm.incident,
            violated=live.violated if live.reading is not None else None,
        )

    def _state(self, zone_id: str) -> tuple[ZoneStateName, datetime | None]:
        """The state word, and the start of the condition behind it (if one is)."""
        live = self.zones.zones[zone_id]
        for word, condition in (
            ("alarm", live.alarm),
            ("tamper", live.tamper),
            ("line_fault", live.line),
        ):
            if condition.active:
                return word, condition.since  # type: ignore[return-value]
        if self.zones.config[zone_id].module in self.zones.offline_modules:
            return "offline", None
        walk = self.walk(zone_id) if self.walk is not None else None
        if walk is not None:
            return ("walk_tested" if walk == "tripped" else "walk_test"), None
        if self.zones.bypasses.active(zone_id):
            return "bypassed", None
        if live.reading is None:
            return "unknown", None
        return ("open" if live.violated else "normal"), None

    def area(self, area_id: str) -> dict[str, Any]:
        """The retained ``…/area/<id>/state`` payload (JSON-ready).

        ``state`` is ``armed`` or ``disarmed``; ``in_alarm`` lists its zones in alarm.

        Raises:
            KeyError: unknown area id.
        """
        snapshot = self.areas.snapshot()[area_id]
        members = self.areas.members[area_id]
        return {
            "state": "armed" if snapshot["armed"] else "disarmed",
            "armed": snapshot["armed"],
            "since": snapshot["since"],
            "by": snapshot["by"],
            "area": area_id,
            "name": snapshot["name"],
            "zones": members,
            "in_alarm": [z for z in members if self.zones.zones[z].alarm.active],
        }
