"""One way to run every device family: a stage declares its tasks and reports health.

A stage is built from the config by its own constructor (Modbus I/O lines,
cameras, patrol readers, alarm-panel receivers, ...). The daemon then asks it for
its long-running tasks and runs each under the :class:`Supervisor` in its task
group, named ``driver[<family>:<device>]`` for a device (STYLE.md rule 5), so a
crash of one device never stalls another. :meth:`Stage.health` is the current
health of each of its devices, for the heartbeat, the local status and tests.

The daemon's wiring (:mod:`gateway.daemon`) is then a list of stages.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

from gateway.events.observation import HealthState
from gateway.runtime.supervisor import Supervisor


@dataclass(frozen=True, slots=True)
class StageTask:
    """One long-running task of a stage.

    Attributes:
        name: the task's name in logs and crash counters, e.g.
            ``driver[modbus_io:gate-io]`` or ``evidence``.
        run: makes the coroutine; called again after a crash (with backoff).
    """

    name: str
    run: Callable[[], Awaitable[None]]


def device_task(family: str, device_id: str, run: Callable[[], Awaitable[None]]) -> StageTask:
    """The task of one device: named ``driver[<family>:<device id>]``."""
    return StageTask(f"driver[{family}:{device_id}]", run)


class Stage(Protocol):
    """A device family (or the rules that own one) as the daemon runs it.

    Attributes:
        family: the driver family: ``modbus_io``, ``onvif_camera``, ``patrol``, ``dc09``.
    """

    family: str

    def tasks(self) -> Sequence[StageTask]:
        """Every task to run for the life of the daemon (empty when nothing is configured)."""
        ...

    def health(self) -> Mapping[str, HealthState]:
        """Device id → its current health, for every device of the stage."""
        ...


@runtime_checkable
class Sighted(Protocol):
    """A stage that knows when each of its devices last answered (for the bench page)."""

    def last_seen(self) -> Mapping[str, datetime | None]:
        """Device id → gateway UTC time it last answered (None: not since start)."""
        ...


@runtime_checkable
class Counted(Protocol):
    """A stage that counts its devices' malformed frames (logged once, counted, skipped)."""

    def protocol_errors(self) -> Mapping[str, int]:
        """Device id → malformed or refused frames since start."""
        ...


def start_stages(stages: Iterable[Stage], tg: asyncio.TaskGroup, supervisor: Supervisor) -> int:
    """Create every stage's tasks in ``tg``, each under ``supervisor``; returns how many."""
    count = 0
    for stage in stages:
        for task in stage.tasks():
            tg.create_task(supervisor.run_forever(task.name, task.run), name=task.name)
            count += 1
    return count
