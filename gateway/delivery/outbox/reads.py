"""Reads of the outbox for the uplink and the heartbeat: what is due, how much waits.

What is due is read on the writer's aiosqlite connection (one thread), so it sees
every committed row and nothing uncommitted. The heartbeat's counts are read on a
read-only connection of their own (``metrics.py``) so they never queue a commit.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import aiosqlite

from gateway.delivery.outbox import sql
from gateway.delivery.outbox.metrics import OutboxMetrics, StoredEvent


@dataclass(frozen=True, slots=True)
class PendingRow:
    """A stored message due for publishing.

    Attributes:
        n: row key (send order within a priority).
        seq: event sequence number, None for non-event messages (snapshots).
        id: event id (ULID).
        priority: 1..5.
        topic: topic suffix under the gateway prefix (``events/alarm/panic``).
        payload: the exact bytes to publish.
        attempts: PUBACKs seen before; > 0 means this is a re-publish.
        track_ack: the center must ack it (priority 1-3 events).
    """

    n: int
    seq: int | None
    id: str
    priority: int
    topic: str
    payload: bytes
    attempts: int = 0
    track_ack: bool = False


class OutboxReads:
    """Read methods of :class:`~gateway.delivery.outbox.Outbox` (a mixin: it gives the connection).

    Attributes:
        ack_timeout: seconds after a PUBACK an unacked alarm is due again.
        metrics: the read-only connection for counts.
    """

    ack_timeout: float
    metrics: OutboxMetrics

    def _require_db(self) -> aiosqlite.Connection:
        raise NotImplementedError

    async def pending(
        self, limit: int, exclude: Iterable[int] = (), skip_topics: Iterable[str] = ()
    ) -> list[PendingRow]:
        """Up to ``limit`` rows due now, in send order: priority, first sends before
        re-sends, then creation.

        Due: never confirmed by the broker, or an event the center has not acked
        within ``ack_timeout`` of its last PUBACK. A re-send never goes before a
        first send of its priority: a slow center must not turn old alarms into a
        storm that holds back new ones (issue 14).

        Args:
            limit: maximum rows.
            exclude: row keys already in flight on the current connection.
            skip_topics: topics whose rows wait (the broker refused them); a topic
                ending in ``/`` stands for every topic it begins, ``""`` for all.
        """
        db = self._require_db()
        clause, skip = _skip_clause(list(exclude), list(skip_topics))
        due_before = time.time() - self.ack_timeout
        async with db.execute(sql.PENDING.format(skip=clause), (*skip, limit)) as cur:
            fresh = await cur.fetchall()
        overdue: list[Any] = []
        async with db.execute(sql.OLDEST_UNACKED) as cur:  # O(1) on its index
            oldest = await cur.fetchone()
        if oldest is not None and oldest[0] is not None and oldest[0] <= due_before:
            query = sql.OVERDUE.format(skip=clause)
            async with db.execute(query, (due_before, *skip, limit)) as cur:
                overdue = list(await cur.fetchall())
        # (priority, already PUBACKed at least once, n)
        rows = sorted([*fresh, *overdue], key=lambda r: (r[3], r[6] > 0, r[0]))[:limit]
        return [
            PendingRow(r[0], r[1], r[2], r[3], r[4], bytes(r[5]), r[6], bool(r[7])) for r in rows
        ]

    async def known_ids(self, ids: Iterable[str]) -> set[str]:
        """Those of ``ids`` the outbox holds (stored, delivered or not)."""
        wanted = list(ids)
        found: set[str] = set()
        for start in range(0, len(wanted), 500):  # below SQLite's variable limit
            chunk = wanted[start : start + 500]
            query = f"SELECT id FROM messages WHERE id IN ({','.join('?' * len(chunk))})"
            async with self._require_db().execute(query, chunk) as cur:
                found.update(str(r[0]) for r in await cur.fetchall())
        return found

    async def next_due_in(self) -> float | None:
        """Seconds until the next unacked alarm comes due again, or None when none waits."""
        async with self._require_db().execute(sql.OLDEST_UNACKED) as cur:
            row = await cur.fetchone()
        if row is None or row[0] is None:
            return None
        return max(0.0, float(row[0]) + self.ack_timeout - time.time())

    async def pending_count(self) -> int:
        """Rows not yet confirmed by the broker (read on :attr:`metrics`)."""
        return await self.metrics.pending_count()

    async def unacked_count(self) -> int:
        """Alarms delivered to the broker but not yet acked by the center (on :attr:`metrics`)."""
        return await self.metrics.unacked_count()

    async def oldest_pending_age(self) -> float | None:
        """Seconds since the oldest unconfirmed row was stored, or None (on :attr:`metrics`)."""
        return await self.metrics.oldest_pending_age()

    async def overdue_count(self) -> int:
        """Alarms whose center ack is overdue (on :attr:`metrics`)."""
        return await self.metrics.overdue_count(self.ack_timeout)

    async def recent(self, limit: int = 10) -> list[StoredEvent]:
        """The last ``limit`` events stored, newest first (on :attr:`metrics`)."""
        return await self.metrics.recent(limit)

    async def stored_ages(self, ids: Iterable[str]) -> list[float]:
        """Seconds since each of ``ids`` was stored, for the alarms among them not yet acked
        (on :attr:`metrics`)."""
        return await self.metrics.stored_ages(ids)


def _skip_clause(rows: list[int], topics: list[str]) -> tuple[str, list[Any]]:
    """SQL (``AND …``) and its parameters leaving out row keys and (prefixes of) topics."""
    clause, params = "", list[Any]()
    params += rows
    if rows:
        clause += f" AND n NOT IN ({','.join('?' * len(rows))})"
    exact = [t for t in topics if not t.endswith("/") and t]
    if exact:
        clause += f" AND topic NOT IN ({','.join('?' * len(exact))})"
        params += exact
    for prefix in (t for t in topics if t.endswith("/") or not t):
        clause += " AND substr(topic, 1, ?) != ?"
        params += [len(prefix), prefix]
    return clause, params
