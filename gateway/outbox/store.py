"""The outbox store: one writer with group commit, reads in send order, faults survived.

SQLite through aiosqlite, WAL journal, ``synchronous=FULL``. Every write goes
through one writer task that commits whatever is queued in one transaction, so
``append`` returns only once its row is on disk. ``seq`` is gap-free per
``stream``: assigned in the transaction that stores the event, from a counter
kept in the same database. A row is sent only when the uplink saw its PUBACK;
priority 1-2 events stay open until the center acks them and come due again
``ack_timeout`` after each PUBACK.

Faults (GB 50394 §5.2.2: no alarm may be lost):

* Full: when rows or bytes pass their caps, priority 5 then 4 rows are shed,
  oldest first; priority 1-3 never are, and ``alarm_reserve_rows`` of the cap is
  kept for them. Shed counts are reported through :meth:`Outbox.take_shed`.
* Disk full (``SQLITE_FULL``/ENOSPC): the ballast is given up and the outbox
  enters disk pressure: new priority 4-5 messages are shed at the door (counted,
  never stored, so they take no ``seq``), while alarms and faults are committed
  into the space the ballast left. While a commit still fails, the work waits in
  memory and is retried every second — no alarm queued is dropped. Pressure ends
  when the ballast can be written again (a technician freed space).
* Corrupt file at start: quarantined (renamed, kept), a new database and a new
  ``stream`` begin; :attr:`Outbox.quarantined` says where the old one went.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import aiosqlite
import structlog
from ulid import ULID

from gateway.errors import OutboxError
from gateway.outbox import sql
from gateway.outbox.files import Ballast, lock, quarantine, unlock
from gateway.schema import Event

log = structlog.get_logger(__name__)

# What SQLite raises for I/O, corruption and lock failures.
_DB_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error, OSError)
_SQLITE_FULL = 13


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


@dataclass(slots=True)
class ShedReport:
    """Rows shed for capacity since the last report.

    Attributes:
        by_priority: priority -> rows shed.
        undelivered: how many of them had never been delivered.
        seqs: ``seq`` numbers of undelivered events shed (the center sees them as gaps).
    """

    by_priority: dict[int, int] = field(default_factory=dict)
    undelivered: int = 0
    seqs: list[int] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.by_priority.values())


@dataclass(slots=True)
class OutboxStats:
    """Counters for the heartbeat and for tests."""

    commits: int = 0
    rows: int = 0
    bytes: int = 0
    low_rows: int = 0
    low_bytes: int = 0
    shed_total: int = 0
    purged_total: int = 0
    disk_full: int = 0
    commit_failures: int = 0


@dataclass(slots=True)
class _Op:
    kind: str
    arg: Any
    future: asyncio.Future[Any]


class Outbox:
    """The durable message store. ``async with Outbox(path) as outbox``.

    Args:
        path: SQLite file; its directory is created when missing.
        commit_linger: seconds the writer waits for more work before a commit.
        ack_timeout: seconds after a PUBACK an unacked alarm is due again.
        max_rows, max_bytes: capacity caps (see module docstring).
        alarm_reserve_rows: part of ``max_rows`` only priority 1-3 may use.
        ballast_bytes: disk space reserved for a disk-full emergency; 0 = none.

    Raises:
        OutboxError: from ``__aenter__`` when the file cannot be opened or is
            locked by another daemon.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        commit_linger: float = 0.002,
        ack_timeout: float = 30.0,
        max_rows: int = 1_000_000,
        max_bytes: int = 1 << 30,
        alarm_reserve_rows: int = 10_000,
        ballast_bytes: int = 0,
    ) -> None:
        self.path = Path(path)
        self.ack_timeout = ack_timeout
        self._linger = commit_linger
        self._max_rows = max_rows
        self._max_bytes = max_bytes
        self._reserve_rows = min(alarm_reserve_rows, max_rows // 2)
        self._reserve_bytes = max_bytes * self._reserve_rows // max_rows
        self._ballast = Ballast(self.path.with_name(self.path.name + ".ballast"), ballast_bytes)
        self._db: aiosqlite.Connection | None = None
        self._lock_fd: int | None = None
        self._queue: asyncio.Queue[_Op] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self._last_seq = 0
        self._last_n = 0
        self._shed = ShedReport()
        self.stream = ""
        self.quarantined: Path | None = None
        self.disk_pressure = False
        self.stats = OutboxStats()

    @property
    def commits(self) -> int:
        return self.stats.commits

    # -- lifetime -------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_fd = lock(self.path)
        try:
            try:
                await self._open()
            except sqlite3.DatabaseError as exc:
                await self._close_db()
                self.quarantined = quarantine(self.path)
                log.error("outbox.quarantined", error=str(exc), moved_to=str(self.quarantined))
                await self._open()
        except _DB_ERRORS as exc:
            await self._close_db()
            unlock(self._lock_fd)
            raise OutboxError(f"cannot open outbox {self.path}: {exc}") from exc
        self._ballast.ensure()
        self._writer = asyncio.create_task(self._write_loop(), name="outbox-writer")
        self._changed.set()
        log.info(
            "outbox.open", path=str(self.path), stream=self.stream, last_seq=self._last_seq,
            rows=self.stats.rows, bytes=self.stats.bytes,
        )  # fmt: skip
        return self

    async def _open(self) -> None:
        self._db = db = await aiosqlite.connect(self.path, isolation_level=None)
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=FULL")
        async with db.execute("PRAGMA quick_check") as cur:
            row = await cur.fetchone()
        if row is None or row[0] != "ok":
            raise sqlite3.DatabaseError(f"quick_check: {row[0] if row else 'no answer'}")
        await db.executescript(sql.SCHEMA)
        self.stream = await self._meta("stream") or await self._new_stream()
        self._last_seq = int(await self._meta("last_seq") or 0)
        async with db.execute("SELECT coalesce(max(n), 0) FROM messages") as cur:
            row = await cur.fetchone()
        self._last_n = int(row[0]) if row else 0
        await self._recount()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
        while not self._queue.empty():
            op = self._queue.get_nowait()
            if not op.future.done():
                op.future.set_exception(OutboxError("outbox closed before commit"))
        await self._close_db()
        unlock(self._lock_fd)
        self._lock_fd = None

    # -- writes (all through the single writer) -------------------------------------------

    async def append(self, event: Event) -> Event:
        """Store ``event`` durably; returns it with its ``seq`` and ``stream``.

        Returns only after the transaction holding it has committed; while the
        disk refuses the commit it waits (it is never dropped).

        Raises:
            OutboxError: the outbox is closed.
        """
        stored: Event = await self._submit("append", event)
        return stored

    async def append_blob(self, topic: str, payload: bytes, priority: int) -> int:
        """Store a non-event message (e.g. ``snapshots/<event id>`` JPEG bytes) durably.

        It is delivered like events (priority, then creation order) but takes no
        ``seq`` and is not acked by the center. Returns its row key.

        Raises:
            OutboxError: the outbox is closed.
        """
        n: int = await self._submit("blob", (topic, payload, priority))
        return n

    async def mark_sent(self, ns: Iterable[int]) -> None:
        """Record the broker's PUBACK for these rows (by row key ``n``)."""
        await self._submit("sent", list(ns))

    async def mark_acked(self, ids: Iterable[str]) -> int:
        """Record the center's acknowledgement of these event ids; returns rows matched."""
        matched: int = await self._submit("acked", list(ids))
        return matched

    async def purge(self, retention: float) -> int:
        """Delete delivered rows (acked, for alarms) older than ``retention`` seconds."""
        purged: int = await self._submit("purge", retention)
        return purged

    def relieve_pressure(self) -> bool:
        """End disk pressure once the disk has room again; True when it has ended.

        With a ballast configured, "room" means the ballast could be written again;
        without one, 16 MiB free.
        """
        if not self.disk_pressure:
            return True
        if self._ballast.size > 0:
            relieved = self._ballast.ensure()
        else:
            relieved = shutil.disk_usage(self.path.parent).free >= 16 << 20
        if relieved:
            self.disk_pressure = False
            log.warning("outbox.disk_pressure_over")
        return relieved

    def take_shed(self) -> ShedReport | None:
        """Rows shed for capacity since the last call, or None when none were."""
        if not self._shed.total:
            return None
        report, self._shed = self._shed, ShedReport()
        return report

    async def _submit(self, kind: str, arg: Any) -> Any:
        if self._writer is None or self._writer.done():
            raise OutboxError("outbox is not open")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Op(kind, arg, future))
        return await future

    async def _write_loop(self) -> None:
        while True:
            ops = [await self._queue.get()]
            if self._linger:
                await asyncio.sleep(self._linger)
            while not self._queue.empty():
                ops.append(self._queue.get_nowait())
            await self._commit_until_done(ops)

    async def _commit_until_done(self, ops: list[_Op]) -> None:
        """Commit ``ops``; on a full disk free room and retry; never drop them."""
        failures = 0
        while True:
            try:
                await self._commit(ops)
                if failures:
                    log.warning("outbox.commit_recovered", after_failures=failures)
                return
            except _DB_ERRORS as exc:
                failures += 1
                self.stats.commit_failures += 1
                full = _is_disk_full(exc)
                if failures == 1 or failures % 60 == 0:
                    log.error("outbox.commit_failed", error=str(exc), disk_full=full, ops=len(ops))
                if full:
                    await self._make_room()
                if failures > 1:
                    await asyncio.sleep(1.0)

    async def _make_room(self) -> None:
        self.stats.disk_full += 1
        if not self.disk_pressure:
            self.disk_pressure = True
            released = self._ballast.release()
            log.error("outbox.disk_full", ballast_released=released, path=str(self.path))

    async def _commit(self, ops: list[_Op]) -> None:
        """One transaction for ``ops``; on failure it is rolled back and counters re-read."""
        db = self._require_db()
        try:
            await self._commit_ops(db, ops)
        except BaseException:
            with contextlib.suppress(*_DB_ERRORS):
                await db.execute("ROLLBACK")
            with contextlib.suppress(*_DB_ERRORS):
                await self._recount()
            raise

    async def _commit_ops(self, db: aiosqlite.Connection, ops: list[_Op]) -> None:
        """All ops in one transaction, each kind in one statement where it can be."""
        results: list[Any] = [None] * len(ops)
        seq, n = self._last_seq, self._last_n
        now = time.time()
        inserts: list[tuple[Any, ...]] = []
        sent: list[tuple[float, int]] = []
        for i, op in enumerate(ops):
            if op.kind in ("append", "blob"):
                if self._refused(op):
                    results[i] = op.arg if op.kind == "append" else 0
                    continue
                n += 1
                if op.kind == "append":
                    seq += 1
                    event = op.arg.stored(seq, self.stream)
                    payload = event.to_json()
                    row: tuple[Any, ...] = (
                        n,
                        seq,
                        event.id,
                        event.type,
                        event.priority,
                        event.topic_suffix,
                    )
                    results[i] = event
                else:
                    topic, payload, priority = op.arg
                    row = (n, None, str(ULID()), "blob", priority, topic)
                    results[i] = n
                inserts.append(
                    (*row, payload, len(payload), op.kind == "append" and row[4] <= 2, now)
                )
            elif op.kind == "sent":
                sent.extend((now, s) for s in op.arg)
        await db.execute("BEGIN IMMEDIATE")
        if inserts:
            await db.executemany(sql.INSERT, inserts)
        if sent:
            await db.executemany(sql.MARK_SENT, sent)
        for i, op in enumerate(ops):
            if op.kind == "acked":
                before = db.total_changes
                await db.executemany(sql.MARK_ACKED, [(now, e) for e in op.arg])
                results[i] = db.total_changes - before
            elif op.kind == "purge":
                results[i] = await self._purge(db, now - op.arg)
        if seq != self._last_seq:
            await db.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('last_seq', ?)", (str(seq),)
            )
        for values in inserts:  # (n, seq, id, type, priority, topic, payload, size, …)
            self.stats.rows += 1
            self.stats.bytes += values[7]
            if values[4] >= 4:
                self.stats.low_rows += 1
                self.stats.low_bytes += values[7]
        await self._shed_rows(db)
        await db.execute("COMMIT")
        self._last_seq, self._last_n = seq, n
        self.stats.commits += 1
        for op, result in zip(ops, results, strict=True):
            if not op.future.done():
                op.future.set_result(result)
        if inserts:
            self._changed.set()

    def _refused(self, op: _Op) -> bool:
        """Under disk pressure a priority 4-5 message is shed at the door (counted)."""
        priority = op.arg.priority if op.kind == "append" else op.arg[2]
        if not self.disk_pressure or priority < 4:
            return False
        self.stats.shed_total += 1
        self._shed.by_priority[priority] = self._shed.by_priority.get(priority, 0) + 1
        self._shed.undelivered += 1
        return True

    async def _shed_rows(self, db: aiosqlite.Connection) -> None:
        """Shed priority 5, then 4, oldest first, until within the caps."""
        low_cap_rows = self._max_rows - self._reserve_rows
        low_cap_bytes = self._max_bytes - self._reserve_bytes
        for priority in (5, 4):
            while True:
                excess = max(
                    self.stats.low_rows - low_cap_rows,
                    self.stats.rows - self._max_rows,
                )
                over_bytes = max(
                    self.stats.low_bytes - low_cap_bytes, self.stats.bytes - self._max_bytes
                )
                if excess <= 0 and over_bytes <= 0:
                    return
                chunk = max(excess, 1) + self._max_rows // 100 if excess > 0 else 64
                async with db.execute(sql.SHED, (priority, chunk)) as cur:
                    shed = await cur.fetchall()
                if not shed:
                    break
                self._count_shed(priority, shed)

    def _count_shed(self, priority: int, shed: Iterable[Any]) -> None:
        for seq, size, undelivered in shed:
            self.stats.rows -= 1
            self.stats.bytes -= size
            self.stats.low_rows -= 1
            self.stats.low_bytes -= size
            self.stats.shed_total += 1
            self._shed.by_priority[priority] = self._shed.by_priority.get(priority, 0) + 1
            if undelivered:
                self._shed.undelivered += 1
                if seq is not None:
                    self._shed.seqs.append(seq)

    async def _purge(self, db: aiosqlite.Connection, before: float) -> int:
        async with db.execute(sql.PURGE, (before,)) as cur:
            purged = list(await cur.fetchall())
        for size, priority in purged:
            self.stats.rows -= 1
            self.stats.bytes -= size
            if priority >= 4:
                self.stats.low_rows -= 1
                self.stats.low_bytes -= size
        self.stats.purged_total += len(purged)
        return len(purged)

    # -- reads ----------------------------------------------------------------------------

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

    async def wait_for_new(self) -> None:
        """Wait until rows may have been appended since the last call."""
        await self._changed.wait()
        self._changed.clear()

    def poke(self) -> None:
        """Wake :meth:`wait_for_new` (after a reconnect, pending rows are re-driven)."""
        self._changed.set()

    # -- internals ------------------------------------------------------------------------

    def _require_db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise OutboxError("outbox is not open")
        return self._db

    async def _recount(self) -> None:
        db = self._require_db()
        async with db.execute(sql.TOTALS) as cur:
            total = await cur.fetchone()
        async with db.execute(sql.LOW_TOTALS) as cur:
            low = await cur.fetchone()
        self.stats.rows, self.stats.bytes = (int(total[0]), int(total[1])) if total else (0, 0)
        self.stats.low_rows, self.stats.low_bytes = (int(low[0]), int(low[1])) if low else (0, 0)

    async def _meta(self, key: str) -> str | None:
        async with self._require_db().execute("SELECT value FROM meta WHERE key = ?", (key,)) as c:
            row = await c.fetchone()
        return None if row is None else str(row[0])

    async def _new_stream(self) -> str:
        stream = str(ULID())
        await self._require_db().execute(
            "INSERT INTO meta (key, value) VALUES ('stream', ?)", (stream,)
        )
        return stream

    async def _close_db(self) -> None:
        if self._db is not None:
            with contextlib.suppress(*_DB_ERRORS):
                await self._db.close()
            self._db = None


def _is_disk_full(exc: BaseException) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and code & 0xFF == _SQLITE_FULL:
        return True
    if isinstance(exc, OSError) and exc.errno == 28:
        return True
    return "disk is full" in str(exc) or "No space left" in str(exc)
