"""Reads of the outbox for the uplink and the heartbeat: what is due, how much waits.

What is due is read on the writer's aiosqlite connection (one thread), so it sees
every committed row and nothing uncommitted. When an open event comes due again is
kept in memory on the monotonic clock (``due.py``), never read from the wall clock.
The heartbeat's counts are read on a read-only connection of their own
(``metrics.py``) so they never queue a commit.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import aiosqlite

from gateway.delivery.outbox import sql
from gateway.delivery.outbox.due import ResendSchedule
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
        ack_timeout: seconds after a PUBACK an unacked event is due again.
        metrics: the read-only connection for counts.
        resends: when each open event is due again (monotonic clock).
    """

    ack_timeout: float
    metrics: OutboxMetrics
    resends: ResendSchedule

    def _require_db(self) -> aiosqlite.Connection:
        raise NotImplementedError

    async def pending(
        self, limit: int, exclude: Iterable[int] = (), skip_topics: Iterable[str] = ()
    ) -> list[PendingRow]:
        """Up to ``limit`` rows due now, in send order: priority, first sends before
        re-sends, then creation.

        Due: never confirmed by the broker, or an event the center has not acked
        within ``ack_timeout`` of its last PUBACK (monotonic: a wall-clock step
        re-sends nothing early). A re-send never goes before a first send of its
        priority: a slow center must not turn old alarms into a storm that holds
        back new ones (issue 14).

        Args:
            limit: maximum rows.
            exclude: row keys already in flight on the current connection.
            skip_topics: topics whose rows wait (the broker refused them); a topic
                ending in ``/`` stands for every topic it begins, ``""`` for all.
        """
        db = self._require_db()
        excluded, topics = list(exclude), list(skip_topics)
        clause, skip = _skip_clause(excluded, topics)
        async with db.execute(sql.PENDING.format(skip=clause), (*skip, limit)) as cur:
            fresh = await cur.fetchall()
        overdue = await self._overdue_rows(limit, excluded, topics)
        # (priority, already PUBACKed at least once, n)
        rows = sorted([*fresh, *overdue], key=lambda r: (r[3], r[6] > 0, r[0]))[:limit]
        return [
            PendingRow(r[0], r[1], r[2], r[3], r[4], bytes(r[5]), r[6], bool(r[7])) for r in rows
        ]

    async def _overdue_rows(self, limit: int, exclude: list[int], topics: list[str]) -> list[Any]:
        """The best ``limit`` open events due again, as rows (chunks in send order)."""
        due = self.resends.overdue(exclude)
        rows: list[Any] = []
        for start in range(0, len(due), 500):  # below SQLite's variable limit
            chunk = due[start : start + 500]
            query = sql.OPEN_ROWS.format(marks=",".join("?" * len(chunk)))
            async with self._require_db().execute(query, chunk) as cur:
                found = list(await cur.fetchall())
            keys = {r[0] for r in found}
            self.resends.forget(n for n in chunk if n not in keys)  # acked or purged
            rows += [r for r in found if not _skipped(str(r[4]), topics)]
            if len(rows) >= limit:
                break
        return rows

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
        """Seconds until the next unacked event comes due again, or None when none waits
        (on the monotonic clock)."""
        return self.resends.next_due_in()

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
        """Events whose center ack is overdue (due again now; monotonic clock)."""
        return self.resends.overdue_count()

    async def recent(self, limit: int = 10) -> list[StoredEvent]:
        """The last ``limit`` events stored, newest first (on :attr:`metrics`)."""
        return await self.metrics.recent(limit)

    async def stored_ages(self, ids: Iterable[str]) -> list[float]:
        """Seconds since each of ``ids`` was stored, for the alarms among them not yet acked
        (on :attr:`metrics`)."""
        return await self.metrics.stored_ages(ids)


def _skipped(topic: str, topics: list[str]) -> bool:
    """Does ``topic`` wait (see ``skip_topics`` of :meth:`OutboxReads.pending`)?"""
    return any(topic == t if t and not t.endswith("/") else topic.startswith(t) for t in topics)


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
