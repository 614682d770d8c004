"""The rows due for their first send, in memory (issue 14: the uplink does not poll SQLite
per message).

Before this queue the uplink read what was due from SQLite at every refill of its
window, a quarter of the window at a time, on the writer's connection thread, where
each read waited behind an fsync'd commit: about 1,600 rows/s reached the broker
while the writer stored 5,000/s. Now the writer hands every committed row to this
queue (:meth:`DueQueue.committed`), the uplink takes rows from it without a query
(:meth:`DueQueue.take`), and SQLite is read only to *page in* a backlog, a page of
up to ``page_rows`` rows or ``page_bytes`` bytes at a time (the next one once the
queue is half empty).

**The frontier.** Rows are ordered by ``(priority, n)``, the order of the
``messages_pending`` index. The queue holds every committed first send whose key is
below :attr:`DueQueue.frontier`; rows at or beyond it may be in the file only. So a
row taken from memory is never sent before a stored row that should go first, and
when what lies below the frontier runs out, the next page is read from the
frontier on. ``None`` means the queue holds every first send the file has. The
queue is bounded: a committed row that does not fit lowers the frontier to its own
key instead, and the rows beyond it leave (they are read back with their page), so
a burst the uplink cannot keep up with costs memory for ``max_rows`` rows (and one
page) and no more.

**Taken rows.** A row taken is out (in flight, or PUBACKed with its mark not yet
committed) until :meth:`DueQueue.sent` (its mark committed) or
:meth:`DueQueue.release` (refused, or its send failed: due again). A page read
meanwhile skips rows that are out, so nothing is sent twice at once.

**Rebuilt** (:meth:`DueQueue.rebuild`) from the file at start, after each
reconnect of the uplink (rows in flight on the lost connection are due again), and
whenever the file's pending rows change other than by commits of new rows and
marks: shedding, a center's replay.

Everything here runs on the event loop; the page read itself is
:func:`read_page`, run on the writer's connection thread.
"""

from __future__ import annotations

import heapq
import sqlite3
from collections.abc import Container, Iterable
from dataclasses import dataclass

from gateway.delivery.outbox import sql
from gateway.delivery.outbox.rows import ALARM_PRIORITY, PendingRow, topic_waits

Key = tuple[int, int]
"""``(priority, n)``: send order of first sends."""

# A page and the memory bound. A page of 256 typical events (600 bytes) reads in about
# 1.5 ms (1,024 took 7 ms, which a panic's commit could wait behind); the queue holds
# up to 4,096 rows or 4 MiB.
PAGE_ROWS = 256
PAGE_BYTES = 1 << 20
MAX_ROWS = 4096
MAX_BYTES = 4 << 20


@dataclass(frozen=True, slots=True)
class Page:
    """Rows read from the file, in send order, from ``start`` on.

    Attributes:
        start: the frontier the read began at.
        rows: the rows read (at most a page).
        complete: the file has no first send beyond the last of ``rows``.
    """

    start: Key
    rows: list[PendingRow]
    complete: bool


def read_page(
    conn: sqlite3.Connection, start: Key, rows: int = PAGE_ROWS, size: int = PAGE_BYTES
) -> Page:
    """Up to ``rows`` first sends (``size`` bytes, at least one row) from key ``start`` on,
    in send order (on the connection's thread: see :mod:`gateway.runtime.onthread`).

    Each priority is one range of the ``messages_pending`` index: rows are fetched one
    at a time and the read stops at the bound, so a page of pictures reads no more
    than ``size`` bytes of them.
    """
    out: list[PendingRow] = []
    total = 0
    priority, n = start
    for p in range(priority, 6):
        cursor = conn.execute(sql.PAGE, (p, n if p == priority else 0))
        for r in cursor:
            row = PendingRow.of_columns(r)
            out.append(row)
            total += len(row.payload)
            if len(out) >= rows or total >= size:
                cursor.close()
                return Page(start, out, complete=False)
    return Page(start, out, complete=True)


