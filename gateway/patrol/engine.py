"""The tour engine: checkpoint hits and the passing of time → patrol events.

Rules (GB/T 29315-2022: key areas patrolled at least five times a day; a missed
patrol is a security event for the center, priority 3):

* Rounds are materialized from the plan shortly before they can first be hit and
  kept ``keep_rounds_h`` after their last deadline, so a batch upload from an
  offline handheld reader, hours late, is still judged against them.
* A hit is judged by the **reader's timestamp** (``devicetime``), with windows
  widened by the reader's ``clock_skew_s`` (:mod:`gateway.patrol.rounds`). A
  timestamp more than ``clock_skew_s`` in the gateway's future is not believed:
  the gateway's receive time is used and ``data.clock_suspect`` says so.
* The same read seen twice (:attr:`PatrolHit.key`) gives no second event.
* Events of a hit, in order: ``patrol.round_started`` (first hit of the round),
  ``patrol.checkpoint`` (every hit on a known checkpoint, in a round or not),
  ``patrol.late``, ``patrol.out_of_order`` (ordered route, a stop hit after a
  later one), ``patrol.missed`` ``cleared`` (a late upload proves a stop that was
  reported missed), ``patrol.round_completed`` (every stop of the round hit).
* ``patrol.missed`` ``active`` is emitted when the gateway's clock passes a stop's
  deadline (window end + tolerance) without a hit; exactly once per stop.
* **Nothing is forgotten across a restart** (:mod:`gateway.patrol.memory`): rounds,
  reads seen, guards signed in and open reader faults are committed to the state
  store *before* the events reporting them, in one transaction with them. After
  a restart the engine resumes its rounds, drops reads it already judged (a
  re-sent batch gives nothing twice) and, at its first tick, judges every
  deadline that passed while it was off: those misses carry
  ``data.judged_late = true`` and ``data.deadline``. Only on the very first start
  of a route (nothing persisted for it) are deadlines that passed before the
  start not judged.
* A tag that is neither a checkpoint tag nor a guard card (or, at a station, a
  card that is not a guard's while guards are configured) is ``patrol.unknown_tag``.
  At a handheld or network reader a guard card signs that guard in for the
  reader's next hits.

* **A step of the wall clock is not a night gone by.** The engine reads the wall
  clock against the monotonic one (which is never stepped). A step forward of
  more than :data:`STEP_S` is held for ``step_grace_s`` (60 s): meanwhile the
  engine judges on the time the monotonic clock gives, so a clock stepped +3 h
  and back half a minute later reports no stop missed, and forgets no round it
  still needs; one that stays is taken after the grace (``patrol.clock_step_taken``).
  A step back makes the rounds that could still be hit again where they are
  missing (they were forgotten while the clock was ahead), and so does a start
  whose persisted horizon lies ahead of the clock (the last run's clock was ahead).
  A review of 2026-12-05 stepped +3 h for 35 s: 109 stops reported missed, the
  rounds of the next hour forgotten, and no round again for hours.

The clock is injected (``now``, ``monotonic``): tests drive a night in milliseconds
by setting the clock and calling :meth:`TourEngine.tick`; the daemon runs
:meth:`TourEngine.run`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Awaitable, Callable

import structlog

from gateway.config.patrol import HandheldReaderConfig, StationReaderConfig
from gateway.events.model import Emit, EventFactory
from gateway.events.observation import DeviceHealth, utcnow
from gateway.events.patrol_observation import (
    PatrolHit,
    PatrolObservation,
    ReaderBattery,
    ReaderRejected,
)
from gateway.patrol.faults import ReaderFaults
from gateway.patrol.memory import HORIZON, ROUND, SIGNED_IN, Change, PatrolMemory, seen_write
from gateway.patrol.plan import Plan
from gateway.patrol.report import JudgedHit, Reporter
from gateway.patrol.rounds import Match, RoundState, SlotState, match
from gateway.runtime.state_store import StateStore

log = structlog.get_logger(__name__)

STEP_S = 5.0
"""A difference between the wall and monotonic clocks' progress taken as a step (s)."""


