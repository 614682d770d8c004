"""Helpers for the alarm-rule tests: a school config, an :class:`AlarmSystem` on a real
SQLite state file and a :class:`ManualClock`, and the events it reported.

The rules are driven the way the daemon drives them: observations in, events out;
time moves only when the test moves it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import tomllib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from gateway.alarm.commands import command_handlers
from gateway.alarm.system import AlarmSystem
from gateway.commands.processor import CommandProcessor
from gateway.config.root import GatewayConfig
from gateway.errors import DeviceUnavailable
from gateway.events.model import Event, EventFactory
from gateway.events.observation import AnalogChanged, DeviceHealth, InputChanged
from gateway.runtime.state import StateWrite
from gateway.runtime.state_store import StateStore
from gateway.runtime.timebase import ManualClock
from tests.helpers import SIGNED_COMMANDS_TOML, assert_valid_event

SHANGHAI = ZoneInfo("Asia/Shanghai")

SCHOOL = (
    SIGNED_COMMANDS_TOML
    + """
[site]
id = "s1"
gateway = "gw1"
timezone = "Asia/Shanghai"

[[modules]]
id = "io"
transport = { type = "tcp", host = "127.0.0.1", port = 1 }
profile = "adam-6050"

[[modules]]
id = "ai"
transport = { type = "tcp", host = "127.0.0.1", port = 2 }
profile = "iologik-e1240"

[zone_types.intrusion]
hold_ms = 5000

[[areas]]
id = "A"
name = "教学楼"

[[areas]]
id = "PERIM"
name = "周界"
schedule = "night"
initial = "disarmed"

[[schedules]]
id = "night"
holidays = [2026-10-01]
armed = [
  { days = ["sun", "mon", "tue", "wed", "thu", "fri"], start = "22:00", end = "06:00" },
  { days = ["sat", "sun"], start = "00:00", end = "24:00" },
]

[[zones]]
id = "P1"
name = "一键报警"
type = "panic"
module = "io"
input = 0
area = "A"

[[zones]]
id = "T1"
name = "箱体防拆"
type = "tamper"
module = "io"
input = 1
contact = "NC"
area = "A"

[[zones]]
id = "I1"
name = "红外探测器"
type = "intrusion"
module = "io"
input = 2
contact = "NC"
area = "A"

[[zones]]
id = "R1"
name = "围墙对射"
type = "perimeter"
module = "io"
input = 3
contact = "NC"
area = "PERIM"

[[zones]]
id = "X1"
name = "机房漏水"
type = "technical"
module = "io"
input = 4

[[zones]]
id = "E1"
name = "财务室探测器 (EOL)"
type = "intrusion"
module = "ai"
input = 0
area = "A"

[zones.line]
type = "eol"
short = [0, 4999]
normal = [8000, 20000]
alarm = [26000, 40000]
cut = [50000, 65535]

[[zones]]
id = "D1"
name = "档案室探测器 (报警+防拆)"
type = "intrusion"
module = "io"
input = 5
contact = "NC"
area = "A"
line = { type = "paired", tamper_input = 6 }

[[zones]]
id = "L1"
name = "金库门磁"
type = "intrusion"
module = "io"
input = 7
contact = "NC"
area = "A"
latch = true

[[outputs]]
id = "S1"
name = "教学楼警号"
kind = "siren"
module = "io"
channel = 0
zones = ["I1"]
areas = ["PERIM"]
duration_s = 60
"""
)

REST = {"io": {1: True, 2: True, 3: True, 5: True, 6: True, 7: True}, "ai": {0: 12000}}
"""Every input at rest: NC loops closed, EOL in its normal band."""


def school(**extra: Any) -> GatewayConfig:
    """The test school; ``extra`` replaces top-level sections (``commands={...}``)."""
    raw = tomllib.loads(SCHOOL)
    raw.update(extra)
    return GatewayConfig.model_validate(raw)


def local(text: str) -> dt.datetime:
    """A Shanghai local time ``YYYY-MM-DD HH:MM`` as an aware datetime."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=SHANGHAI)


