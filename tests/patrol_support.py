"""Helpers shared by the ``test_patrol_*`` files: a night's plan, a controllable
clock, an event log standing in for the outbox, and a running-engine factory."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from gateway.config.root import GatewayConfig
from gateway.delivery.outbox import kept
from gateway.events.model import Event, EventFactory
from gateway.events.observation import DeviceHealth
from gateway.events.patrol_observation import PatrolHit, PatrolObservation
from gateway.patrol.engine import TourEngine
from gateway.patrol.plan import Plan
from gateway.runtime.state import Kind, StateWrite
from gateway.runtime.state_store import StateStore
from tests.helpers import SIGNED_COMMANDS, assert_valid_event

TZ = ZoneInfo("Asia/Shanghai")
NIGHT = dt.datetime(2026, 11, 29, 20, 0, tzinfo=TZ)
"""Round 1 of the test night starts here (local); rounds every 2 h until 06:00."""
GUARD_CARD = "A1B2C3D4E5"
TAGS = {f"CP{n}": f"04000000{n:02d}" for n in range(1, 6)}
"""Checkpoint id → its tag (5-byte RFID serials in hex)."""


def night_config(**patrol: Any) -> GatewayConfig:
    """A site with one ordered key-area route CP1..CP5 (stops 10 min apart, 10 min
    windows, 5 min tolerance), rounds 20:00–06:00 every 120 min, guard G1, and
    network reader ``app``, handheld ``wand``; ``patrol`` keys override."""
    raw_patrol: dict[str, Any] = {
        "checkpoints": [
            {"id": cp, "tag": tag, "name": f"巡更点{cp}", "location": f"位置{cp}"}
            for cp, tag in TAGS.items()
        ],
        "routes": [
            {
                "id": "night",
                "name": "夜间巡更",
                "key_area": True,
                "schedule": {"start": "20:00", "end": "06:00", "every_min": 120},
                "stops": [
                    {"checkpoint": cp, "offset_min": 10 * i, "window_min": 10, "tolerance_min": 5}
                    for i, cp in enumerate(TAGS)
                ],
            }
        ],
        "guards": [{"id": "G1", "name": "王师傅", "card": GUARD_CARD}],
        "readers": [
            {"type": "network", "id": "app", "listen": {"port": 17001}, "clock_skew_s": 60},
            {
                "type": "handheld",
                "id": "wand",
                "listen": {"port": 17002},
                "guard": "G1",
                "clock_skew_s": 120,
            },
        ],
    }
    raw_patrol.update(patrol)
    return GatewayConfig.model_validate(
        {
            "commands": SIGNED_COMMANDS,
            "site": {"id": "test-school", "gateway": "gw1"},
            "patrol": raw_patrol,
        }
    )


class FakeClock:
    """A clock the test moves: ``clock()`` is the time, ``clock.set(t)`` moves it (time
    passes: its monotonic seconds, :meth:`monotonic`, move as far forward), and
    ``clock.step(...)`` steps the wall time alone, as NTP or ``date -s`` would."""

    def __init__(self, start: dt.datetime) -> None:
        self.t = start.astimezone(dt.UTC)
        self.mono = 0.0

    def __call__(self) -> dt.datetime:
        return self.t

    def monotonic(self) -> float:
        return self.mono

    def set(self, t: dt.datetime) -> None:
        t = t.astimezone(dt.UTC)
        self.mono += max(0.0, (t - self.t).total_seconds())
        self.t = t

    def advance(self, **delta: float) -> None:
        self.set(self.t + dt.timedelta(**delta))

    def step(self, **delta: float) -> None:
        self.t += dt.timedelta(**delta)


T = TypeVar("T")


class EventLog:
    """Stands in for the outbox's ``append``: numbers events, checks them against
    the schema, keeps them, and applies the state kept with them (``kept``: kind →
    key → JSON data, as the outbox would hold it)."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.kept: dict[str, dict[str, Any]] = {}
        self._changed = asyncio.Condition()

    async def __call__(
        self,
        event: Event,
        *,
        keep: Sequence[StateWrite] = (),
        blob: tuple[str, bytes] | None = None,
    ) -> Event:
        stored = event.stored(len(self.events) + 1, "test-stream")
        assert_valid_event(stored.to_dict())
        async with self._changed:
            self.events.append(stored)
            kept.remember(self.kept, keep)  # as the outbox applies a commit's writes
            self._changed.notify_all()
        return stored

    def recall(self, kind: Kind[T]) -> dict[str, T]:
        """The kept values of ``kind``, decoded (the outbox's ``kept``)."""
        return {k: kind.decode(v) for k, v in self.kept.get(kind.name, {}).items()}

    async def wait_for(self, predicate: Callable[[], bool], within: float = 5.0) -> None:
        """Until ``predicate()`` holds (checked after every event); TimeoutError if not."""
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(predicate)

    def of(self, type_: str, subject: str | None = None) -> list[Event]:
        return [e for e in self.events if e.type == type_ and subject in (None, e.subject)]

    def types(self) -> list[str]:
        return [e.type for e in self.events]


