"""The outbox store: one writer with group commit, reads in send order, faults survived.

SQLite through aiosqlite, WAL journal, ``synchronous=FULL``. Every write goes
through one writer task that commits whatever is queued in one transaction, so
``append`` returns only once its row is on disk. ``seq`` is gap-free per
``stream``: assigned in the transaction that stores the event, from a counter
kept in the same database. A row is sent only when the uplink saw its PUBACK;
priority 1-3 events stay open until the center acks them (by id, or by a stream
ack up to a ``seq``) and come due again ``ack_timeout`` after each PUBACK.

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
import json
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import aiosqlite
import structlog
from ulid import ULID

from gateway.delivery.outbox import kept, sql
from gateway.delivery.outbox.capacity import Capacity, OutboxStats, ShedReport
from gateway.delivery.outbox.due import ResendSchedule
from gateway.delivery.outbox.files import Ballast, lock, quarantine, unlock
from gateway.delivery.outbox.metrics import CACHE_KIB, OutboxMetrics
from gateway.delivery.outbox.reads import OutboxReads
from gateway.errors import OutboxError
from gateway.events.model import Event
from gateway.runtime.state import Kind, StateWrite

log = structlog.get_logger(__name__)

# What SQLite raises for I/O, corruption and lock failures.
_DB_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error, OSError)
_SQLITE_FULL = 13

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class OpenRow:
    """An event stored and not yet acked by the center.

    Attributes:
        id, type, subject, seq: the event's.
        stored_at: UNIX seconds it was stored (wall clock).
    """

    id: str
    type: str
    subject: str
    seq: int | None
    stored_at: float


@dataclass(slots=True)
class _Op:
    kind: str
    arg: Any
    future: asyncio.Future[Any]
    keep: Sequence[StateWrite] = ()
    blob: tuple[str, bytes] | None = None


class Outbox(OutboxReads):
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
        self._ballast = Ballast(self.path.with_name(self.path.name + ".ballast"), ballast_bytes)
        self._db: aiosqlite.Connection | None = None
        self._lock_fd: int | None = None
        self._queue: asyncio.Queue[_Op] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self._last_seq = 0
        self._last_n = 0
        self.stream = ""
        self.quarantined: Path | None = None
        self.stats = OutboxStats()
        self.capacity = Capacity(max_rows, max_bytes, alarm_reserve_rows, self.stats)
        # Called with every event once it is committed (the metrics count them).
        self.on_stored: list[Callable[[Event], None]] = []
        self.metrics = OutboxMetrics(self.path)
        self.resends = ResendSchedule(ack_timeout)
        self._kept: dict[str, dict[str, Any]] = {}

    @property
    def commits(self) -> int:
        return self.stats.commits

    @property
    def waiting(self) -> int:
        """Writes queued for the writer and not yet taken into a transaction."""
        return self._queue.qsize()

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
        await db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        async with db.execute("PRAGMA quick_check") as cur:
            row = await cur.fetchone()
        if row is None or row[0] != "ok":
            raise sqlite3.DatabaseError(f"quick_check: {row[0] if row else 'no answer'}")
        await db.executescript(sql.SCHEMA)
        await db.executescript(kept.SCHEMA)
        self._kept = await kept.load(db)
        self.stream = await self._meta("stream") or await self._new_stream()
        self._last_seq = int(await self._meta("last_seq") or 0)
        async with db.execute("SELECT coalesce(max(n), 0) FROM messages") as cur:
            row = await cur.fetchone()
        self._last_n = int(row[0]) if row else 0
        await self.capacity.recount(self._require_db())
        wall_now = time.time()
        async with db.execute(sql.OPEN_SENT) as cur:
            for n, priority, sent_at in await cur.fetchall():
                self.resends.restore(int(n), int(priority), float(sent_at), wall_now)

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
        await self.metrics.close()
        await self._close_db()
        unlock(self._lock_fd)
        self._lock_fd = None

    # -- writes (all through the single writer) -------------------------------------------

    async def append(
        self,
        event: Event,
        *,
        keep: Sequence[StateWrite] = (),
        blob: tuple[str, bytes] | None = None,
    ) -> Event:
        """Store ``event`` durably; returns it with its ``seq`` and ``stream``.

        Returns only after the transaction holding it has committed; while the
        disk refuses the commit it waits (it is never dropped). ``keep`` (state
        kept with the event, :mod:`gateway.delivery.outbox.kept`) and ``blob``
        (``(topic, bytes)``: a non-event message stored just before it, as by
        :meth:`append_blob`, at the event's priority) commit in the same
        transaction: a power cut keeps all of them or none.

        Raises:
            OutboxError: the outbox is closed.
        """
        stored: Event = await self._submit("append", event, keep=keep, blob=blob)
        for listener in self.on_stored:
            listener(stored)
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

    async def keep(self, writes: Sequence[StateWrite]) -> None:
        """Commit kept state without an event (on disk when this returns).

        Raises:
            OutboxError: the outbox is closed.
        """
        await self._submit("keep", None, keep=writes)

    def kept(self, kind: Kind[T]) -> Mapping[str, T]:
        """The values of ``kind`` kept in this outbox (as last committed), by key.

        Raises:
            OutboxError: a value ``kind`` cannot read (names the file, kind and key).
        """
        out: dict[str, T] = {}
        for key, data in self._kept.get(kind.name, {}).items():
            try:
                out[key] = kind.decode(data)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise OutboxError(
                    f"outbox {self.path}: kept {kind.name}/{key} cannot be read: {exc!r}"
                ) from exc
        return out

    async def mark_sent(self, ns: Iterable[int]) -> None:
        """Record the broker's PUBACK for these rows (by row key ``n``)."""
        await self._submit("sent", list(ns))

    async def mark_acked(self, ids: Iterable[str]) -> int:
        """Record the center's acknowledgement of these event ids; returns rows matched."""
        matched: int = await self._submit("acked", list(ids))
        return matched

    async def mark_acked_through(self, stream: str, up_to_seq: int) -> list[tuple[str, float]]:
        """Record the center's ack of every confirmed event of ``stream`` with ``seq`` <=
        ``up_to_seq``; returns ``(id, stored at)`` of each event it newly acked.

        An ack for another stream (an outbox that was quarantined and replaced) acks
        nothing here: its events are not ours any more.
        """
        if stream != self.stream:
            log.warning("outbox.ack_other_stream", stream=stream, ours=self.stream)
            return []
        acked: list[tuple[str, float]] = await self._submit("acked_through", up_to_seq)
        return acked

    async def open_alarms(self) -> list[OpenRow]:
        """Alarms (priority 1-2) the center has not acked yet, in ``seq`` order."""
        async with self._require_db().execute(sql.OPEN_ALARMS) as cur:
            rows = await cur.fetchall()
        return [
            OpenRow(str(r[0]), str(r[1]), json.loads(r[4]).get("subject", ""), r[2], float(r[3]))
            for r in rows
        ]

    async def replay(self, from_seq: int, to_seq: int) -> tuple[int, list[int]]:
        """Make every event with ``from_seq`` <= ``seq`` <= ``to_seq`` that the outbox still
        holds and has sent before due again (a center that was away catches up).

        Returns:
            (events due again, the seqs of the range the outbox no longer holds:
            purged after ``retention_days`` or shed). Events of the range never
            sent yet are on their way anyway.
        """
        result: tuple[int, list[int]] = await self._submit("replay", (from_seq, to_seq))
        return result

    @property
    def last_seq(self) -> int:
        """The ``seq`` of the last event committed (0 before the first)."""
        return self._last_seq

    async def acked_up_to(self) -> int:
        """The highest ``seq`` up to which the center has acked every event that needs its
        ack (priority 1-3); :attr:`last_seq` when none waits (read on :attr:`metrics`)."""
        last = self._last_seq
        first_open = await self.metrics.first_open_seq()
        return last if first_open is None else min(last, first_open - 1)

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
            self.capacity.disk_pressure = False
            log.warning("outbox.disk_pressure_over")
        return relieved

    def take_shed(self) -> ShedReport | None:
        """Rows shed for capacity since the last call, or None when none were."""
        return self.capacity.take_report()

    @property
    def disk_pressure(self) -> bool:
        """True from a disk-full commit until :meth:`relieve_pressure` succeeds."""
        return self.capacity.disk_pressure

    async def _submit(
        self,
        kind: str,
        arg: Any,
        *,
        keep: Sequence[StateWrite] = (),
        blob: tuple[str, bytes] | None = None,
    ) -> Any:
        if self._writer is None or self._writer.done():
            raise OutboxError("outbox is not open")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Op(kind, arg, future, tuple(keep), blob))
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
            self.capacity.disk_pressure = True
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
                await self.capacity.recount(self._require_db())
            raise

    async def _commit_ops(self, db: aiosqlite.Connection, ops: list[_Op]) -> None:
        """All ops in one transaction, each kind in one statement where it can be."""
        results: list[Any] = [None] * len(ops)
        seq, n = self._last_seq, self._last_n
        now = time.time()
        inserts: list[tuple[Any, ...]] = []
        sent: list[tuple[float, int]] = []
        opened: list[tuple[int, int]] = []  # (n, priority) sent and waiting for the center
        replayed = False
        closed: list[int] = []  # row keys the center acked
        for i, op in enumerate(ops):
            if op.blob is not None and not self.capacity.refuse(op.arg.priority):
                n += 1
                topic, payload = op.blob
                inserts.append(
                    (n, None, str(ULID()), "blob", op.arg.priority, topic, payload,
                     len(payload), False, now)
                )  # fmt: skip
            if op.kind in ("append", "blob"):
                if self.capacity.refuse(op.arg.priority if op.kind == "append" else op.arg[2]):
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
                    (*row, payload, len(payload), op.kind == "append" and row[4] <= 3, now)
                )
            elif op.kind == "sent":
                sent.extend((now, s) for s in op.arg)
        await db.execute("BEGIN IMMEDIATE")
        if inserts:
            await db.executemany(sql.INSERT, inserts)
        if sent:
            await db.executemany(sql.MARK_SENT, sent)
            opened = await _select_chunks(db, sql.SENT_OPEN, [n for _, n in sent])
        for i, op in enumerate(ops):
            if op.kind == "acked":
                keys = await _select_chunks(db, sql.MARK_ACKED, op.arg, now)
                closed += [int(r[0]) for r in keys]
                results[i] = len(keys)
            elif op.kind == "acked_through":
                async with db.execute(sql.MARK_ACKED_THROUGH, (now, op.arg)) as cur:
                    acked = list(await cur.fetchall())
                closed += [int(r[2]) for r in acked]
                results[i] = [(str(r[0]), float(r[1])) for r in acked]
            elif op.kind == "purge":
                results[i] = await self._purge(db, now - op.arg)
            elif op.kind == "replay":
                async with db.execute(sql.REPLAY, op.arg) as cur:
                    again = [int(r[0]) for r in await cur.fetchall()]
                async with db.execute(sql.HELD_SEQS, op.arg) as cur:
                    held = {int(r[0]) for r in await cur.fetchall()}
                closed += again  # off the resend schedule: pending now, on it at the PUBACK
                replayed = replayed or bool(again)
                gone = [s for s in range(op.arg[0], op.arg[1] + 1) if s not in held]
                results[i] = (len(again), gone)
        keeps = [w for op in ops for w in op.keep]
        if keeps:
            await kept.write(db, keeps)
        if seq != self._last_seq:
            await db.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('last_seq', ?)", (str(seq),)
            )
        for values in inserts:  # (n, seq, id, type, priority, topic, payload, size, …)
            self.capacity.added(values[4], values[7])
        await self.capacity.shed(db)
        await db.execute("COMMIT")
        self._last_seq, self._last_n = seq, n
        kept.remember(self._kept, keeps)
        self.stats.commits += 1
        self.resends.forget(closed)
        for key, priority in opened:
            self.resends.sent(int(key), int(priority))
        for op, result in zip(ops, results, strict=True):
            if not op.future.done():
                op.future.set_result(result)
        if inserts or replayed:
            self._changed.set()

    async def _purge(self, db: aiosqlite.Connection, before: float) -> int:
        async with db.execute(sql.PURGE, (before,)) as cur:
            purged = list(await cur.fetchall())
        for size, priority in purged:
            self.capacity.removed(priority, size)
        self.stats.purged_total += len(purged)
        return len(purged)

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


async def _select_chunks(
    db: aiosqlite.Connection, query: str, keys: list[Any], *first: Any
) -> list[Any]:
    """Rows of ``query`` (with ``{marks}`` for an ``IN`` list) over ``keys`` in chunks below
    SQLite's variable limit; ``first`` are parameters before the list."""
    rows: list[Any] = []
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        marks = ",".join("?" * len(chunk))
        async with db.execute(query.format(marks=marks), (*first, *chunk)) as cur:
            rows += list(await cur.fetchall())
    return rows


def _is_disk_full(exc: BaseException) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and code & 0xFF == _SQLITE_FULL:
        return True
    if isinstance(exc, OSError) and exc.errno == 28:
        return True
    return "disk is full" in str(exc) or "No space left" in str(exc)
