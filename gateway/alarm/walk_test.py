"""Walk test (maintenance mode): a technician trips every detector; the center gets no alarms.

A walk test covers the zones of an area, or a list of zones, for a duration
(``[walk_test] max_duration_s`` at most). It is started and stopped by the
signed ``walk_test`` command or from the bench page (password). While a zone
is covered:

* a trip — its detector going into alarm condition, its tamper loop opening, or
  its line being cut or shorted — is reported as ``zone.walk_test`` (priority 5,
  SIA TP, ``data.test = true``), never as ``alarm.*``; its sirens stay silent
  (no alarm, so no output is switched);
* a line fault is still reported as ``fault.line`` (a fault, not an alarm), and
  conditions already active before the test still end as they would;
* panic zones stay live unless a signed command names them explicitly, with its
  own ``panic_duration_s`` (``[walk_test] panic_max_s`` at most): GB 50394 §5.2.3
  makes them 24 h zones, so their time out of service is short and deliberate.
  An area's panic zones are left out and listed as ``kept_live``.

``maintenance.started`` and ``maintenance.ended`` (priority 3, CID 607 walk-test
mode) tell the center who, what and until when; ``maintenance.ended`` carries the
report: zones tripped with their first and last trip, zones never tripped,
start, end and why it ended (``time_up``, ``stopped``, ``expired`` while the
gateway was off). The test ends by itself at its time; a restart does not
extend it and neither does a step of the wall clock (see
:mod:`gateway.alarm.walk_record`): a zone stops being covered the moment either
clock says its time is up, whatever the timer task is doing. When a zone
leaves the test it is evaluated again, so a door left open in an armed area
alarms at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection
from datetime import datetime, timedelta
from typing import Any, Literal

import structlog

from gateway.alarm.bypass import Zones
from gateway.alarm.walk_record import (
    ACTIVE_KEY,
    CHECKPOINT_S,
    KEEP_REPORTS,
    REPORTS_KEY,
    Trip,
    WalkTest,
)
from gateway.config.alarm import WalkTestConfig
from gateway.errors import CommandRefused, StateError
from gateway.events.model import rfc3339
from gateway.runtime.state import META
from gateway.runtime.state_store import StateStore
from gateway.runtime.tasks import cancel_and_wait
from gateway.runtime.timebase import Clock

log = structlog.get_logger(__name__)


class WalkTests:
    """The walk test of one gateway (one at a time). Run :meth:`run` as a task.

    Args:
        engine: the zones (config, events, re-evaluation).
        cfg: ``[walk_test]`` limits.
        areas: the configured area ids.
        store: where the running test and the reports are kept.
        clock: the rules' (wall) clock.
        monotonic: seconds that never step (``time.monotonic``; tests may pass their own).

    Attributes:
        active: the running test, or None.
    """

    def __init__(
        self,
        engine: Zones,
        cfg: WalkTestConfig,
        areas: Collection[str],
        store: StateStore,
        clock: Clock,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine = engine
        self._cfg = cfg
        self._areas = set(areas)
        self._store = store
        self._clock = clock
        self._monotonic = monotonic
        self._changed = asyncio.Event()
        self._lock = asyncio.Lock()
        self._end_at = self._panic_end_at = 0.0  # monotonic
        self._checkpoint_at = monotonic()
        self.active: WalkTest | None = _load(store)
        if self.active is not None:
            self._arm(self.active, self.active.remaining_s, self.active.panic_remaining_s)

    # -- what the rules ask ------------------------------------------------------------------

    def covers(self, zone_id: str) -> bool:
        """True while ``zone_id`` is under test: its trips are not alarms."""
        test = self.active
        if test is None or zone_id not in test.zones or zone_id in test.released:
            return False
        if zone_id in test.panic_zones:
            assert test.panic_until is not None
            return self._before(test.panic_until, self._panic_end_at)
        return self._before(test.until, self._end_at)

    def probe(self, zone_id: str) -> Literal["tripped", "untested"] | None:
        """``tripped``/``untested`` for a zone under test now, None otherwise."""
        if not self.covers(zone_id):
            return None
        assert self.active is not None
        return "tripped" if zone_id in self.active.tripped else "untested"

    def reports(self) -> list[dict[str, Any]]:
        """The reports of the last finished walk tests, newest first."""
        raw = self._store.meta(REPORTS_KEY)
        return list(raw) if isinstance(raw, list) else []

    def snapshot(self) -> dict[str, Any]:
        """The running test (or None) and the last report, JSON-ready."""
        reports = self.reports()
        return {
            "active": self.active.summary() if self.active is not None else None,
            "last_report": reports[0] if reports else None,
        }

    # -- start, trip, stop -----------------------------------------------------------------

    async def start(
        self,
        *,
        by: str,
        source: Literal["command", "bench"],
        duration_s: float,
        area: str | None = None,
        zones: Collection[str] = (),
        panic_duration_s: float | None = None,
        allow_panic: bool = False,
    ) -> WalkTest:
        """Start a walk test of ``area``'s zones and/or ``zones``.

        Panic zones are only taken when named in ``zones`` with ``allow_panic``
        (a signed command) and ``panic_duration_s``; an area's panic zones are
        left out (``kept_live``).

        Raises:
            CommandRefused: a test is already running (``busy``); unknown area or
                zone, no zone left, a duration out of its limits, or a panic zone
                named without the right to or without its own duration (``invalid``
                / ``rejected``).
            StateError: the test cannot be persisted (it is not started).
        """
        async with self._lock:
            if self.active is not None:
                raise CommandRefused(
                    f"walk test {self.active.id} runs until {rfc3339(self.active.until)}; "
                    "stop it first",
                    command="walk_test",
                    reason="busy",
                )
            chosen, panic, kept = self._choose(area, zones, allow_panic)
            panic_s = self._check_durations(duration_s, panic, panic_duration_s)
            now = self._clock.now()
            until = now + timedelta(seconds=duration_s if len(panic) < len(chosen) else panic_s)
            test = WalkTest(
                id="",
                by=by,
                source=source,
                area=area,
                zones=chosen,
                panic_zones=panic,
                kept_live=kept,
                started=now,
                until=until,
                panic_until=now + timedelta(seconds=panic_s) if panic else None,
                remaining_s=(until - now).total_seconds(),
                panic_remaining_s=panic_s if panic else None,
                checkpoint=now,
            )
            event = self._engine.factory.make(
                "maintenance.started",
                device="gateway",
                subject=area or "zones",
                state="active",
                data={"kind": "walk_test", **self._who_what(test)},
                received_at=now,
                opens_incident=True,
            )
            test.id = event.id
            self.active = test
            self._arm(test, test.remaining_s, test.panic_remaining_s)
            try:
                await self._persist(raise_refusal=True)  # saved before it is reported
            except BaseException:
                self.active = None
                raise
            await self._engine.emit(event)
            self._changed.set()
            log.info("walk_test.started", id=test.id, by=by, zones=chosen, until=rfc3339(until))
            return test

    async def trip(self, zone_id: str, condition: str, received_at: datetime | None) -> None:
        """A covered zone tripped: report ``zone.walk_test`` and remember it."""
        test = self.active
        if test is None:
            return
        zone = self._engine.config[zone_id]
        at = received_at or self._clock.now()
        trip = test.tripped.get(zone_id)
        if trip is None:
            trip = test.tripped[zone_id] = Trip(at, at, 0)
        trip.last, trip.count = at, trip.count + 1
        if condition not in trip.conditions:
            trip.conditions.append(condition)
        await self._engine.emit(
            self._engine.factory.make(
                "zone.walk_test",
                device=zone.module,
                subject=zone_id,
                state="instant",
                data={
                    "test": True,
                    **zone.event_fields(),
                    "condition": condition,
                    "count": trip.count,
                    "untripped": test.untripped,
                },
                received_at=at,
                incident=test.id,
            )
        )
        await self._persist()
        log.info("walk_test.trip", zone=zone_id, condition=condition, count=trip.count)

    async def stop(self, *, by: str) -> dict[str, Any]:
        """End the running test now; returns its report.

        Raises:
            CommandRefused: no walk test is running (``rejected``).
        """
        if self.active is None:
            raise CommandRefused("no walk test is running", command="walk_test")
        report = await self._end("stopped", by)
        assert report is not None
        return report

    async def resume(self) -> None:
        """At start: end a test whose time ran out while the gateway was off."""
        test = self.active
        if test is not None and not self._before(test.until, self._end_at):
            await self._end("expired", "gateway")

    # -- time ------------------------------------------------------------------------------

    async def run(self) -> None:
        """End tests at their time, release panic zones at theirs, write checkpoints."""
        while True:
            self._changed.clear()
            test = self.active
            if test is None:
                await self._changed.wait()
                continue
            await self._tick(test)
            if self.active is not test:
                continue
            await self._wait(self._next_due(test))

    async def _tick(self, test: WalkTest) -> None:
        if not self._before(test.until, self._end_at):
            await self._end("time_up", "gateway")
            return
        due_panic = [z for z in test.panic_zones if z not in test.released]
        if due_panic and not self.covers(due_panic[0]):
            test.released.extend(due_panic)
            await self._persist()
            log.info("walk_test.panic_zones_live", zones=due_panic)
            for zone_id in due_panic:
                await self._engine.evaluate(zone_id)
        if self._monotonic() - self._checkpoint_at >= CHECKPOINT_S:
            await self._persist()

    def _next_due(self, test: WalkTest) -> tuple[datetime, float]:
        """The next moment to look again: (wall time, monotonic seconds from now)."""
        mono = self._monotonic()
        walls = [test.until]
        monos = [self._end_at - mono, self._checkpoint_at + CHECKPOINT_S - mono]
        if test.panic_until is not None and any(z not in test.released for z in test.panic_zones):
            walls.append(test.panic_until)
            monos.append(self._panic_end_at - mono)
        return min(walls), max(0.0, min(monos))

    async def _wait(self, due: tuple[datetime, float]) -> None:
        wall, mono_s = due
        waits = [
            asyncio.ensure_future(self._clock.sleep_until(wall)),
            asyncio.ensure_future(asyncio.sleep(mono_s)),
            asyncio.ensure_future(self._changed.wait()),
        ]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await cancel_and_wait(waits)

    def _before(self, wall: datetime, mono: float) -> bool:
        return self._clock.now() < wall and self._monotonic() < mono

    def _arm(self, test: WalkTest, left_s: float, panic_left_s: float | None) -> None:
        """Set the monotonic ends; a restarted test also takes the earlier wall end."""
        now, mono = self._clock.now(), self._monotonic()
        left = min(left_s, (test.until - now).total_seconds())
        self._end_at = mono + left
        test.until = min(test.until, now + timedelta(seconds=max(left, 0.0)))
        if test.panic_until is not None and panic_left_s is not None:
            panic_left = min(panic_left_s, (test.panic_until - now).total_seconds())
            self._panic_end_at = mono + panic_left
            test.panic_until = min(test.panic_until, now + timedelta(seconds=max(panic_left, 0.0)))

    # -- helpers ---------------------------------------------------------------------------

    def _choose(
        self, area: str | None, zones: Collection[str], allow_panic: bool
    ) -> tuple[list[str], list[str], list[str]]:
        """(zones under test, panic zones among them, an area's panic zones kept live)."""
        config = self._engine.config
        if area is None and not zones:
            raise CommandRefused("name an area or zones", command="walk_test", reason="invalid")
        if area is not None and area not in self._areas:
            raise CommandRefused(f"no area {area!r}", command="walk_test", reason="invalid")
        unknown = [z for z in zones if z not in config]
        if unknown:
            raise CommandRefused(
                f"no zone {', '.join(map(repr, unknown))}", command="walk_test", reason="invalid"
            )
        named_panic = [z for z in zones if config[z].type == "panic"]
        if named_panic and not allow_panic:
            raise CommandRefused(
                f"panic zones {', '.join(named_panic)} stay live: only a signed command may "
                "name them, with its own panic_duration_s (GB 50394 §5.2.3)",
                command="walk_test",
            )
        in_area = [z for z, c in config.items() if area is not None and c.area == area]
        kept = [z for z in in_area if config[z].type == "panic" and z not in zones]
        wanted = set(zones) | {z for z in in_area if z not in kept}
        chosen = [z for z in config if z in wanted]
        if not chosen:
            raise CommandRefused("no zone to test", command="walk_test", reason="invalid")
        return chosen, [z for z in chosen if config[z].type == "panic"], kept

    def _check_durations(
        self, duration_s: float, panic: list[str], panic_duration_s: float | None
    ) -> float:
        """The panic zones' duration (0 without them), after checking both limits."""
        if not 0 < duration_s <= self._cfg.max_duration_s:
            raise CommandRefused(
                f"duration_s must be 0..{self._cfg.max_duration_s:g} s "
                "([walk_test] max_duration_s)",
                command="walk_test",
                reason="invalid",
            )
        if not panic:
            return 0.0
        limit = min(self._cfg.panic_max_s, duration_s)
        if panic_duration_s is None or not 0 < panic_duration_s <= limit:
            raise CommandRefused(
                f"panic zones {', '.join(panic)} need panic_duration_s of 0..{limit:g} s "
                "([walk_test] panic_max_s, and no longer than duration_s)",
                command="walk_test",
                reason="invalid",
            )
        return panic_duration_s

    @staticmethod
    def _who_what(test: WalkTest) -> dict[str, Any]:
        return {
            "by": test.by,
            "source": test.source,
            "area": test.area,
            "zones": test.zones,
            "panic_zones": test.panic_zones,
            "kept_live": test.kept_live,
            "started": rfc3339(test.started),
            "until": rfc3339(test.until),
            "panic_until": rfc3339(test.panic_until) if test.panic_until else None,
        }

    async def _end(self, reason: str, by: str) -> dict[str, Any] | None:
        async with self._lock:
            test = self.active
            if test is None:
                return None
            now = self._clock.now()
            report = test.report(ended=min(now, test.until), reason=reason, ended_by=by)
            reports = [report, *self.reports()][:KEEP_REPORTS]
            self.active = None
            # The test has ended whatever the disk says: its report goes out and its
            # zones are judged again even when the state file refuses the write
            # (before, the ending stopped here: no ``maintenance.ended``, the zones
            # under test stayed silent, and the alarm task's timers died with it).
            # Written behind, so a refused write is retried with this value until it
            # lands: a waiting write refused would never land, and the next start
            # would bring the ended test back, its zones silenced (review 2026-12-03).
            await self._store.put(META, REPORTS_KEY, reports, wait=False)
            await self._store.put(META, ACTIVE_KEY, None, wait=False)
            await self._engine.emit(
                self._engine.factory.make(
                    "maintenance.ended",
                    device="gateway",
                    subject=test.area or "zones",
                    state="cleared",
                    data={"kind": "walk_test", **report},
                    received_at=now,
                    incident=test.id,
                )
            )
            self._changed.set()
        log.info("walk_test.ended", id=test.id, reason=reason, untripped=test.untripped)
        for zone_id in test.zones:
            await self._engine.evaluate(zone_id)
        return report

    async def _persist(self, *, raise_refusal: bool = False) -> None:
        """Write the running test down, with the monotonic time left now; a refusal of
        the state file is raised only with ``raise_refusal`` (at the start)."""
        test = self.active
        if test is None:
            return
        mono = self._monotonic()
        test.remaining_s = max(0.0, self._end_at - mono)
        if test.panic_remaining_s is not None:
            test.panic_remaining_s = max(0.0, self._panic_end_at - mono)
        test.checkpoint = self._clock.now()
        self._checkpoint_at = mono
        try:
            await self._store.put_meta(ACTIVE_KEY, test.to_json())
        except StateError as exc:
            if raise_refusal:
                raise
            # A checkpoint: logged, never raised into the loop that runs the alarm
            # system's timers; the test in memory is what holds.
            log.error("walk_test.not_saved", error=str(exc))


def _load(store: StateStore) -> WalkTest | None:
    """The persisted running test; one this version cannot read is logged and dropped
    (its zones are live again)."""
    raw = store.meta(ACTIVE_KEY)
    if not isinstance(raw, dict):
        return None
    try:
        return WalkTest.from_json(raw)
    except (KeyError, TypeError, ValueError) as exc:
        log.error("walk_test.unreadable", error=str(exc), raw=repr(raw)[:500])
        return None
