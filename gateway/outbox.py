"""Store-and-forward outbox: the source of truth for delivery (DESIGN.md "Delivery").

SQLite through aiosqlite, WAL journal, ``synchronous=FULL``. One writer task
owns every write and commits whatever is queued in one transaction (group
commit), so an ``append`` returns only after its row is on disk. ``seq`` is
gap-free per ``stream``: it is assigned inside the transaction that stores the
row, from a counter kept in the same database. A row moves from pending to sent
only when the uplink has seen its PUBACK (:meth:`Outbox.mark_sent`).

Schema (table ``events``): ``seq`` INTEGER PRIMARY KEY, ``id`` TEXT UNIQUE
(ULID), ``type``, ``priority``, ``topic`` (suffix ``events/alarm/panic``),
``payload`` BLOB (the UTF-8 JSON as sent), ``created_at``/``sent_at``/``acked_at``
REAL (UNIX seconds), ``attempts``.

A second daemon on the same file is refused through an exclusive ``flock`` on
``<path>.lock``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import aiosqlite
import structlog
from ulid import ULID

from gateway.errors import OutboxError
from gateway.schema import Event

log = structlog.get_logger(__name__)

# What SQLite raises for I/O, corruption and lock failures.
_DB_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error, OSError)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    priority INTEGER NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    created_at REAL NOT NULL,
    sent_at REAL,
    acked_at REAL,
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS events_pending ON events (priority, seq) WHERE sent_at IS NULL;
"""


@dataclass(frozen=True, slots=True)
class PendingRow:
    """A stored event not yet confirmed by the broker.

    Attributes:
        seq: outbox sequence number.
        id: event id (ULID).
        priority: 1..5.
        topic: topic suffix under the gateway prefix (``events/alarm/panic``).
        payload: the exact bytes to publish.
    """

    seq: int
    id: str
    priority: int
    topic: str
    payload: bytes


@dataclass(slots=True)
class _Op:
    kind: str
    arg: Any
    future: asyncio.Future[Any]


