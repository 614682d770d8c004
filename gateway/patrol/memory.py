"""What the guard tour keeps across a power cut, and how a change is made durable then reported.

Kinds in the state store (:mod:`gateway.runtime.state_store`), values JSON:

=====================  ===========================  =============================================
kind                   key                          value
=====================  ===========================  =============================================
``patrol.round``       round id (``night@…T20:00``)  route, start (UTC), number, started,
                                                    completed, in_order, sequence, late, and per
                                                    stop: checkpoint, hit_at, guard, missed_id,
                                                    unjudged
``patrol.horizon``     route id                     rounds starting up to this time (UTC) were
                                                    materialized: later ones are made from the
                                                    plan, earlier ones are in ``patrol.round``
``patrol.seen``        ``[reader, tag, stamp]``     a read already judged (dedup) → its time
``patrol.signed_in``   reader id                    guard id signed in at that reader
``patrol.fault``       ``offline/<reader>``,        incident id of the open fault
                       ``low_battery/<reader>``
``patrol.position``    station reader id            next record index to read
=====================  ===========================  =============================================

Every step of the engine collects its state writes and the events reporting
them in a :class:`Change`; :meth:`PatrolMemory.commit` commits both in one
transaction of the state store, *then* appends the events to the outbox, then
forgets them there. A power cut at any point leaves the state and its report
together (``StateStore.unreported`` appends what a cut left between), so a
restart neither forgets a scan nor reports one twice.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

from gateway.errors import StateError
from gateway.events.model import Emit, Event, rfc3339
from gateway.patrol.plan import Plan, RoundStart
from gateway.patrol.rounds import RoundState
from gateway.runtime.state import (
    Kind,
    StateWrite,
    json_kind,
    optional_rfc3339,
    optional_time,
    time_of,
)
from gateway.runtime.state_store import StateStore

log = structlog.get_logger(__name__)

ROUND = json_kind("patrol.round")
HORIZON: Kind[dt.datetime] = Kind("patrol.horizon", rfc3339, time_of)
SEEN: Kind[dt.datetime] = Kind("patrol.seen", rfc3339, time_of)
SIGNED_IN: Kind[str] = Kind("patrol.signed_in", str, str)
FAULT: Kind[str] = Kind("patrol.fault", str, str)
POSITION: Kind[int] = Kind("patrol.position", int, int)

SeenKey = tuple[str, str, str]


@dataclass(slots=True)
class Change:
    """State writes and the events that report them, made by one step of the engine.

    Attributes:
        writes: state writes, in order.
        events: events reporting them, in order.
        rounds: rounds changed (each written once, as it is at commit).
    """

    writes: list[StateWrite] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    rounds: dict[str, RoundState] = field(default_factory=dict)

    def write(self, write: StateWrite) -> None:
        self.writes.append(write)

    def touch(self, state: RoundState) -> None:
        """``state`` changed: persist it with this change."""
        self.rounds[state.id] = state

    def report(self, event: Event) -> Event:
        """Add ``event`` to the reports; returns it."""
        self.events.append(event)
        return event


class PatrolMemory:
    """The guard tour's persisted state (in memory only without a store).

    Args:
        plan: the tour plan (rounds are restored against it).
        emit: stores an event in the outbox.
        store: the gateway's state store, or None (tests of the rules alone).

    Attributes:
        state_failures: commits the state store refused (the events were still
            reported, and the writes are retried with the next commit).
    """

    def __init__(self, plan: Plan, emit: Emit, store: StateStore | None = None) -> None:
        self._plan = plan
        self._emit = emit
        self.store = store
        self.state_failures = 0

    # -- restoring ------------------------------------------------------------------------

    def rounds(self) -> dict[str, RoundState]:
        """The persisted rounds that still fit the plan (a round of a route whose stops
        changed since is dropped, with a log line)."""
        found: dict[str, RoundState] = {}
        if self.store is None:
            return found
        for round_id, data in self.store.values(ROUND).items():
            try:
                state = restore_round(self._plan, data)
            except StateError as exc:  # one bad record must not stop the tour (or the start)
                log.error("patrol.round_unreadable", round=round_id, error=str(exc))
                continue
            if state is None or state.id != round_id:
                log.warning("patrol.round_not_restored", round=round_id, reason="plan changed")
                continue
            found[round_id] = state
        return found

    def horizons(self) -> dict[str, dt.datetime]:
        """Route id → the latest round start materialized before the restart."""
        return dict(self.store.values(HORIZON)) if self.store is not None else {}

    def seen(self) -> dict[SeenKey, dt.datetime]:
        """Reads already judged, by :attr:`PatrolHit.key`."""
        if self.store is None:
            return {}
        return {seen_key(key): at for key, at in self.store.values(SEEN).items()}

    def signed_in(self) -> dict[str, str]:
        """Reader id → the guard signed in there."""
        return dict(self.store.values(SIGNED_IN)) if self.store is not None else {}

    def faults(self, kind: str) -> dict[str, str]:
        """Reader id → incident of its open fault of ``kind`` (``offline``, ``low_battery``)."""
        if self.store is None:
            return {}
        prefix = f"{kind}/"
        return {
            key.removeprefix(prefix): incident
            for key, incident in self.store.values(FAULT).items()
            if key.startswith(prefix)
        }

    # -- committing -----------------------------------------------------------------------

    async def commit(self, change: Change) -> list[Event]:
        """Make ``change`` durable, then report its events (in order); returns them stored.

        A state store that refuses the commit does not stop the report: the
        events are appended anyway (the center must hear of the scan), the failure
        is logged and counted, and the store retries the writes with its next commit.

        Raises:
            OutboxError: the outbox refused an event.
        """
        writes = [*change.writes, *(round_write(r) for r in change.rounds.values())]
        if not writes and not change.events:
            return []
        if self.store is not None:
            try:
                await self.store.apply(writes, reports=change.events)
            except StateError as exc:
                self.state_failures += 1
                log.error("patrol.state_not_saved", error=str(exc), events=len(change.events))
        stored = [await self._emit(event) for event in change.events]
        if self.store is not None and change.events:
            try:
                await self.store.reported([e.id for e in change.events])
            except StateError as exc:
                log.error("patrol.reports_not_forgotten", error=str(exc))
        return stored


def seen_write(key: SeenKey, at: dt.datetime | None) -> StateWrite:
    """The write remembering (or, with None, forgetting) a judged read."""
    return SEEN.write(json.dumps(list(key), ensure_ascii=False), at)


def seen_key(text: str) -> SeenKey:
    reader, tag, stamp = json.loads(text)
    return (str(reader), str(tag), str(stamp))


def round_write(state: RoundState) -> StateWrite:
    """The write persisting ``state`` as it is now."""
    return ROUND.write(state.id, round_data(state))


def round_data(state: RoundState) -> dict[str, Any]:
    """``state`` as the JSON of kind ``patrol.round``."""
    return {
        "route": state.when.route.cfg.id,
        "start": rfc3339(state.when.start),
        "number": state.when.number,
        "started": state.started,
        "completed": state.completed,
        "in_order": state.in_order,
        "sequence": list(state.sequence),
        "late": state.late,
        "slots": [
            {
                "checkpoint": s.stop.checkpoint.id,
                "hit_at": optional_rfc3339(s.hit_at),
                "guard": s.guard,
                "missed_id": s.missed_id,
                "unjudged": s.unjudged,
            }
            for s in state.slots
        ],
    }


def restore_round(plan: Plan, data: Mapping[str, Any]) -> RoundState | None:
    """The round of a ``patrol.round`` value, or None when its route or stops are no
    longer those of ``plan``.

    Raises:
        StateError: the value cannot be read.
    """
    try:
        route = next((r for r in plan.routes if r.cfg.id == data["route"]), None)
        if route is None:
            return None
        start = time_of(data["start"])
        slots = list(data["slots"])
        if [s["checkpoint"] for s in slots] != [s.checkpoint.id for s in route.stops]:
            return None
        state = RoundState.of(RoundStart(route, start, start.astimezone(plan.tz), data["number"]))
        state.started, state.completed = bool(data["started"]), bool(data["completed"])
        state.in_order, state.late = bool(data["in_order"]), int(data["late"])
        state.sequence = [str(c) for c in data["sequence"]]
        for slot, saved in zip(state.slots, slots, strict=True):
            slot.hit_at, slot.guard = optional_time(saved["hit_at"]), saved["guard"]
            slot.missed_id, slot.unjudged = saved["missed_id"], bool(saved["unjudged"])
    except (KeyError, TypeError, ValueError) as exc:
        raise StateError(f"patrol round {data!r} cannot be read: {exc!r}") from exc
    return state
