"""Is the daemon making progress? The registry the systemd watchdog asks.

Each critical task (the rules, the uplink, the outbox writer, every device line)
is *watched*: a counter it already keeps (observations handled, polls tried,
commits tried, connection attempts) and a flag saying it is waiting for input.
A watched task is **stalled** when it is not waiting for input and its counter
has not moved for ``limit`` seconds: it is stuck inside one unit of work.

A task that waits for input (the rules on an empty queue, the uplink on an empty
outbox) is healthy however long it waits; so is one that retries a failing
device or disk, because each retry moves its counter. Only a task wedged inside
one step (a lost wake-up, a deadlock, a library call that never returns) stops
the watchdog, and systemd then restarts the daemon (``WatchdogSec=``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(slots=True)
class Watch:
    """One watched task.

    Attributes:
        name: ``rules``, ``uplink``, ``outbox-writer``, ``driver[modbus_io:<line>]``.
        counter: returns a number that moves with every unit of work done or tried.
        waiting: returns True while the task waits for input (healthy however long).
    """

    name: str
    counter: Callable[[], int]
    waiting: Callable[[], bool]
    _last_value: int = 0
    _last_moved: float = 0.0


@dataclass(slots=True)
class Progress:
    """The registry of watched tasks (one per gateway: no process-wide state).

    Args:
        limit: seconds without progress (and not waiting) that make a task stalled.
        clock: monotonic seconds (tests may pass their own).
    """

    limit: float
    clock: Callable[[], float] = time.monotonic
    _watches: dict[str, Watch] = field(default_factory=dict)

    def watch(
        self,
        name: str,
        counter: Callable[[], int],
        waiting: Callable[[], bool] = lambda: False,
    ) -> None:
        """Watch a task from now on (a second call with the same name replaces it)."""
        self._watches[name] = Watch(name, counter, waiting, counter(), self.clock())

    def stalled(self) -> list[str]:
        """Names of the stalled tasks, in registration order (empty: all is well)."""
        now = self.clock()
        out: list[str] = []
        for w in self._watches.values():
            value = w.counter()
            if value != w._last_value or w.waiting():
                w._last_value, w._last_moved = value, now
            elif now - w._last_moved > self.limit:
                out.append(w.name)
        return out

    @property
    def names(self) -> list[str]:
        """Every watched task's name."""
        return list(self._watches)
