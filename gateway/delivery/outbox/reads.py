"""Reads of the outbox for the uplink and the heartbeat: what is due, how much waits.

Every read goes through the same aiosqlite connection as the writer (one thread),
so it sees every committed row and nothing uncommitted.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import aiosqlite

from gateway.delivery.outbox import sql


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
        track_ack: the center must ack it (priority 1-2 events).
    """

    n: int
    seq: int | None
    id: str
    priority: int
    topic: str
    payload: bytes
    attempts: int = 0
    track_ack: bool = False


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event as the outbox holds it, for the local status (newest first).

    Attributes:
        seq, id, type, subject, state, priority: from the event.
        stored_at, sent_at, acked_at: UNIX seconds; sent is the last PUBACK,
            acked the center's ack (alarms only); None when not yet.
        track_ack: the center must ack it (priority 1-2).
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


class OutboxReads:
    """Read methods of :class:`~gateway.delivery.outbox.Outbox` (a mixin: it gives the connection).

    Attributes:
        ack_timeout: seconds after a PUBACK an unacked alarm is due again.
    """

    ack_timeout: float

    def _require_db(self) -> aiosqlite.Connection:
        raise NotImplementedError

    async def pending(self, limit: int, exclude: Iterable[int] = ()) -> list[PendingRow]:
        """Up to ``limit`` rows due now, in send order: priority, then creation.

        Due: never confirmed by the broker, or an alarm the center has not acked
        within ``ack_timeout`` of its last PUBACK.

        Args:
            limit: maximum rows.
            exclude: row keys already in flight on the current connection.
        """
        db = self._require_db()
        skip = list(exclude)
        clause = f"AND n NOT IN ({','.join('?' * len(skip))})" if skip else ""
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
        rows = sorted([*fresh, *overdue], key=lambda r: (r[3], r[0]))[:limit]
        return [
            PendingRow(r[0], r[1], r[2], r[3], r[4], bytes(r[5]), r[6], bool(r[7])) for r in rows
        ]

    async def next_due_in(self) -> float | None:
        """Seconds until the next unacked alarm comes due again, or None when none waits."""
        async with self._require_db().execute(sql.OLDEST_UNACKED) as cur:
            row = await cur.fetchone()
        if row is None or row[0] is None:
            return None
        return max(0.0, float(row[0]) + self.ack_timeout - time.time())

    async def pending_count(self) -> int:
        """Rows not yet confirmed by the broker."""
        db = self._require_db()
        async with db.execute("SELECT count(*) FROM messages WHERE sent_at IS NULL") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def unacked_count(self) -> int:
        """Alarms delivered to the broker but not yet acked by the center."""
        db = self._require_db()
        async with db.execute(
            "SELECT count(*) FROM messages WHERE track_ack = 1 AND acked_at IS NULL"
        ) as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def oldest_pending_age(self) -> float | None:
        """Seconds since the oldest unconfirmed row was stored, or None when none is."""
        db = self._require_db()
        async with db.execute("SELECT min(created_at) FROM messages WHERE sent_at IS NULL") as cur:
            row = await cur.fetchone()
        return None if row is None or row[0] is None else time.time() - float(row[0])

    async def overdue_count(self) -> int:
        """Alarms whose center ack is overdue: PUBACKed ``ack_timeout`` ago or more, unacked."""
        db = self._require_db()
        async with db.execute(
            "SELECT count(*) FROM messages INDEXED BY messages_unacked"
            " WHERE track_ack = 1 AND acked_at IS NULL AND sent_at IS NOT NULL AND sent_at <= ?",
            (time.time() - self.ack_timeout,),
        ) as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def recent(self, limit: int = 10) -> list[StoredEvent]:
        """The last ``limit`` events stored (newest first), with their delivery state."""
        db = self._require_db()
        async with db.execute(
            "SELECT seq, payload, created_at, sent_at, acked_at, track_ack FROM messages"
            " WHERE seq IS NOT NULL ORDER BY n DESC LIMIT ?",
            (limit,),
        ) as cur:
            rows = await cur.fetchall()
        out: list[StoredEvent] = []
        for seq, payload, created, sent, acked, track in rows:
            body = json.loads(bytes(payload))
            data = body.get("data") or {}
            out.append(
                StoredEvent(
                    seq=int(seq),
                    id=str(body.get("id", "")),
                    type=str(body.get("type", "")),
                    subject=str(body.get("subject", "")),
                    state=str(data.get("state", "")),
                    priority=int(body.get("priority", 0)),
                    stored_at=float(created),
                    sent_at=None if sent is None else float(sent),
                    acked_at=None if acked is None else float(acked),
                    track_ack=bool(track),
                )
            )
        return out

    async def stored_ages(self, ids: Iterable[str]) -> list[float]:
        """Seconds since each of ``ids`` was stored, for the alarms among them not yet acked."""
        wanted = list(ids)
        if not wanted:
            return []
        db = self._require_db()
        marks = ",".join("?" * len(wanted))
        async with db.execute(
            f"SELECT created_at FROM messages WHERE id IN ({marks})"
            " AND track_ack = 1 AND acked_at IS NULL",
            wanted,
        ) as cur:
            rows = await cur.fetchall()
        now = time.time()
        return [max(0.0, now - float(r[0])) for r in rows]