class DueQueue:
    """First sends due, in send order, fed by commits and paged from the file.

    Args:
        max_rows, max_bytes: what the queue holds at most (a page may pass them once).
        page_rows, page_bytes: the most one read of the file brings in (at least a row).

    Attributes:
        frontier: rows with a key at or beyond it may be in the file only; None when
            the queue holds every first send the file has.
        pages: pages read from the file so far.
        urgent: a priority 1-2 row came in since the last :meth:`take` (the uplink
            then refills its window at the next free slot, not a quarter later).
    """

    def __init__(
        self,
        max_rows: int = MAX_ROWS,
        max_bytes: int = MAX_BYTES,
        page_rows: int = PAGE_ROWS,
        page_bytes: int = PAGE_BYTES,
    ) -> None:
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self.page_rows = page_rows
        self.page_bytes = page_bytes
        self.frontier: Key | None = (0, 0)
        self.pages = 0
        self.urgent = False
        self._rows: dict[int, PendingRow] = {}
        self._heap: list[Key] = []  # entries whose row is not in _rows are stale
        self._bytes = 0
        self._out: set[int] = set()

    def __len__(self) -> int:
        """Rows held (taken ones not counted)."""
        return len(self._rows)

    @property
    def out(self) -> int:
        """Rows taken and not yet sent or released."""
        return len(self._out)

    def rebuild(self) -> None:
        """Forget every row: the next :meth:`take` pages the file from the start."""
        self._rows.clear()
        self._heap.clear()
        self._out.clear()
        self._bytes = 0
        self.frontier = (0, 0)

    def committed(self, rows: Iterable[PendingRow]) -> None:
        """These rows were just committed, never sent: queue them (or move the frontier)."""
        for row in rows:
            if row.n in self._out:
                continue  # sent while held (not committed yet): its mark settles it
            key = (row.priority, row.n)
            self.urgent = self.urgent or row.priority <= ALARM_PRIORITY
            if self.frontier is not None and key >= self.frontier:
                continue  # read with its page
            if len(self._rows) >= self.max_rows or self._bytes >= self.max_bytes:
                self._lower(key)
                continue
            self._add(row)

    def page(self, page: Page, exclude: Container[int]) -> None:
        """Add a page read from :attr:`frontier` on; commits meanwhile may have lowered
        the frontier, which then stays where they put it. Rows in ``exclude`` (in
        flight, or PUBACKed with the mark not yet committed) are out, not queued."""
        self.pages += 1
        end: Key | None = None
        if not page.complete:
            last = page.rows[-1]
            end = (last.priority, last.n + 1)
        if self.frontier == page.start:
            self.frontier = end
        elif self.frontier is not None and end is not None:
            self.frontier = min(self.frontier, end)
        for row in page.rows:
            if self.frontier is not None and (row.priority, row.n) >= self.frontier:
                break  # (rows come in key order) beyond a frontier a commit lowered
            if row.n in exclude:
                self._out.add(row.n)
            elif row.n not in self._out:
                self._add(row)

    def take(
        self, limit: int, exclude: Container[int], skip: Iterable[str] = ()
    ) -> list[PendingRow]:
        """Up to ``limit`` rows below the frontier, in send order; they are out from now.

        Args:
            exclude: row keys not to take now (they stay queued).
            skip: topics that wait (as ``skip_topics`` of ``Outbox.pending``).
        """
        skips = list(skip)
        self.urgent = False
        taken: list[PendingRow] = []
        kept: list[Key] = []
        while self._heap and len(taken) < limit:
            key = self._heap[0]
            if self.frontier is not None and key >= self.frontier:
                break
            heapq.heappop(self._heap)
            row = self._rows.get(key[1])
            if row is None:
                continue  # stale
            if row.n in exclude or (skips and topic_waits(row.topic, skips)):
                kept.append(key)
                continue
            del self._rows[row.n]
            self._bytes -= len(row.payload)
            self._out.add(row.n)
            taken.append(row)
        for key in kept:
            heapq.heappush(self._heap, key)
        return taken

    def put_back(self, rows: Iterable[PendingRow]) -> None:
        """Rows taken by :meth:`take` and not sent after all (another row went first)."""
        for row in rows:
            self._out.discard(row.n)
            self._add(row)

    def taken(self, ns: Iterable[int]) -> None:
        """Rows sent from elsewhere (held in memory, not yet committed) are out too."""
        self._out.update(ns)

    def sent(self, ns: Iterable[int]) -> None:
        """The "sent" marks of these rows are committed: no longer due."""
        for n in ns:
            self._out.discard(n)
            row = self._rows.pop(n, None)
            if row is not None:
                self._bytes -= len(row.payload)

    def release(self, row: PendingRow, *, stored: bool) -> None:
        """``row`` was not sent after all (refused, or its send failed): due again.
        A row not ``stored`` yet comes back when its commit does."""
        if row.n not in self._out:
            return  # an open event due again: the resend schedule still has it
        self._out.discard(row.n)
        if not stored:
            return  # a held row is queued at its commit
        if self.frontier is None or (row.priority, row.n) < self.frontier:
            self._add(row)

    def wants_page(self) -> bool:
        """True when little is left below the frontier and the file has more: read the
        next page before the queue runs dry."""
        return self.frontier is not None and len(self._rows) < self.max_rows // 2

    def can_page(self) -> bool:
        """True when the file may have more and the queue has room for a page (rows
        that are out or whose topic waits stay queued, and are what fills it)."""
        return self.frontier is not None and len(self._rows) < self.max_rows

    def _lower(self, key: Key) -> None:
        """Move the frontier down to ``key``: rows at or beyond it leave the queue (they
        are read back with their page), so what the queue holds can always be taken."""
        self.frontier = key
        for n in [n for n, r in self._rows.items() if (r.priority, n) >= key]:
            self._bytes -= len(self._rows.pop(n).payload)

    def _add(self, row: PendingRow) -> None:
        if row.n in self._rows:
            return
        self._rows[row.n] = row
        self._bytes += len(row.payload)
        heapq.heappush(self._heap, (row.priority, row.n))