def make_engine(
    cfg: GatewayConfig,
    clock: FakeClock,
    log: EventLog,
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    store: StateStore | None = None,
) -> TourEngine:
    """A tour engine on ``cfg``'s plan, ``clock`` and ``log`` (and ``sleep`` for ``run``),
    resuming from ``store`` when given."""
    factory = EventFactory(cfg.source_prefix, lambda: True, now=clock)
    plan = Plan(cfg.patrol, cfg.site.timezone)
    return TourEngine(
        plan, factory, log, store=store, now=clock, sleep=sleep, monotonic=clock.monotonic
    )


def hit(
    tag: str,
    at: dt.datetime,
    *,
    reader: str = "app",
    received: dt.datetime | None = None,
    guard: str | None = "G1",
    battery: float | None = None,
) -> PatrolHit:
    """A hit of ``tag`` at reader time ``at`` (received then, unless ``received``)."""
    kind = "handheld" if reader == "wand" else "network"
    return PatrolHit(
        reader_id=reader,
        kind=kind,
        tag=tag,
        devicetime=at,
        received_at=(received or at).astimezone(dt.UTC),
        guard=guard,
        battery_v=battery,
    )


async def walk(
    engine: TourEngine,
    clock: FakeClock,
    start: dt.datetime,
    checkpoints: list[str],
    *,
    minutes_apart: float = 10.0,
    reader: str = "app",
) -> None:
    """A guard walking ``checkpoints`` live: each hit arrives as it happens."""
    for n, cp in enumerate(checkpoints):
        at = start + dt.timedelta(minutes=minutes_apart * n)
        clock.set(at)
        await engine.tick()
        await engine.observe(hit(TAGS[cp], at, reader=reader))


class Sink:
    """A patrol sink that keeps every observation and lets a test wait for one."""

    def __init__(self) -> None:
        self.seen: list[PatrolObservation] = []
        self._changed = asyncio.Condition()

    async def __call__(self, observation: PatrolObservation) -> None:
        async with self._changed:
            self.seen.append(observation)
            self._changed.notify_all()

    def hits(self) -> list[PatrolHit]:
        return [o for o in self.seen if isinstance(o, PatrolHit)]

    def health(self) -> list[str]:
        return [o.state for o in self.seen if isinstance(o, DeviceHealth)]

    async def wait_for(self, predicate: Callable[[], bool], within: float = 5.0) -> None:
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(predicate)


@contextlib.asynccontextmanager
async def running(task_body: Callable[[], Awaitable[None]], name: str) -> AsyncIterator[None]:
    """Run a reader's ``run`` as a task for the block; fail if it ended on its own."""
    task = asyncio.create_task(task_body(), name=name)
    try:
        yield
        assert not task.done(), f"{name} ended: {task}"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