class TourEngine:
    """Applies the patrol rules; every event it makes goes through ``emit``.

    Args:
        plan: the compiled tour plan.
        factory: makes events.
        emit: stores an event durably (the outbox's ``append``) and returns it.
        store: the gateway's state store: the engine resumes from what it holds
            and commits every change to it before reporting it; None keeps
            everything in memory (the rules alone, in tests).
        now: the gateway's clock (aware UTC); tests pass a controllable one.
        sleep: how :meth:`run` waits (seconds); tests may pass their own.
        max_sleep: longest single wait of :meth:`run` (seconds), so a clock
            step is noticed.
        monotonic: seconds of a clock that is never stepped (a test's own
            moves with its ``now``).
        step_grace_s: how long a step forward of the wall clock is held before
            it is believed (seconds).

    Attributes:
        rounds: round id → state, for rounds still kept.
        memory: the persisted state and its commits.
        hits, duplicates, unknown_tags, outside: counters of judged hits.
    """

    def __init__(
        self,
        plan: Plan,
        factory: EventFactory,
        emit: Emit,
        *,
        store: StateStore | None = None,
        now: Callable[[], dt.datetime] = utcnow,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        max_sleep: float = 30.0,
        monotonic: Callable[[], float] = time.monotonic,
        step_grace_s: float = 60.0,
    ) -> None:
        self.plan = plan
        self._now = now
        self._monotonic = monotonic
        self._step_grace_s = step_grace_s
        self._held_since: float | None = None  # monotonic time a step forward was seen
        self._sleep = sleep
        self._max_sleep = max_sleep
        self.memory = memory = PatrolMemory(plan, emit, store)
        self.faults = ReaderFaults(
            plan.readers, factory, memory.faults("offline"), memory.faults("low_battery")
        )
        self._report = Reporter(plan, factory)
        self.rounds: dict[str, RoundState] = memory.rounds()
        self.started_at = now()
        self._base = (self.started_at, monotonic())  # the last wall time believed
        horizons = memory.horizons()
        self._resumed = {r.cfg.id for r in plan.routes if r.cfg.id in horizons}
        self._until = {
            r.cfg.id: horizons.get(r.cfg.id, self.started_at - r.span - r.lead - plan.max_skew)
            for r in plan.routes
        }
        ahead = [r for r, until in self._until.items() if until > self._reach(self.started_at)]
        if ahead:  # the last run's clock was ahead: its rounds since may be forgotten
            # and what it judged of rounds still to come is void: they start afresh.
            future = [i for i, r in self.rounds.items() if r.last_deadline > self.started_at]
            for round_id in future:
                del self.rounds[round_id]
            log.warning(
                "patrol.horizon_ahead", routes=ahead, now=str(self.started_at), rounds_redone=future
            )
            self._rewind(self.started_at)
        self._seen = memory.seen()
        self._signed_in = memory.signed_in()
        self._lock = asyncio.Lock()
        self.hits = self.duplicates = self.unknown_tags = self.outside = 0

    # -- the two ways in ----------------------------------------------------------

    async def observe(self, obs: PatrolObservation) -> None:
        """Handle one observation of a patrol reader (the drivers' sink).

        Deadlines that passed before it are handled first, so events keep the
        order in which things became true. Returns once what it changed is
        committed and reported.
        """
        async with self._lock:
            change = Change()
            now = self._clock()
            self._advance(now, change)
            if isinstance(obs, PatrolHit):
                self._hit(obs, now, change)
            elif isinstance(obs, ReaderBattery):
                self.faults.battery(obs, change)
            elif isinstance(obs, ReaderRejected):
                self.faults.rejected(obs, change)
            elif isinstance(obs, DeviceHealth):
                self.faults.health(obs, change)
            await self.memory.commit(change)

    async def tick(self) -> None:
        """Bring the rounds up to the clock: materialize, report missed stops, forget old ones."""
        async with self._lock:
            change = Change()
            self._advance(self._clock(), change)
            await self.memory.commit(change)

    async def run(self) -> None:
        """The timer task: :meth:`tick` at every deadline, until cancelled."""
        while True:
            await self.tick()
            wake = self.next_wakeup()
            delay = self._max_sleep
            if self._held_since is not None:  # look again once the held step may be taken
                delay = min(delay, 1.0)
            if wake is not None:
                delay = min(delay, max(0.0, (wake - self._clock()).total_seconds()) + 0.001)
            await self._sleep(delay)

    def _clock(self) -> dt.datetime:
        """The wall time the rules go by: the wall clock, unless it stepped forward
        less than ``step_grace_s`` ago (then the time the monotonic clock gives since
        the last wall time believed)."""
        wall, mono = self._now(), self._monotonic()
        base_wall, base_mono = self._base
        expected = base_wall + dt.timedelta(seconds=mono - base_mono)
        step = (wall - expected).total_seconds()
        if step > STEP_S:
            if self._held_since is None:
                self._held_since = mono
                log.warning("patrol.clock_step_held", step_s=round(step, 3), wall=str(wall))
            if mono - self._held_since < self._step_grace_s:
                return expected
            log.warning("patrol.clock_step_taken", step_s=round(step, 3), wall=str(wall))
        elif step < -STEP_S:
            log.warning("patrol.clock_step_back", step_s=round(step, 3), wall=str(wall))
            self._rewind(wall)
        self._held_since = None
        self._base = (wall, mono)
        return wall

    def _reach(self, now: dt.datetime) -> dt.datetime:
        """The latest horizon a clock reading ``now`` can have set."""
        return (
            now
            + max((r.lead for r in self.plan.routes), default=dt.timedelta(0))
            + (self.plan.max_skew + dt.timedelta(seconds=STEP_S))
        )

    def _rewind(self, now: dt.datetime) -> None:
        """Materialize again, from ``now``, the rounds that may still be hit: those the
        engine forgot while the clock was ahead come back (rounds it still holds are
        kept as they are)."""
        for route in self.plan.routes:
            start = now - route.span - route.lead - self.plan.max_skew
            self._until[route.cfg.id] = min(self._until[route.cfg.id], start)

    def next_wakeup(self) -> dt.datetime | None:
        """The next moment a tick has work: a deadline, or a round to materialize."""
        times = [s.deadline for r in self.rounds.values() for s in r.slots if not s.settled]
        for route in self.plan.routes:
            after = self._until[route.cfg.id]
            coming = self.plan.round_starts(route, after, after + dt.timedelta(days=8))
            if coming:
                times.append(coming[0].start - route.lead - self.plan.max_skew)
        return min(times, default=None)

    # -- time ---------------------------------------------------------------------

    def _advance(self, now: dt.datetime, change: Change) -> None:
        self._materialize(now, change)
        for state in sorted(self.rounds.values(), key=lambda r: r.when.start):
            for slot in state.slots:
                if not slot.settled and slot.deadline <= now:
                    self._missed(state, slot, now, change)
        keep = self.plan.keep
        for round_id in [i for i, r in self.rounds.items() if r.last_deadline + keep < now]:
            del self.rounds[round_id]
            change.rounds.pop(round_id, None)
            change.write(ROUND.write(round_id, None))
        horizon = now - keep - self.plan.max_skew
        for key in [k for k, t in self._seen.items() if t < horizon]:
            del self._seen[key]
            change.write(seen_write(key, None))

    def _materialize(self, until: dt.datetime, change: Change) -> None:
        """Create every round whose first stop may be hit by ``until``."""
        for route in self.plan.routes:
            ahead = until + route.lead + self.plan.max_skew
            after = self._until[route.cfg.id]
            if ahead <= after:
                continue
            for when in self.plan.round_starts(route, after, ahead):
                if when.id not in self.rounds:
                    self.rounds[when.id] = state = RoundState.of(when)
                    change.touch(state)
            self._until[route.cfg.id] = ahead
            change.write(HORIZON.write(route.cfg.id, ahead))

    def _missed(self, state: RoundState, slot: SlotState, now: dt.datetime, change: Change) -> None:
        judged_late = slot.deadline < self.started_at
        change.touch(state)
        if judged_late and state.when.route.cfg.id not in self._resumed:
            slot.unjudged = True
            log.info("patrol.unjudged", round=state.id, checkpoint=slot.stop.checkpoint.id)
            return
        event = self._report.missed(state, slot, now, judged_late=judged_late)
        slot.missed_id = change.report(event).id

    # -- a hit --------------------------------------------------------------------

    def _hit(self, hit: PatrolHit, now: dt.datetime, change: Change) -> None:
        if hit.key in self._seen:
            self.duplicates += 1
            log.debug("patrol.duplicate", reader=hit.reader_id, tag=hit.tag, record=hit.record)
            return
        reader = self.plan.readers.get(hit.reader_id)
        skew = dt.timedelta(seconds=reader.clock_skew_s if reader is not None else 0.0)
        at, suspect = hit.devicetime, hit.devicetime > max(now, hit.received_at) + skew
        if suspect:
            at = hit.received_at
            log.warning(
                "patrol.clock_suspect", reader=hit.reader_id, devicetime=str(hit.devicetime)
            )
        self._seen[hit.key] = at
        change.write(seen_write(hit.key, at))
        self.hits += 1
        if hit.battery_v is not None:
            self.faults.battery(ReaderBattery(hit.reader_id, hit.battery_v, False, now), change)
        judged = self._resolve(hit, at, skew, suspect, change)
        if judged is None:
            return
        self._materialize(max(now, at), change)
        found = match(list(self.rounds.values()), judged.checkpoint.id, at, skew)
        self._judge(judged, found, change)

    def _resolve(
        self, hit: PatrolHit, at: dt.datetime, skew: dt.timedelta, suspect: bool, change: Change
    ) -> JudgedHit | None:
        """Which checkpoint and guard a hit stands for; None when it is no checkpoint hit."""
        plan = self.plan
        reader = plan.readers.get(hit.reader_id)
        if isinstance(reader, StationReaderConfig):
            guard = plan.guard_by_card.get(hit.tag)
            if guard is None and plan.guards:
                self.unknown_tags += 1
                change.report(self._report.unknown(hit, "card"))
                return None
            checkpoint = next(c for c in plan.cfg.checkpoints if c.id == reader.checkpoint)
            return JudgedHit(hit, checkpoint, guard.id if guard else None, at, skew, suspect)
        card = plan.guard_by_card.get(hit.tag)
        if card is not None:
            self._signed_in[hit.reader_id] = card.id
            change.write(SIGNED_IN.write(hit.reader_id, card.id))
            log.info("patrol.signed_in", reader=hit.reader_id, guard=card.id)
            return None
        checkpoint_cfg = plan.checkpoint_by_tag.get(hit.tag)
        if checkpoint_cfg is None:
            self.unknown_tags += 1
            change.report(self._report.unknown(hit, "checkpoint"))
            return None
        guard_id = self._guard_of(hit)
        if guard_id is None and isinstance(reader, HandheldReaderConfig):
            guard_id = reader.guard
        return JudgedHit(hit, checkpoint_cfg, guard_id, at, skew, suspect)

    def _guard_of(self, hit: PatrolHit) -> str | None:
        if hit.guard is None:
            return self._signed_in.get(hit.reader_id)
        by_card = self.plan.guard_by_card.get(hit.guard.upper())
        return by_card.id if by_card is not None else hit.guard

    def _judge(self, judged: JudgedHit, found: Match, change: Change) -> None:
        state, slot, report = found.round, found.slot, self._report
        if state is None or slot is None:
            self.outside += 1
            extra = {"verdict": "outside_schedule"}
            change.report(report.point("patrol.checkpoint", judged, extra=extra))
            return
        if found.repeat:
            extra = {"verdict": "repeat"}
            change.report(report.point("patrol.checkpoint", judged, state, slot, extra))
            return
        change.touch(state)
        back_from = state.skipped_before(slot)
        slot.hit_at, slot.guard = judged.at, judged.guard
        state.sequence.append(judged.checkpoint.id)
        if not state.started:
            state.started = True
            change.report(report.round("patrol.round_started", judged, state))
        verdict = {"verdict": found.verdict}
        change.report(report.point("patrol.checkpoint", judged, state, slot, verdict))
        if found.verdict == "late":
            state.late += 1
            late_by = (judged.at - slot.closes - judged.skew).total_seconds()
            late = {"late_by_s": late_by}
            change.report(report.point("patrol.late", judged, state, slot, late))
        if back_from is not None:
            state.in_order = False
            order = {"after": back_from.stop.checkpoint.id, "sequence": list(state.sequence)}
            change.report(report.point("patrol.out_of_order", judged, state, slot, order))
        if slot.missed_id is not None:
            proof = {"reason": "hit reported after the deadline"}
            cleared = report.point(
                "patrol.missed", judged, state, slot, proof, kind="cleared", incident=slot.missed_id
            )
            change.report(cleared)
        if state.all_hit and not state.completed:
            state.completed = True
            change.report(report.round("patrol.round_completed", judged, state))
