"""The rows of open alarms, kept in memory for their re-sends (review of 2026-12-05).

An open event due again is normally read back from the file by its row key. While
the file cannot be read at all — another process inside an ``EXCLUSIVE``
transaction, a card that answers reads with I/O errors — that read fails, and a
reviewer found 122 of 147 unacked alarms never re-sent during a 30 s lock. So the
rows of alarms (priority 1-2) are kept from their PUBACK (or from the start, for those
an earlier process sent) until the center's ack,
bounded (``MAX_ROWS``, ``MAX_BYTES``: an alarm is well under 1 KiB, and a site has
a handful open at a time); the rows beyond the bound, and every other priority, are
read from the file as before. Nothing about the message changes: the kept row is
the one the uplink published.
"""

from __future__ import annotations

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

    def __len__(self) -> int:
        return len(self._rows)

    def keep(self, row: PendingRow) -> None:
        """``row`` was PUBACKed: keep it (the latest copy) if an alarm and there is room."""
        if row.priority > ALARM_PRIORITY:
            return
        old = self._rows.get(row.n)
        if old is None:
            if len(self._rows) >= self.max_rows or self._bytes + len(row.payload) > self.max_bytes:
                return
            self._bytes += len(row.payload)
        self._rows[row.n] = row

    def get(self, n: int) -> PendingRow | None:
        """The kept row ``n``, or None (read it from the file)."""
        return self._rows.get(n)

    def drop(self, n: int) -> None:
        """Row ``n`` is acked or gone."""
        row = self._rows.pop(n, None)
        if row is not None:
            self._bytes -= len(row.payload)
