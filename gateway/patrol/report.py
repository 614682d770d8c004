"""How the tour engine's decisions read as events: types, subjects and ``data``.

The engine (:mod:`gateway.patrol.engine`) decides *what* happened; this module
words it. Subjects: the checkpoint id for checkpoint, late, out-of-order, missed
events; the route id for round events; the tag for an unknown tag. ``source``
device: the reader a hit came through, or ``patrol`` for a missed stop (nobody
reported it: the gateway's clock did).

``data`` fields (beyond ``state``/``incident``): ``name``/``location`` of the
checkpoint (of the route for round events), ``checkpoint``, ``tag``, ``reader``,
``reader_kind``, ``guard``/``guard_name``, ``devicetime`` (the reader's time,
RFC 3339 UTC), ``delay_s`` (receive time minus reader time, seconds: hours for a
late batch upload), ``clock_suspect``, ``record`` (the reader's record number),
``round``/``route``/``route_name``/``round_number``/``scheduled`` (local start),
``stop`` (1-based), ``opens``/``closes``/``deadline`` of the stop's window;
``judged_late`` on ``patrol.missed`` (true: the deadline passed while the gateway
was off and was judged at its next start).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import structlog

from gateway.config.patrol import CheckpointConfig
from gateway.events.model import Event, EventFactory, State, rfc3339
from gateway.events.patrol_observation import PatrolHit
from gateway.patrol.plan import Plan
from gateway.patrol.rounds import RoundState, SlotState

log = structlog.get_logger(__name__)

PATROL_DEVICE = "patrol"
"""``source`` device of events the engine makes on its own clock (a missed stop)."""


@dataclass(frozen=True, slots=True)
class JudgedHit:
    """A hit resolved to a checkpoint and a guard, with the time it is judged by.

    Attributes:
        hit: the hit as the reader reported it.
        checkpoint: the checkpoint it stands for.
        guard: guard id (or the guard named by the record), or None.
        at: the time it is judged by: the reader's, or the receive time when the
            reader's lies in the future beyond its skew (``clock_suspect``).
        skew: the reader's clock-skew tolerance.
        clock_suspect: ``at`` is the receive time, not the reader's.
    """

    hit: PatrolHit
    checkpoint: CheckpointConfig
    guard: str | None
    at: dt.datetime
    skew: dt.timedelta
    clock_suspect: bool


class Reporter:
    """Makes patrol events (the engine commits and reports them).

    Args:
        plan: the tour plan (guard and reader names).
        factory: makes events.
    """

    def __init__(self, plan: Plan, factory: EventFactory) -> None:
        self._plan = plan
        self._factory = factory

    def point(
        self,
        type_: str,
        judged: JudgedHit,
        state: RoundState | None = None,
        slot: SlotState | None = None,
        extra: dict[str, Any] | None = None,
        *,
        kind: State = "instant",
        incident: str | None = None,
    ) -> Event:
        """An event about one checkpoint hit (checkpoint, late, out of order, missed cleared)."""
        data = self.hit_data(judged)
        if state is not None and slot is not None:
            data |= round_data(state) | due_data(slot)
        data |= extra or {}
        return self._make(
            type_, judged.hit, judged.checkpoint.id, judged.checkpoint, data, kind, incident
        )

    def round(self, type_: str, judged: JudgedHit, state: RoundState) -> Event:
        """``patrol.round_started`` / ``patrol.round_completed`` of ``state``."""
        route = state.when.route.cfg
        data = self.hit_data(judged) | round_data(state) | {"name": route.name}
        if type_ == "patrol.round_completed":
            times = [s.hit_at for s in state.slots if s.hit_at is not None]
            data |= {
                "first_hit": rfc3339(min(times)),
                "last_hit": rfc3339(max(times)),
                "late": state.late,
                "in_order": state.in_order,
                "sequence": list(state.sequence),
                "guards": sorted({s.guard for s in state.slots if s.guard is not None}),
            }
        return self._make(type_, judged.hit, route.id, None, data, "instant", None)

    def missed(
        self, state: RoundState, slot: SlotState, now: dt.datetime, *, judged_late: bool
    ) -> Event:
        """``patrol.missed`` ``active`` for a stop whose deadline passed (opens an incident).

        ``judged_late``: the deadline passed while the gateway was off, and is
        judged now, at its start (``data.judged_late``; ``data.deadline`` is when
        it passed).
        """
        checkpoint = slot.stop.checkpoint
        data = _place(checkpoint) | round_data(state) | due_data(slot)
        event = self._factory.make(
            "patrol.missed",
            device=PATROL_DEVICE,
            subject=checkpoint.id,
            state="active",
            data=data | {"judged_late": judged_late},
            received_at=now,
            opens_incident=True,
        )
        log.warning("patrol.missed", round=state.id, checkpoint=checkpoint.id, id=event.id,
                    judged_late=judged_late)  # fmt: skip
        return event

    def unknown(self, hit: PatrolHit, expected: str) -> Event:
        """``patrol.unknown_tag``: ``expected`` says what the tag should have been
        (``checkpoint`` tag, or guard ``card`` at a station)."""
        reader = self._plan.readers.get(hit.reader_id)
        data = {
            "tag": hit.tag,
            "expected": expected,
            "reader": hit.reader_id,
            "reader_kind": hit.kind,
            "location": reader.location if reader is not None else "",
            "devicetime": rfc3339(hit.devicetime),
            "record": hit.record,
        }
        log.warning("patrol.unknown_tag", reader=hit.reader_id, tag=hit.tag, raw=hit.raw)
        return self._make("patrol.unknown_tag", hit, hit.tag, None, data, "instant", None)

    def hit_data(self, judged: JudgedHit) -> dict[str, Any]:
        """The ``data`` fields every event about one hit carries."""
        hit = judged.hit
        guard = self._plan.guards.get(judged.guard or "")
        return _place(judged.checkpoint) | {
            "checkpoint": judged.checkpoint.id,
            "tag": hit.tag,
            "reader": hit.reader_id,
            "reader_kind": hit.kind,
            "guard": judged.guard,
            "guard_name": guard.name if guard is not None else None,
            "devicetime": rfc3339(hit.devicetime),
            "delay_s": round((hit.received_at - hit.devicetime).total_seconds(), 3),
            "clock_suspect": judged.clock_suspect,
            "record": hit.record,
        }

    def _make(
        self,
        type_: str,
        hit: PatrolHit,
        subject: str,
        checkpoint: CheckpointConfig | None,
        data: dict[str, Any],
        kind: State,
        incident: str | None,
    ) -> Event:
        event = self._factory.make(
            type_,
            device=hit.reader_id,
            subject=subject,
            state=kind,
            data=data,
            received_at=hit.received_at,
            incident=incident,
        )
        log.info("patrol.event", type=type_, subject=subject, state=kind, id=event.id)
        return event


def round_data(state: RoundState) -> dict[str, Any]:
    """Which round: id, route, its number in the night, its local scheduled start."""
    when = state.when
    return {
        "round": when.id,
        "route": when.route.cfg.id,
        "route_name": when.route.cfg.name,
        "round_number": when.number,
        "scheduled": when.local.isoformat(timespec="minutes"),
    }


def due_data(slot: SlotState) -> dict[str, Any]:
    """Which stop and its window (RFC 3339 UTC)."""
    return {
        "checkpoint": slot.stop.checkpoint.id,
        "stop": slot.stop.index + 1,
        "opens": rfc3339(slot.opens),
        "closes": rfc3339(slot.closes),
        "deadline": rfc3339(slot.deadline),
    }


def _place(checkpoint: CheckpointConfig) -> dict[str, Any]:
    return {"name": checkpoint.name, "location": checkpoint.location}
