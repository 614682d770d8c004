"""Figures for the heartbeat and the status, read on a connection of their own.

The writer's connection (``store.py``) carries every commit; a heartbeat read on it
would queue panics behind it (issue 14: with 1,000,000 rows the old reads took
0.4 s every 10 s, and a panic waited 543 ms for its commit). These reads use a
second, read-only connection with its own thread, and each is a seek on an index
that stops after a row or a few (``sql.FIRST_OPEN_SEQ``, ``sql.OLDEST_PENDING``,
``sql.RECENT``): well under a millisecond at 1,000,000 rows. The outbox keeps a
rollback journal (``store.py`` says why), so a read holds a shared lock for as long
as it takes and delays a commit by as much; that is why nothing here counts rows
(the depth and the unacked count are kept in memory, ``backlog.py``: a count over an
index of 1,000,000 entries took 45 ms). A read waits ``READ_BUSY_S`` at most for a
commit in progress or another process's exclusive lock. A read that fails then
answers with the last figure it read (:attr:`OutboxMetrics.last_error` says why it
is not fresh), so a heartbeat, the status and the bench page never wait on a
stalled disk nor fail with it.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite

from gateway.delivery.outbox import sql
from gateway.errors import OutboxError

# Pages of SQLite's cache per connection, in KiB (negative = KiB); SQLite's own default.
CACHE_KIB = 2048
# Seconds a read waits for the writer's lock before it fails.
READ_BUSY_S = 0.5


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event as the outbox holds it, for the local status (newest first).

    Attributes:
        seq, id, type, subject, state, priority: from the event.
        stored_at, sent_at, acked_at: UNIX seconds; sent is the last PUBACK,
            acked the center's ack (alarms only); None when not yet.
        track_ack: the center must ack it (priority 1-3).
    """

    seq: int
    id: str
    type: str
    subject: str
    state: str
    priority: int
    stored_at: float
    sent_at: float | None
    acked_at: float | None
    track_ack: bool


class OutboxMetrics:
    """Read-only figures of one outbox file; opened on first use, closed by :meth:`close`.

    Args:
        path: the outbox's SQLite file (the writer has created it).

    Attributes:
        last_error: why the last read failed (its answer was the figure before), None
            once a read succeeds.

    Raises:
        OutboxError: from a read that fails and has no earlier figure to give.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.last_error: str | None = None
        self._db: aiosqlite.Connection | None = None
        self._last: dict[str, list[Any]] = {}  # query -> its last rows

    async def first_open_seq(self, stream: str) -> int | None:
        """The lowest ``seq`` in ``stream`` of an event (priority 1-3) the center has not
        acked, or None."""
        rows = await self._rows(sql.FIRST_OPEN_SEQ, (stream,))
        seq = None if not rows or rows[0][0] is None else rows[0][0]
        return None if seq is None else int(seq)

    async def oldest_pending_age(self) -> float | None:
        """Seconds since the oldest unconfirmed row was stored, or None when none is."""
        created = await self._one(sql.OLDEST_PENDING)
        return None if created is None else time.time() - created

    async def recent(self, limit: int) -> list[StoredEvent]:
        """The last ``limit`` events stored, newest first, with their delivery times."""
        out: list[StoredEvent] = []
        for seq, payload, created, sent, acked, track in await self._rows(sql.RECENT, (limit,)):
            body = json.loads(bytes(payload))
            out.append(
                StoredEvent(
                    seq=int(seq),
                    id=str(body.get("id", "")),
                    type=str(body.get("type", "")),
                    subject=str(body.get("subject", "")),
                    state=str((body.get("data") or {}).get("state", "")),
                    priority=int(body.get("priority", 0)),
                    stored_at=float(created),
                    sent_at=None if sent is None else float(sent),
                    acked_at=None if acked is None else float(acked),
                    track_ack=bool(track),
                )
            )
        return out

    async def close(self) -> None:
        """Close the connection (a later read opens it again)."""
        if self._db is not None:
            db, self._db = self._db, None
            with contextlib.suppress(sqlite3.Error):
                await db.close()

    async def _one(self, query: str) -> float | None:
        rows = await self._rows(query, ())
        return None if not rows or rows[0][0] is None else float(rows[0][0])

    async def _rows(self, query: str, params: Iterable[Any], *, keep: bool = True) -> list[Any]:
        try:
            db = await self._connection()
            async with db.execute(query, tuple(params)) as cur:
                rows = list(await cur.fetchall())
        except (sqlite3.Error, OSError, ValueError) as exc:
            await self.close()
            self.last_error = f"cannot read outbox {self.path}: {exc}"
            if keep and query in self._last:
                return self._last[query]
            raise OutboxError(self.last_error) from exc
        self.last_error = None
        if keep:
            self._last[query] = rows
        return rows

    async def _connection(self) -> aiosqlite.Connection:
        if self._db is None:
            db = await aiosqlite.connect(f"file:{self.path}?mode=ro", uri=True, timeout=READ_BUSY_S)
            try:
                await db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
            except BaseException:
                await db.close()
                raise
            self._db = db
        return self._db
