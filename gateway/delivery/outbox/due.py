"""When each open event is due again, on the monotonic clock (issue 10 item 7, issue 11 item 4).

An event the center must ack (priority 1-3) and has not is published again
``ack_timeout`` seconds after each PUBACK. The due times are kept here in memory
on ``time.monotonic()``, never on the wall clock: an NTP step of +60 s must not
re-send anything early, nor a step back hold a re-send for an hour. Only at start,
for rows a previous process sent, is the wall clock consulted once (the stored
``sent_at`` is all there is), and what it gives is clamped to ``[0, ack_timeout]``.

An event goes on the schedule at its PUBACK (:meth:`ResendSchedule.sent`, called
by the uplink's callback), not when that PUBACK's mark commits: while commits fail
(a full or locked disk) an unacked panic stored before the failure is still re-sent
on time (a review of 2026-12-04: six such panics went once in 20 s). The commit of
the mark only puts on the schedule what is not on it yet (:meth:`ResendSchedule.open`:
marks recorded without the uplink, and rows of an earlier process).

The center's ack takes an event off at once, in memory (:meth:`ResendSchedule.acked`,
:meth:`ResendSchedule.acked_through`), before its mark commits, so an acked event is
not re-sent while the disk refuses the mark; the committed ack then forgets it for
good (:meth:`ResendSchedule.forget`). Rows gone from the database for any other
reason are forgotten when a read misses them.
"""

from __future__ import annotations

import heapq
import time
from collections import OrderedDict
from collections.abc import Callable, Container, Iterable
from typing import NamedTuple

from gateway.delivery.outbox.resend_rows import ResendRows
from gateway.delivery.outbox.rows import PendingRow

COMPACT_AFTER = 4096
"""Stale heap entries (acked rows) beyond twice the live ones that trigger a rebuild."""

RECENT_ACKS = 8192
"""Rows whose committed ack is remembered, so that the PUBACK of a copy still in flight
when the ack committed does not put them back (more than any window holds)."""


class Sent(NamedTuple):
    """What identifies an open event to the center's acks: its ``id``, and its
    ``stream`` and ``seq`` when known (a stream ack names them)."""

    id: str
    stream: str | None = None
    seq: int | None = None


class ResendSchedule:
    """The open events sent to the broker and when each is due again.

    Its size is the count of events the broker confirmed and the center has not
    acked (the heartbeat's ``unacked_alarms``, with the held ones).

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
        self._events: dict[int, Sent] = {}  # n -> what an ack names it by
        self._by_id: dict[str, int] = {}  # event id -> n
        # Rows acked in memory whose ack has not committed: the commit of an earlier
        # PUBACK mark must not put them back (:meth:`open`).
        self._closed: set[int] = set()
        # The last RECENT_ACKS rows whose ack committed, for the same reason (oldest first).
        self._acked: OrderedDict[int, None] = OrderedDict()
        self.rows = ResendRows()

    def sent(
        self,
        n: int,
        priority: int,
        *,
        event: Sent | None = None,
        at: float | None = None,
        row: PendingRow | None = None,
    ) -> None:
        """Row ``n`` (an open event of ``priority``) got its PUBACK now (or at ``at``,
        on this clock): due again ``ack_timeout`` later. ``event`` lets the center's
        ack take it off before the ack commits; an event acked so is not put back.
        ``row``, the row published, is kept for the re-send if an alarm (:attr:`rows`)."""
        if n in self._closed or n in self._acked:
            return
        if row is not None:
            self.rows.keep(row)
        self._overdue.pop(n, None)
        due = (self._clock() if at is None else at) + self.ack_timeout
        self._waiting[n] = (due, priority)
        heapq.heappush(self._heap, (due, n))
        if event is not None and n not in self._events:
            self._events[n] = event
            self._by_id[event.id] = n

    def open(self, n: int, priority: int) -> None:
        """Row ``n``'s PUBACK mark committed: on the schedule from now, unless its PUBACK
        put it there already or the center acked it meanwhile."""
        if n not in self:
            self.sent(n, priority)

    def restore(
        self, n: int, priority: int, sent_at: float, wall_now: float, event: Sent | None = None
    ) -> None:
        """Row ``n`` was sent by an earlier process at wall time ``sent_at`` (at start);
        a row on the schedule already is left as it is."""
        if n in self:
            return
        left = min(max(sent_at + self.ack_timeout - wall_now, 0.0), self.ack_timeout)
        self.sent(n, priority, event=event, at=self._clock() + left - self.ack_timeout)

    def acked(self, ids: Iterable[str]) -> list[int]:
        """The center acked these event ids: off the schedule now, the ack's commit still
        to come. Returns the row keys taken off."""
        ns = [n for event_id in ids if (n := self._by_id.get(event_id)) is not None]
        self.close(ns)
        return ns

    def acked_through(self, stream: str, seq: int) -> list[tuple[int, str]]:
        """The center acked every event of ``stream`` up to ``seq`` the broker confirmed:
        those on the schedule (all confirmed) known to be of it are off it now (O(open
        events)). Returns ``(n, id)`` of each taken off."""
        off = [
            (n, event.id)
            for n, event in self._events.items()
            if event.stream == stream and event.seq is not None and event.seq <= seq
        ]
        self.close([n for n, _ in off])
        return off

    def name_stream(self, stream: str) -> None:
        """Events known by ``seq`` without a stream (read from a file from before
        streams) are of ``stream``: its migration gave them that one."""
        for n, event in self._events.items():
            if event.stream is None and event.seq is not None:
                self._events[n] = event._replace(stream=stream)

    def close(self, ns: list[int]) -> None:
        """These rows are acked in memory, their ack not committed yet: off the schedule,
        and not put back by the commit of an earlier mark (:meth:`open`, :meth:`sent`)
        until that ack's commit (:meth:`acks_committed`, with the rows its op closed,
        whatever the file's answer: a row the file had acked already is acked)."""
        self.forget(ns)
        self._closed.update(ns)

    def acks_committed(self, ns: Iterable[int]) -> None:
        """The center's acks of these rows are committed: never due again, and the PUBACK
        of a copy that was in flight (a re-send) does not put them back on (it would
        count as unacked until a read missed it)."""
        keys = list(ns)
        self.forget(keys)
        self._acked.update(dict.fromkeys(keys))
        while len(self._acked) > RECENT_ACKS:
            self._acked.popitem(last=False)

    def forget(self, ns: Iterable[int]) -> None:
        """These rows are acked (or gone): never due again."""
        for n in ns:
            self._waiting.pop(n, None)
            self._overdue.pop(n, None)
            self._closed.discard(n)
            self.rows.drop(n)
            event = self._events.pop(n, None)
            if event is not None:
                self._by_id.pop(event.id, None)
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

    @property
    def closing(self) -> int:
        """Rows acked in memory whose ack has not committed yet."""
        return len(self._closed)

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
