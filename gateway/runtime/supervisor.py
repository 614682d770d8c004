"""Supervised tasks: no exception escapes a device task; it is logged, counted, restarted.

One task per device (STYLE.md rule 5); a crash of one never stalls another.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import structlog

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class Supervisor:
    """Restarts crashed long-running coroutines with capped, jittered backoff.

    Attributes:
        crashes: per task name, how many times it raised.
    """

    min_delay: float = 0.5
    max_delay: float = 30.0
    crashes: dict[str, int] = field(default_factory=dict)

    async def run_forever(self, name: str, factory: Callable[[], Awaitable[None]]) -> None:
        """Run ``factory()`` again and again; only cancellation ends this.

        A coroutine that returns normally is restarted too: device tasks are
        meant to run for the life of the daemon.
        """
        failures = 0
        while True:
            try:
                await factory()
                log.warning("task.returned", task=name)
            except asyncio.CancelledError:
                raise
            except Exception:
                failures += 1
                self.crashes[name] = self.crashes.get(name, 0) + 1
                log.exception("task.crashed", task=name, crashes=self.crashes[name])
            raise_if_cancelling()
            delay = min(self.max_delay, self.min_delay * 2 ** min(failures, 16))
            await asyncio.sleep(random.uniform(delay / 2, delay))


def raise_if_cancelling() -> None:
    """Honour a cancellation that a library swallowed.

    On Python 3.11 ``asyncio.wait_for`` returns the result and drops the
    cancellation when the awaited reply arrives in the same instant the task is
    cancelled (fixed in 3.12); pymodbus waits for every reply that way. Without
    this check a poller could go on polling after the daemon asked it to stop.

    Raises:
        asyncio.CancelledError: the current task is being cancelled.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