class Outbox:
    """The durable event store. Use as ``async with Outbox(path) as outbox``.

    Args:
        path: SQLite file; its directory is created when missing.
        commit_linger: seconds the writer waits for more work before a commit
            (group commit); 0 commits as soon as the queue is drained.

    Raises:
        OutboxError: from ``__aenter__`` when the file cannot be opened or is
            locked by another daemon.
    """

    def __init__(self, path: str | Path, *, commit_linger: float = 0.002) -> None:
        self.path = Path(path)
        self._linger = commit_linger
        self._db: aiosqlite.Connection | None = None
        self._lock_fd: int | None = None
        self._queue: asyncio.Queue[_Op] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self._last_seq = 0
        self.stream = ""
        self.commits = 0

    async def __aenter__(self) -> Self:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_fd = _lock(self.path)
        try:
            self._db = await aiosqlite.connect(self.path, isolation_level=None)
            await self._db.execute("PRAGMA journal_mode=WAL")
            await self._db.execute("PRAGMA synchronous=FULL")
            await self._db.executescript(_SCHEMA)
            self.stream = await self._meta("stream") or await self._new_stream()
            self._last_seq = int(await self._meta("last_seq") or 0)
        except _DB_ERRORS as exc:
            await self._close_db()
            _unlock(self._lock_fd)
            raise OutboxError(f"cannot open outbox {self.path}: {exc}") from exc
        self._writer = asyncio.create_task(self._write_loop(), name="outbox-writer")
        if await self.pending_count():
            self._changed.set()
        log.info("outbox.open", path=str(self.path), stream=self.stream, last_seq=self._last_seq)
        return self

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
        _unlock(self._lock_fd)
        self._lock_fd = None

    # -- writes (all through the single writer) -------------------------------------------

    async def append(self, event: Event) -> Event:
        """Store ``event`` durably and return it with its ``seq`` and ``stream``.

        Returns only after the transaction holding it has committed.

        Raises:
            OutboxError: the commit failed (the event is not stored).
        """
        stored: Event = await self._submit("append", event)
        return stored

    async def mark_sent(self, seqs: Iterable[int]) -> None:
        """Record that the broker confirmed (PUBACK) these rows."""
        await self._submit("sent", list(seqs))

    async def mark_acked(self, ids: Iterable[str]) -> int:
        """Record the center's acknowledgement of these event ids; returns rows matched."""
        matched: int = await self._submit("acked", list(ids))
        return matched

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
            await self._commit(ops)

    async def _commit(self, ops: list[_Op]) -> None:
        db = self._require_db()
        results: list[Any] = []
        seq = self._last_seq
        now = time.time()
        try:
            await db.execute("BEGIN IMMEDIATE")
            for op in ops:
                if op.kind == "append":
                    seq += 1
                    event = op.arg.stored(seq, self.stream)
                    await db.execute(
                        "INSERT INTO events (seq, id, type, priority, topic, payload, created_at)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (
                            seq,
                            event.id,
                            event.type,
                            event.priority,
                            event.topic_suffix,
                            event.to_json(),
                            now,
                        ),
                    )
                    results.append(event)
                elif op.kind == "sent":
                    await db.executemany(
                        "UPDATE events SET sent_at = ?, attempts = attempts + 1"
                        " WHERE seq = ? AND sent_at IS NULL",
                        [(now, s) for s in op.arg],
                    )
                    results.append(None)
                elif op.kind == "acked":
                    before = db.total_changes
                    await db.executemany(
                        "UPDATE events SET acked_at = ? WHERE id = ? AND acked_at IS NULL",
                        [(now, i) for i in op.arg],
                    )
                    results.append(db.total_changes - before)
            if seq != self._last_seq:
                await db.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('last_seq', ?)", (str(seq),)
                )
            await db.execute("COMMIT")
        except _DB_ERRORS as exc:
            with contextlib.suppress(*_DB_ERRORS):
                await db.execute("ROLLBACK")
            log.error("outbox.commit_failed", error=str(exc), ops=len(ops))
            for op in ops:
                if not op.future.done():
                    op.future.set_exception(OutboxError(f"commit failed: {exc}"))
            return
        self._last_seq = seq
        self.commits += 1
        for op, result in zip(ops, results, strict=True):
            if not op.future.done():
                op.future.set_result(result)
        if any(op.kind == "append" for op in ops):
            self._changed.set()

    # -- reads ----------------------------------------------------------------------------

    async def pending(self, limit: int, exclude: Iterable[int] = ()) -> list[PendingRow]:
        """Up to ``limit`` unconfirmed rows in send order: priority, then ``seq``.

        Args:
            limit: maximum rows.
            exclude: seqs already in flight on the current connection.
        """
        db = self._require_db()
        skip = list(exclude)
        marks = ",".join("?" * len(skip))
        where = f"sent_at IS NULL AND seq NOT IN ({marks})" if skip else "sent_at IS NULL"
        async with db.execute(
            f"SELECT seq, id, priority, topic, payload FROM events WHERE {where}"
            " ORDER BY priority, seq LIMIT ?",
            (*skip, limit),
        ) as cur:
            rows = await cur.fetchall()
        return [PendingRow(r[0], r[1], r[2], r[3], bytes(r[4])) for r in rows]

    async def pending_count(self) -> int:
        """Rows not yet confirmed by the broker."""
        db = self._require_db()
        async with db.execute("SELECT count(*) FROM events WHERE sent_at IS NULL") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def oldest_pending_age(self) -> float | None:
        """Seconds since the oldest unconfirmed row was stored, or None when none is."""
        db = self._require_db()
        async with db.execute("SELECT min(created_at) FROM events WHERE sent_at IS NULL") as cur:
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


def _lock(path: Path) -> int:
    fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o640)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        os.close(fd)
        raise OutboxError(f"outbox {path} is in use by another campus-gateway process") from exc
    return fd


def _unlock(fd: int | None) -> None:
    if fd is not None:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
