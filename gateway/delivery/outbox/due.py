"""When each open event is due again, on the monotonic clock (issue 10 item 7, issue 11 item 4).

An event the center must ack (priority 1-3) and has not is published again
``ack_timeout`` seconds after each PUBACK. The due times are kept here in memory
on ``time.monotonic()``, never on the wall clock: an NTP step of +60 s must not
re-send anything early, nor a step back hold a re-send for an hour. Only at start,
for rows a previous process sent, is the wall clock consulted once (the stored
``sent_at`` is all there is), and what it gives is clamped to ``[0, ack_timeout]``.

Rows acked meanwhile are forgotten by :meth:`ResendSchedule.forget`; rows gone
from the database for any other reason are forgotten when a read misses them.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Container, Iterable

COMPACT_AFTER = 4096
"""Stale heap entries (acked rows) beyond twice the live ones that trigger a rebuild."""


class ResendSchedule:
    """The open events sent to the broker and when each is due again.

    Args:
        ack_timeout: seconds after a PUBACK an unacked event is due again.
        clock: the monotonic clock (seconds); ``time.monotonic`` unless a test gives one.
    """

    def __init__(self, ack_timeout: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ack_timeout = ack_timeout
        self._clock = clock
        self._waiting: dict[int, tuple[float, int]] = {}  # n -> (due, priority)
        self._heap: list[tuple[float, int]] = []  # (due, n); entries not in _waiting are stale
        self._overdue: dict[int, int] = {}  # n -> priority

    def sent(self, n: int, priority: int) -> None:
        """Row ``n`` (an open event of ``priority``) got its PUBACK now."""
        self._overdue.pop(n, None)
        due = self._clock() + self.ack_timeout
        self._waiting[n] = (due, priority)
        heapq.heappush(self._heap, (due, n))

    def restore(self, n: int, priority: int, sent_at: float, wall_now: float) -> None:
        """Row ``n`` was sent by an earlier process at wall time ``sent_at`` (at start)."""
        left = min(max(sent_at + self.ack_timeout - wall_now, 0.0), self.ack_timeout)
        due = self._clock() + left
        self._waiting[n] = (due, priority)
        heapq.heappush(self._heap, (due, n))

    def forget(self, ns: Iterable[int]) -> None:
        """These rows are acked (or gone): never due again."""
        for n in ns:
            self._waiting.pop(n, None)
            self._overdue.pop(n, None)
        if len(self._heap) > 2 * len(self._waiting) + COMPACT_AFTER:
            # Their heap entries are stale; once they outnumber the live ones the heap is
            # rebuilt from the live ones (O(live), amortised O(1) per forget). Left to
            # pop one by one, a drain's million stale entries held about 100 MB and
            # :meth:`next_due_in` popped them all in one turn of the loop: 480 ms
            # (``bench/outbox_bench.py drain``, issue 14).
            self._heap = [(due, n) for n, (due, _) in self._waiting.items()]
            heapq.heapify(self._heap)

    def overdue(self, exclude: Container[int] = ()) -> list[int]:
        """Row keys due again now, in send order (priority, then creation), less ``exclude``."""
        self._promote()
        return [n for _, n in sorted((p, n) for n, p in self._overdue.items() if n not in exclude)]

    def priority(self, n: int) -> int | None:
        """The priority of row ``n`` if it is due again now (as :meth:`overdue` found)."""
        return self._overdue.get(n)

    def overdue_count(self) -> int:
        """How many open events are due again now."""
        self._promote()
        return len(self._overdue)

    def next_due_in(self) -> float | None:
        """Seconds until the next open event is due again (0 when one is), or None."""
        self._promote()
        if self._overdue:
            return 0.0
        while self._heap and self._waiting.get(self._heap[0][1], (None,))[0] != self._heap[0][0]:
            heapq.heappop(self._heap)  # stale: re-sent since, acked or gone
        if not self._heap:
            return None
        return max(0.0, self._heap[0][0] - self._clock())

    def __len__(self) -> int:
        return len(self._waiting) + len(self._overdue)

    def __contains__(self, n: object) -> bool:
        """Is row ``n`` an open event sent before (waiting for its ack, or due again)?"""
        return n in self._waiting or n in self._overdue

    def _promote(self) -> None:
        now = self._clock()
        while self._heap and self._heap[0][0] <= now:
            due, n = heapq.heappop(self._heap)
            entry = self._waiting.get(n)
            if entry is not None and entry[0] == due:
                del self._waiting[n]
                self._overdue[n] = entry[1]
