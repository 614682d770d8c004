"""The rows of open alarms, kept in memory for their re-sends (review of 2026-12-05).

An open event due again is normally read back from the file by its row key. While
the file cannot be read at all — another process inside an ``EXCLUSIVE``
transaction, a card that answers reads with I/O errors — that read fails, and a
reviewer found 122 of 147 unacked alarms never re-sent during a 30 s lock. So the
rows of alarms (priority 1-2) are kept from their PUBACK (or from the start, for those
an earlier process sent) until the center's ack,
bounded (``MAX_ROWS``, ``MAX_BYTES``: an alarm is well under 1 KiB, and a site has
a handful open at a time), the newest first; the rows beyond the bound, and every
other priority, are read from the file as before. Nothing about the message changes: the kept row is
the one the uplink published.
"""

from __future__ import annotations

import heapq

from gateway.delivery.outbox.rows import ALARM_PRIORITY, PendingRow

MAX_ROWS = 1024
MAX_BYTES = 1 << 20


class ResendRows:
    """Kept rows of open alarms by row key ``n``.

    Args:
        max_rows, max_bytes: the most rows and payload bytes kept.
    """

    def __init__(self, max_rows: int = MAX_ROWS, max_bytes: int = MAX_BYTES) -> None:
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self._rows: dict[int, PendingRow] = {}
        self._bytes = 0
        self._keys: list[int] = []  # a heap of the kept row keys; stale when not in _rows

    def __len__(self) -> int:
        return len(self._rows)

    def keep(self, row: PendingRow) -> None:
        """``row`` was PUBACKed (or read in at start): keep it, the latest copy, if an
        alarm. When full, the oldest kept (lowest ``n``) gives way to a newer one: a
        live panic must not lose its place to a thousand alarms of last week (a review
        of 2026-12-05: with 1,100 open at start, a new panic went unkept)."""
        if row.priority > ALARM_PRIORITY or len(row.payload) > self.max_bytes:
            return
        old = self._rows.pop(row.n, None)
        if old is not None:
            self._bytes -= len(old.payload)
        evicted: list[PendingRow] = []
        while self._rows and (
            len(self._rows) >= self.max_rows or self._bytes + len(row.payload) > self.max_bytes
        ):
            oldest = self._oldest()
            if oldest > row.n:  # every kept row is newer: nothing gives way after all
                for back in evicted:
                    self.keep(back)
                return
            evicted.append(self._rows[oldest])
            self.drop(oldest)
        if old is None:
            heapq.heappush(self._keys, row.n)
        self._rows[row.n] = row
        self._bytes += len(row.payload)

    def _oldest(self) -> int:
        """The lowest kept row key (O(log kept) amortised: stale heap entries go as met)."""
        while self._keys[0] not in self._rows:
            heapq.heappop(self._keys)
        return self._keys[0]

    def get(self, n: int) -> PendingRow | None:
        """The kept row ``n``, or None (read it from the file)."""
        return self._rows.get(n)

    def drop(self, n: int) -> None:
        """Row ``n`` is acked or gone."""
        row = self._rows.pop(n, None)
        if row is not None:
            self._bytes -= len(row.payload)
            if len(self._keys) > 2 * len(self._rows) + 64:  # mostly stale: rebuild
                self._keys = list(self._rows)
                heapq.heapify(self._keys)
