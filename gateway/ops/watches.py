"""Which tasks the watchdog watches, and what counts as their progress.

* ``rules``: observations handled; waiting while the queue is empty or while it
  waits for the outbox to commit an event (the outbox writer is watched itself:
  a slow or failing disk is a storage fault, reported as one, not a hang).
* ``uplink``: connection attempts, PUBACKs, failed publishes and heartbeats;
  waiting while its send loop has nothing due.
* ``outbox-writer``: commits tried (a failing commit is retried every second,
  which counts); waiting while nothing is queued.
* ``driver[modbus_io:<line>]``: polls tried on the line (an offline module is
  retried at least every 5 s, which counts).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from drivers.modbus_io.line_poller import LinePoller
from gateway.delivery.outbox import Outbox
from gateway.delivery.uplink import Uplink
from gateway.runtime.progress import Progress


def watch_critical(
    progress: Progress,
    *,
    rules_done: Callable[[], int],
    rules_waiting: Callable[[], bool],
    outbox: Outbox,
    uplink: Uplink,
    lines: Sequence[LinePoller],
) -> None:
    """Register the critical tasks of one gateway with ``progress``."""
    progress.watch("rules", rules_done, rules_waiting)
    stats = outbox.stats
    progress.watch(
        "outbox-writer", lambda: stats.commits + stats.commit_failures, lambda: outbox.waiting == 0
    )
    up = uplink.stats
    progress.watch(
        "uplink",
        lambda: up.attempts + up.published + up.publish_failures + up.heartbeats,
        lambda: up.idle,
    )
    for line in lines:
        progress.watch(f"driver[modbus_io:{line.name}]", _polls(line))


def _polls(line: LinePoller) -> Callable[[], int]:
    return lambda: sum(p.polls for p in line.pollers)
