"""One round's state and the judgement of one hit against it (no I/O, no events).

For a stop of a round starting at ``S`` (see :mod:`gateway.config.patrol`):

* ``opens = S + offset``, ``closes = opens + window``, ``deadline = closes + tolerance``;
* a hit at reader time ``t`` from a reader whose clock may be off by ``skew``:
  ``on_time`` when ``opens - tolerance - skew <= t <= closes + skew``,
  ``late`` when ``closes + skew < t <= deadline + skew``, else not for this stop;
* the stop is missed when the gateway's clock passes ``deadline`` without a hit
  (a hit proven later, from a late batch upload, clears the miss).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Literal

from gateway.patrol.plan import RoundStart, Stop

Verdict = Literal["on_time", "late"]


@dataclass(slots=True)
class SlotState:
    """One stop of one round.

    Attributes:
        stop: the stop.
        opens, closes, deadline: see the module docstring (UTC).
        hit_at: reader time of the hit that satisfied it, or None.
        guard: guard id of that hit, or None.
        missed_id: id of the ``patrol.missed`` event (its incident) once emitted.
        unjudged: the deadline passed while the gateway was not running: no miss
            is reported for it.
    """

    stop: Stop
    opens: dt.datetime
    closes: dt.datetime
    deadline: dt.datetime
    hit_at: dt.datetime | None = None
    guard: str | None = None
    missed_id: str | None = None
    unjudged: bool = False

    def verdict(self, t: dt.datetime, skew: dt.timedelta) -> Verdict | None:
        """How a hit at reader time ``t`` counts for this stop, or None if outside."""
        if t < self.opens - self.stop.tolerance - skew:
            return None
        if t <= self.closes + skew:
            return "on_time"
        if t <= self.deadline + skew:
            return "late"
        return None

    @property
    def settled(self) -> bool:
        """Hit, missed or unjudged: nothing is left to wait for."""
        return self.hit_at is not None or self.missed_id is not None or self.unjudged


@dataclass(slots=True)
class RoundState:
    """A materialized round and what has happened in it so far.

    Attributes:
        when: the schedule entry.
        slots: one per stop, in route order.
        started: ``patrol.round_started`` was emitted.
        completed: ``patrol.round_completed`` was emitted (every stop hit).
        in_order: no out-of-order hit so far.
        sequence: checkpoint ids in the order they were hit (by reader time).
        late: how many stops were hit late.
    """

    when: RoundStart
    slots: list[SlotState]
    started: bool = False
    completed: bool = False
    in_order: bool = True
    sequence: list[str] = field(default_factory=list)
    late: int = 0

    @classmethod
    def of(cls, when: RoundStart) -> RoundState:
        """A fresh round with its slots' times computed."""
        slots = []
        for stop in when.route.stops:
            opens = when.start + stop.offset
            closes = opens + stop.window
            slots.append(SlotState(stop, opens, closes, closes + stop.tolerance))
        return cls(when, slots)

    @property
    def id(self) -> str:
        """The round id (``night@2026-11-29T20:00``)."""
        return self.when.id

    @property
    def last_deadline(self) -> dt.datetime:
        """When the last of its stops is settled at the latest (UTC)."""
        return max(s.deadline for s in self.slots)

    @property
    def all_hit(self) -> bool:
        """Every stop was hit (late or not)."""
        return all(s.hit_at is not None for s in self.slots)

    def skipped_before(self, slot: SlotState) -> SlotState | None:
        """On an ordered route: a later stop already hit when ``slot`` is hit now.

        Returns the first such stop (the guard went back), or None when ``slot``
        comes in order.
        """
        if not self.when.route.cfg.ordered:
            return None
        later = self.slots[slot.stop.index + 1 :]
        return next((s for s in later if s.hit_at is not None), None)

    def unhit_before(self, slot: SlotState) -> list[SlotState]:
        """Stops listed before ``slot`` that are not hit yet."""
        return [s for s in self.slots[: slot.stop.index] if s.hit_at is None]


@dataclass(frozen=True, slots=True)
class Match:
    """Where a hit landed.

    Attributes:
        round: the round, or None for a hit outside every round's windows.
        slot: the stop of that round.
        verdict: ``on_time`` or ``late``; None with a repeat or no round.
        repeat: the stop was already hit in that round (a second read).
    """

    round: RoundState | None
    slot: SlotState | None
    verdict: Verdict | None
    repeat: bool = False


def match(
    rounds: list[RoundState], checkpoint_id: str, t: dt.datetime, skew: dt.timedelta
) -> Match:
    """The stop a hit on ``checkpoint_id`` at reader time ``t`` satisfies.

    The earliest round (by start) with an unhit stop for the checkpoint whose
    window holds ``t`` wins; failing that, a stop already hit whose window holds
    ``t`` makes it a repeat; failing that, no round.
    """
    repeat: Match | None = None
    for state in sorted(rounds, key=lambda r: r.when.start):
        for slot in state.slots:
            if slot.stop.checkpoint.id != checkpoint_id:
                continue
            verdict = slot.verdict(t, skew)
            if verdict is None:
                continue
            if slot.hit_at is None:
                return Match(state, slot, verdict)
            repeat = repeat or Match(state, slot, None, repeat=True)
    return repeat or Match(None, None, None)
