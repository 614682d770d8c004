"""Counts for the heartbeat and metrics, read on a connection of their own.

The writer's connection (``store.py``) carries every commit; a heartbeat read on it
would queue panics behind it (issue 14: with 1,000,000 rows the old reads took
0.4 s every 10 s, and a panic waited 543 ms for its commit). These reads use a
second, read-only connection (WAL: readers never block the writer, nor the writer
them) with its own thread, and each is indexed (``sql.PENDING_COUNT``,
``sql.UNACKED_COUNT``, ``sql.OLDEST_PENDING``). They see committed rows only.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from pathlib import Path

import aiosqlite

from gateway.delivery.outbox import sql
from gateway.errors import OutboxError

# Pages of SQLite's cache per connection, in KiB (negative = KiB); SQLite's own default.
CACHE_KIB = 2048


class OutboxMetrics:
    """Read-only counts of one outbox file; opened on first use, closed by :meth:`close`.

    Args:
        path: the outbox's SQLite file (the writer has created it).

    Raises:
        OutboxError: from every read, when the file cannot be opened or read.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: aiosqlite.Connection | None = None

    async def pending_count(self) -> int:
        """Rows not yet confirmed by the broker (a count over the pending index)."""
        return int(await self._one(sql.PENDING_COUNT) or 0)

    async def unacked_count(self) -> int:
        """Alarms the broker confirmed but the center has not acked yet."""
        return int(await self._one(sql.UNACKED_COUNT) or 0)

    async def oldest_pending_age(self) -> float | None:
        """Seconds since the oldest unconfirmed row was stored, or None when none is."""
        created = await self._one(sql.OLDEST_PENDING)
        return None if created is None else time.time() - created

    async def close(self) -> None:
        """Close the connection (a later read opens it again)."""
        if self._db is not None:
            db, self._db = self._db, None
            with contextlib.suppress(sqlite3.Error):
                await db.close()

    async def _one(self, query: str) -> float | None:
        try:
            db = await self._connection()
            async with db.execute(query) as cur:
                row = await cur.fetchone()
        except sqlite3.Error as exc:
            await self.close()
            raise OutboxError(f"cannot read outbox {self.path}: {exc}") from exc
        return None if row is None or row[0] is None else float(row[0])

    async def _connection(self) -> aiosqlite.Connection:
        if self._db is None:
            db = await aiosqlite.connect(f"file:{self.path}?mode=ro", uri=True)
            try:
                await db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
            except BaseException:
                await db.close()
                raise
            self._db = db
        return self._db