@dataclass
class Rig:
    """An alarm system under test and what came out of it."""

    system: AlarmSystem
    commands: CommandProcessor
    clock: ManualClock
    events: list[Event] = field(default_factory=list)
    writes: list[tuple[str, int, bool]] = field(default_factory=list)
    failing_modules: set[str] = field(default_factory=set)
    kept: list[tuple[str, StateWrite]] = field(default_factory=list)
    """State kept with an event (``emit(event, keep=...)``): (event id, write)."""

    def of(self, type_: str, subject: str | None = None) -> list[Event]:
        """Events of one type (and subject), in order."""
        return [e for e in self.events if e.type == type_ and subject in (None, e.subject)]

    def states(self, type_: str, subject: str) -> list[str | None]:
        """The ``data.state`` of each event of one type and subject, in order."""
        return [e.state for e in self.of(type_, subject)]

    async def contact(self, module: str, channel: int, closed: bool) -> None:
        """A digital input changed (as the poller reports it)."""
        obs = InputChanged(module, channel, closed, received_at=self.clock.now())
        await self.system.observe(obs)

    async def analog(self, module: str, channel: int, value: int) -> None:
        """An analog input changed."""
        await self.system.observe(AnalogChanged(module, channel, value, self.clock.now()))

    async def online(self, module: str) -> None:
        """A module came (back) online."""
        await self.system.observe(DeviceHealth(module, "online", "offline"))

    async def at_rest(self) -> None:
        """Report every input at rest (the first poll of each module)."""
        for module, channels in REST.items():
            for channel, value in channels.items():
                if module == "ai":
                    await self.analog(module, channel, int(value))
                else:
                    await self.contact(module, channel, bool(value))

    async def advance(self, seconds: float) -> None:
        """Move the clock on and let the timers' work finish."""
        await self.clock.advance(seconds)
        await settle()

    async def wait_for(self, predicate: Callable[[], bool], within: float = 3.0) -> None:
        """Wait (real time, briefly) for an effect of a timer or a command."""
        async with asyncio.timeout(within):
            while not predicate():  # noqa: ASYNC110 - a plain predicate, no event to wait on
                await asyncio.sleep(0.01)


async def settle() -> None:
    """Let tasks woken by the clock run (SQLite writes go through a thread)."""
    for _ in range(5):
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def rig(
    tmp_path: Path,
    *,
    cfg: GatewayConfig | None = None,
    start: dt.datetime | None = None,
    key: bytes | None = None,
    clock: ManualClock | None = None,
) -> AsyncIterator[Rig]:
    """A started alarm system with its timers running; the state file is
    ``tmp_path/state.sqlite`` so a second ``rig`` on the same path is a restart."""
    clock = clock or ManualClock(start or local("2026-11-30 10:00"))  # a Monday
    cfg = cfg or school()
    events: list[Event] = []
    kept: list[tuple[str, StateWrite]] = []

    async def emit(
        event: Event, *, keep: Sequence[StateWrite] = (), blob: tuple[str, bytes] | None = None
    ) -> Event:
        stored = event.stored(len(events) + 1, "test-stream")
        assert_valid_event(stored.to_dict())
        events.append(stored)
        kept.extend((event.id, w) for w in keep)
        store.outbox_kept(keep)  # committed at once, as the outbox's listener is told
        return stored

    async with StateStore(tmp_path / "state.sqlite") as store:
        result: Rig

        async def writer(module: str, channel: int, on: bool) -> None:
            if module in result.failing_modules:
                raise DeviceUnavailable("switched off", device_id=module)
            result.writes.append((module, channel, on))

        factory = EventFactory("campus/s1/gw1", lambda: True, now=clock.now)
        system = AlarmSystem(cfg, factory, emit, store=store, writer=writer, clock=clock)
        commands = CommandProcessor(
            prefix=cfg.topic_prefix,
            cfg=cfg.commands,
            key=key,
            handlers=command_handlers(system),
            factory=factory,
            emit=emit,
            clock=clock,
            store=store,
        )
        result = Rig(system, commands, clock, events, kept=kept)
        await system.start()
        task = asyncio.create_task(system.run(), name="alarm-timers")
        try:
            yield result
            assert system.timers.errors == 0
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
