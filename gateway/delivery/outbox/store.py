"""The outbox store: one writer with group commit, reads in send order, faults survived.

SQLite through aiosqlite, a persistent rollback journal, ``synchronous=FULL``
(:mod:`gateway.runtime.durable` says why). Every write goes through one writer task that commits
whatever is queued in one transaction. An event is numbered when it is accepted
(:meth:`Outbox.hold`): its row key ``n`` and its ``seq``, gap-free per ``stream``,
are taken from counters in memory, and the commit stores it with exactly those.
Until that commit succeeds the row is *held* (``held.py``): the uplink may send
it from memory at once while commits fail, after ``offer_after`` seconds while a
commit is merely slow, so an
alarm never waits on the disk (issue 11). :meth:`Outbox.append` returns only once
the row is on disk (the DC-09 ACK, the guard tour's reports wait for that). A row
is marked sent only when the uplink saw its PUBACK; priority 1-2 events stay open
until the center acks them and come due again ``ack_timeout`` after each PUBACK.

Streams: a seq sent from memory and then lost in a crash must never be given to
another event. ``meta.running`` is ``1`` from a start until a clean stop; a start
that finds it set (a crash, a power cut, a stop with rows still held), or that
cannot write the file at all, begins a new stream (:attr:`Outbox.stream_change`
says why; the daemon announces it in ``gateway.started``). Rows of the old stream
are still delivered with their own stream and seq.

Why not WAL: its ``-shm`` index is a shared memory map, and a write into that map
on an unwritable file (``chattr +i``) kills the process with SIGBUS (issue 11). A
rollback journal only uses ``write()``, whose errors are ordinary errors. The cost:
a reader blocks the writer's commit while it reads, so the heartbeat's counts are
kept in memory (``backlog.py``: counted at open, kept exact by every commit) and
its other reads (``metrics.py``) are single indexed seeks that time out after
``READ_BUSY_S``.

Faults (GB 50394 §5.2.2: no alarm may be lost):

* Full: when rows or bytes pass their caps, priority 5 then 4 rows are shed,
  oldest first; priority 1-3 never are, and ``alarm_reserve_rows`` of the cap is
  kept for them. Shed counts are reported through :meth:`Outbox.take_shed`.
* Stalled or failing commits (a lock held by another process, I/O errors, a
  read-only or immutable file, also at start): the held rows wait in memory and
  are offered to the uplink; the commit is retried every second on a fresh
  connection, the lock waited for ``_BUSY_S`` at most so reads are never queued
  behind it. :meth:`Outbox.stalled_for` and :attr:`Outbox.last_error` tell the
  housekeeping when to raise ``fault.storage``.
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
import functools
import json
import shutil
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import aiosqlite
import structlog
from ulid import ULID

from gateway.delivery.outbox import backlog, commit, kept, spill, sql
from gateway.delivery.outbox.backlog import Backlog
from gateway.delivery.outbox.capacity import Capacity, OutboxStats, ShedReport
from gateway.delivery.outbox.due import ResendSchedule, Sent
from gateway.delivery.outbox.due_queue import DueQueue
from gateway.delivery.outbox.files import Ballast, lock, unlock
from gateway.delivery.outbox.held import HeldRows
from gateway.delivery.outbox.metrics import CACHE_KIB, OutboxMetrics
from gateway.delivery.outbox.reads import OutboxReads
from gateway.delivery.outbox.rows import ALARM_PRIORITY, PendingRow
from gateway.errors import OutboxError
from gateway.events.model import Event
from gateway.runtime.durable import connect_durable, quarantine
from gateway.runtime.flag import Flag
from gateway.runtime.onthread import run_on
from gateway.runtime.state import Kind, StateWrite
from gateway.runtime.tasks import cancel_and_wait

log = structlog.get_logger(__name__)

# What SQLite raises for I/O, corruption and lock failures.
_DB_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error, OSError, OutboxError)
_KEPT_ERRORS: tuple[type[Exception], ...] = (*_DB_ERRORS, ValueError)  # and bad JSON
_SQLITE_FULL = 13
_SQLITE_BUSY = (5, 6)  # BUSY, LOCKED: another connection's lock; the connection is fine
# Seconds a statement waits for another process's lock before it fails (and is retried).
_BUSY_S = 0.1
# Seconds between attempts while commits fail.
_RETRY_S = 1.0
# Seconds a clean stop tries to store what is still held.
_CLOSE_S = 2.0
# Seconds between tries of the last commit while a stop waits for the disk.
_STOP_RETRY_S = 0.1
# Writes that need no commit of their own (see ``Outbox._gather_marks``).
_MARKS = frozenset({"sent", "acked", "acked_through"})
# Ops that only close rows whatever their "sent" mark says: acks by id. A stream ack
# closes only rows marked sent, so a mark may not pass it.
_CLOSING = frozenset({"acked"})
MARKS_RIDING = 32  # rows named by marks that may share an alarm's transaction
_RESTORE_PER_TURN = 2000  # open events put back on the schedule per turn of the loop

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
    insert: tuple[Any, ...] | None = None  # the row of an append or a blob
    at: float = field(default_factory=time.monotonic)
    keep: Sequence[StateWrite] = ()  # state kept with it (``kept.py``)
    blob: tuple[Any, ...] | None = None  # a blob row stored with the event, before it
    closes: list[int] = field(default_factory=list)  # rows an ack took off in memory


class Outbox(OutboxReads):
    """The durable message store. ``async with Outbox(path) as outbox``.

    Args:
        path: SQLite file; its directory is created when missing.
        commit_linger: seconds the writer waits for more work before a commit.
        mark_linger: seconds a PUBACK or center-ack mark waits for a commit that
            stores something (an event, a picture, kept state) to ride in, before it
            is committed on its own. Marks cost no fsync of their own under load;
            lost in a crash, one costs an at-least-once re-send, never an event.
        ack_timeout: seconds after a PUBACK an unacked alarm is due again.
        max_rows, max_bytes: capacity caps (see module docstring).
        alarm_reserve_rows: part of ``max_rows`` only priority 1-3 may use.
        ballast_bytes: disk space reserved for a disk-full emergency; 0 = none.
        offer_after: seconds a held (uncommitted) row waits before the uplink may
            send it from memory while its commit is merely slow; while commits fail
            (a lock, I/O errors, a read-only file) held rows are offered at once.
            Below it, a row reaches the center only once stored, as before.

    Attributes:
        stream: the stream new events join.
        stream_change: ``(previous stream or None, reason)`` when this start began a
            new stream: ``"first start"``, ``"unclean stop"``, ``"unwritable at
            start"`` or ``"quarantined"``; None when the stream carried on.
        last_error: the last commit or open error, None once a commit succeeded.
        not_durable: why the last connection does not commit in the durable
            journal mode (``gateway.runtime.durable``), or None.
        held: rows accepted and numbered but not yet committed.
        backlog: pending rows and unacked alarms of the file, counted at open and
            kept by every commit (``backlog.py``; the heartbeat's depth).
        due: the first sends due, in memory (``due_queue.py``).
        on_stored: called with every event once it is committed.
        on_held: called with every event once it is numbered (held, not yet committed:
            what must not wait for the disk, such as the escalation's clock).
        on_acked: called with the event ids a center's ack acks, when it comes, before
            the ack commits: those it names, and those a stream ack covers that the
            outbox knows in memory (the escalation's clearing must not wait for the disk).
        on_kept: called with each commit's kept state writes once it is committed,
            in commit order (the state store's copy of open alarms follows them).
        kept_loaded: the file's kept state has been read (at open; or, when the file
            could not be read at start, after the first commit that succeeds).
        on_kept_loaded: called once when the file's kept state is read late: what
            :meth:`kept` returned before held only this process's own writes.

    Raises:
        OutboxError: from ``__aenter__`` when another daemon holds the file. A file
            that cannot be read or written does not stop the start: events are held
            in memory and the commit is retried (see module docstring).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        commit_linger: float = 0.002,
        mark_linger: float = 0.25,
        ack_timeout: float = 30.0,
        max_rows: int = 1_000_000,
        max_bytes: int = 1 << 30,
        alarm_reserve_rows: int = 10_000,
        ballast_bytes: int = 0,
        offer_after: float = 1.0,
    ) -> None:
        self.path = Path(path)
        self.ack_timeout = ack_timeout
        self._linger = commit_linger
        self._mark_linger = mark_linger
        self._ballast = Ballast(self.path.with_name(self.path.name + ".ballast"), ballast_bytes)
        self._db: aiosqlite.Connection | None = None
        self._lock_fd: int | None = None
        self._queue: asyncio.Queue[_Op] = asyncio.Queue()
        self._submitted: deque[float] = deque()  # submit times of ops not yet committed
        self._writer: asyncio.Task[None] | None = None
        self._changed = Flag()
        self._offer_timer: asyncio.TimerHandle | None = None
        self._seq = 0  # last seq given out in ``stream``
        self._stored_seq = 0  # last seq of ``stream`` committed
        self._batch: list[_Op] = []  # the writer's ops in the commit being tried
        self._n = 0  # last row key given out
        self._schema_ready = False  # tables current (created, migrated) in the file
        self._meta_due = True  # ``stream``/``running`` still to be written
        self._failing = False
        self._writable = asyncio.Event()
        self.stream = ""
        self.stream_change: tuple[str | None, str] | None = None
        self.last_error: str | None = None
        self.quarantined: Path | None = None
        self.not_durable: str | None = None
        self._durable_retry = False
        self.stats = OutboxStats()
        self.capacity = Capacity(max_rows, max_bytes, alarm_reserve_rows, self.stats)
        self.backlog = Backlog()
        self.held = HeldRows(offer_after)
        self.spill = spill.Spill(self.path, self.stats)  # the held rows' spill file
        # Rows a spill gave back at this start: stored without the kept state their
        # commit would have carried (``gateway/delivery/reports.py`` mends the alarms').
        self.spilled_back = 0
        self.on_stored: list[Callable[[Event], None]] = []
        self.on_held: list[Callable[[Event], None]] = []
        self.on_acked: list[Callable[[list[str]], None]] = []
        self.on_kept: list[Callable[[Sequence[StateWrite]], None]] = []
        self.on_kept_loaded: list[Callable[[], None]] = []
        self.kept_loaded = False
        self.metrics = OutboxMetrics(self.path)
        self.resends = ResendSchedule(ack_timeout)
        self.due = DueQueue()
        self._kept: dict[str, dict[str, Any]] = {}
        # Row keys whose PUBACK came and whose "sent" mark waits for a commit.
        self.marking: set[int] = set()
        # Those of them stored, PUBACKed for the first time (``pubacked``): still pending
        # in the file, off the pending count (``pending_count``).
        self.first_marks: set[int] = set()
        self._open_sent: _Op | None = None  # the "sent" op new marks join (mark_sent_soon)
        self._restoring: set[asyncio.Task[None]] = set()  # ``_restore_in_turns``

    @property
    def commits(self) -> int:
        return self.stats.commits

    @property
    def waiting(self) -> int:
        """Writes queued for the writer and not yet taken into a transaction."""
        return self._queue.qsize()

    @property
    def writable(self) -> bool:
        """True once a write to the file succeeded, until one fails."""
        return self._writable.is_set()

    async def wait_writable(self) -> None:
        """Wait until a write to the file has succeeded."""
        await self._writable.wait()

    def stalled_for(self) -> float:
        """Seconds the oldest write not yet committed has waited (0 when none waits)."""
        return time.monotonic() - self._submitted[0] if self._submitted else 0.0

    # -- lifetime -------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            log.error("outbox.unwritable", path=str(self.path), error=str(exc))
        self._lock_fd = lock(self.path)
        previous, running = await self._open_first()
        if left := spill.waiting(self.path):  # not taken back: unsent until a later start
            self.stats.spill_failures += 1
            log.error("outbox.spill_waiting", files=left, error=self.last_error)
        if self._db is None:
            self._new_stream(None, "unreadable at start")
        elif previous is None:
            self._new_stream(None, "quarantined" if self.quarantined else "first start")
        elif running:
            self._new_stream(previous, "unclean stop")
        else:
            self.stream = previous
        await self._store_start(previous)
        self._writer = asyncio.create_task(self._write_loop(), name="outbox-writer")
        self._changed.set()
        log.info(
            "outbox.open", path=str(self.path), stream=self.stream, last_seq=self._seq,
            rows=self.stats.rows, bytes=self.stats.bytes, stream_change=self.stream_change,
        )  # fmt: skip
        return self

    async def _open_first(self) -> tuple[str | None, bool]:
        """Open the file, quarantining a corrupt one; ``(stream, running)`` as it says.

        A file that cannot be opened or read leaves the outbox without a connection
        (the writer keeps trying); its row keys then start from the clock, above any
        the file can hold.
        """
        try:
            try:
                return await self._open_and_read()
            except sqlite3.DatabaseError as exc:
                if isinstance(exc, sqlite3.OperationalError):
                    raise
                await self._close_db()
                self.quarantined = quarantine(self.path)
                log.error("outbox.quarantined", error=str(exc), moved_to=str(self.quarantined))
                return await self._open_and_read()
        except _DB_ERRORS as exc:
            await self._close_db()
            self.last_error = f"cannot open outbox {self.path}: {exc}"
            log.error("outbox.unreadable", path=str(self.path), error=str(exc))
            self._n = time.time_ns() // 1000
            return None, True

    async def _open_and_read(self) -> tuple[str | None, bool]:
        db = await self._connect()
        async with db.execute("PRAGMA quick_check") as cur:
            row = await cur.fetchone()
        if row is None or row[0] != "ok":
            raise sqlite3.DatabaseError(f"quick_check: {row[0] if row else 'no answer'}")
        async with db.execute(
            "SELECT count(*) FROM sqlite_master WHERE name IN ('meta', 'messages')"
        ) as cur:
            tables = await cur.fetchone()
        if tables is None or tables[0] < 2:
            self.backlog.empty()
            self.kept_loaded = True
            return None, False
        async with db.execute("PRAGMA table_info(messages)") as cur:
            streams = any(r[1] == "stream" for r in await cur.fetchall())
        if streams:  # rows earlier processes held and spilled, before anything is counted
            self.spilled_back += await spill.take_back(db, self.path, self.stats)
        async with db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'kept'") as cur:
            has_kept = await cur.fetchone()
        if has_kept is not None and has_kept[0]:  # read after the spill: it may mark it
            self._kept = await kept.load(db)
        self.kept_loaded = True
        stream = await self._meta("stream")
        running = await self._meta("running") == "1"
        self._seq = self._stored_seq = int(await self._meta("last_seq") or 0)
        async with db.execute("SELECT coalesce(max(n), 0) FROM messages") as cur:
            row = await cur.fetchone()
        self._n = int(row[0]) if row else 0
        await self.capacity.recount(db)
        self.backlog.set(await run_on(db, backlog.count))  # once: commits keep it exact
        wall_now = time.time()
        async with db.execute(sql.OPEN_SENT if streams else sql.OPEN_SENT_V1) as cur:
            self._restore(await cur.fetchall(), wall_now)
        if streams:  # their rows, for re-sends that need no read (``resend_rows.py``)
            async with db.execute(sql.OPEN_ALARM_ROWS, (self.resends.rows.max_rows,)) as cur:
                self._keep_rows(await cur.fetchall())
        return stream, running

    async def _restore_in_turns(self, open_sent: list[Any], wall_now: float) -> None:
        """:meth:`_restore` a few thousand rows per turn of the loop: half a million open
        events put back in one turn stalled the loop for 1.85 s (a review of
        2026-12-05), which a panic must never wait for."""
        for start in range(0, len(open_sent), _RESTORE_PER_TURN):
            self._restore(open_sent[start : start + _RESTORE_PER_TURN], wall_now)
            await asyncio.sleep(0)
        self.poke()  # some may be due already

    def _keep_rows(self, found: Iterable[Sequence[Any]]) -> None:
        """Keep ``sql.OPEN_ALARM_ROWS`` rows (newest first) for their re-sends."""
        for r in reversed(list(found)):
            self.resends.rows.keep(PendingRow.of_columns(r))

    def _restore(self, open_sent: Iterable[Sequence[Any]], wall_now: float) -> None:
        """Put the open events an earlier process sent (``sql.OPEN_SENT`` rows) on the
        resend schedule."""
        for n, priority, sent_at, event_id, stream, seq in open_sent:
            event = Sent(str(event_id), stream, seq)
            self.resends.restore(int(n), int(priority), float(sent_at), wall_now, event)

    def _new_stream(self, previous: str | None, reason: str) -> None:
        self.stream, self._seq, self._stored_seq = str(ULID()), 0, 0
        self.stream_change = (previous, reason)

    async def _store_start(self, previous: str | None) -> None:
        """Write ``running`` (and a new stream) now; when the file refuses, go on in
        memory on a new stream (a crash now would leave no mark of what was sent)."""
        try:
            await self._commit([])
        except _DB_ERRORS as exc:
            self.last_error = str(exc)
            if self.stream_change is None:
                self._new_stream(previous, "unwritable at start")
            log.error(
                "outbox.unwritable", path=str(self.path), error=str(exc), stream=self.stream,
                note="events are held in memory and sent; the write is retried every second",
            )  # fmt: skip
            return
        self._ballast.ensure()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stop_reads()
        if self._restoring:
            await cancel_and_wait(list(self._restoring))
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
        if self._offer_timer is not None:
            self._offer_timer.cancel()
        ops, self._batch = self._batch, []
        while not self._queue.empty():
            ops.append(self._queue.get_nowait())
        await self._last_commit(ops)
        await self.metrics.close()
        await self._close_db()
        unlock(self._lock_fd)
        self._lock_fd = None

    async def _last_commit(self, ops: list[_Op]) -> None:
        """Store what is still queued and mark the stop clean, trying again every
        ``_STOP_RETRY_S`` for ``_CLOSE_S``; what cannot be stored is logged (it was
        offered to the uplink) and the next start begins a new stream. (A fresh review
        of 2026-12-05: a lock another process let go 0.5 s into a stop still lost the
        unacked panic it held, since the first failed read gave up.)"""
        error: BaseException | None = None
        try:
            async with asyncio.timeout(_CLOSE_S):
                while True:
                    try:
                        if self._db is None or (error is not None and not _is_busy(error)):
                            await self._reconnect()
                        await self._store_at_stop(ops)
                        return
                    except (sqlite3.Error, OSError, OutboxError) as exc:
                        error = exc
                        ops = [op for op in ops if not op.future.done()]
                    await asyncio.sleep(_STOP_RETRY_S)
        except TimeoutError as exc:
            error = error or exc
        lost = [op for op in ops if op.insert is not None and not op.future.done()]
        await self.spill.write(self.stream, self.held.spilled())  # the next start's
        log.error(
            "outbox.closed_with_held_rows", error=str(error) or type(error).__name__,
            held=len(lost), ids=[op.insert[3] for op in lost if op.insert is not None][:50],
            spilled=len(self.held),
        )  # fmt: skip
        for op in ops:
            if not op.future.done():
                op.future.set_exception(OutboxError("outbox closed before commit"))

    async def _store_at_stop(self, ops: list[_Op]) -> None:
        """One try of the last commit (``_last_commit``)."""
        # A stop that cancelled the writer during its COMMIT: those rows are in.
        ids = [op.insert[3] for op in ops if op.insert is not None and not op.future.done()]
        present = await self.known_ids(ids, held=False) if ids else set()
        for op in ops:
            if op.insert is not None and op.insert[3] in present and not op.future.done():
                self.held.committed([op.insert[0]])
                op.future.set_result(op.arg)
        await self._commit([op for op in ops if not op.future.done()], clean_stop=True)

    # -- writes (all through the single writer) -------------------------------------------

    def hold(
        self,
        event: Event,
        *,
        keep: Sequence[StateWrite] = (),
        blob: tuple[str, bytes] | None = None,
    ) -> Event:
        """Accept ``event``: number it and queue it for the next commit; returns it with
        its ``seq`` and ``stream`` at once, without waiting for the disk. ``keep`` and
        ``blob`` are committed with it, as by :meth:`append`.

        Until committed it is held in memory and offered to the uplink (see module
        docstring). Under disk pressure a priority 4-5 event is shed at the door and
        returned without a ``seq``.

        Raises:
            OutboxError: the outbox is closed.
        """
        return self._hold(event, keep, blob)[0]

    async def append(
        self,
        event: Event,
        *,
        keep: Sequence[StateWrite] = (),
        blob: tuple[str, bytes] | None = None,
    ) -> Event:
        """Store ``event`` durably; returns it with its ``seq`` and ``stream``.

        Returns only after the transaction holding it has committed; while the
        disk refuses the commit it waits (it is never dropped, and meanwhile it is
        held and offered to the uplink like :meth:`hold`). ``keep`` (state kept
        with the event, :mod:`gateway.delivery.outbox.kept`) and ``blob``
        (``(topic, bytes)``: a non-event message stored just before it, as by
        :meth:`append_blob`, at the event's priority) commit in the same
        transaction: a power cut keeps all of them or none.

        Raises:
            OutboxError: the outbox closed before the commit.
        """
        stored, future = self._hold(event, keep, blob)
        await asyncio.shield(future)
        return stored

    def _hold(
        self, event: Event, keep: Sequence[StateWrite], blob: tuple[str, bytes] | None
    ) -> tuple[Event, asyncio.Future[Any]]:
        self._require_open()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        blob_row: tuple[Any, ...] | None = None
        if blob is not None and not self.capacity.refuse(event.priority):
            self._n += 1
            topic, data = blob
            blob_row = (self._n, None, None, str(ULID()), "blob", event.priority, topic, data,
                        len(data), False, time.time())  # fmt: skip
        if self.capacity.refuse(event.priority):
            if keep or blob_row is not None:  # the state (and picture) still go in
                future.add_done_callback(_retrieve)
                self._put(_Op("keep", None, future, None, keep=tuple(keep), blob=blob_row))
            else:
                future.set_result(event)
            return event, future
        self._n += 1
        self._seq += 1
        stored = event.stored(self._seq, self.stream)
        payload = stored.to_json()
        track = stored.priority <= 3
        row = PendingRow(self._n, self._seq, stored.id, stored.priority,
                         stored.topic_suffix, payload, 0, track, self.stream)  # fmt: skip
        insert = (
            self._n, self._seq, self.stream, stored.id, stored.type, stored.priority,
            stored.topic_suffix, payload, len(payload), track, time.time(),
        )  # fmt: skip
        self.held.add(row, insert, keep)  # events and their state are spilled, not pictures
        for listener in self.on_held:
            listener(stored)
        future.add_done_callback(_retrieve)
        self._put(_Op("append", stored, future, insert, keep=tuple(keep), blob=blob_row))
        self._offer_later()
        return stored, future

    async def append_blob(self, topic: str, payload: bytes, priority: int) -> int:
        """Store a non-event message (e.g. ``snapshots/<event id>`` JPEG bytes) durably.

        It is delivered like events (priority, then creation order) but takes no
        ``seq`` and is not acked by the center. Returns its row key (0 when shed at
        the door under disk pressure). It is never sent before it is stored.

        Raises:
            OutboxError: the outbox closed before the commit.
        """
        self._require_open()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.capacity.refuse(priority):
            return 0
        self._n += 1
        insert = (self._n, None, None, str(ULID()), "blob", priority, topic, payload,
                  len(payload), False, time.time())  # fmt: skip
        self._put(_Op("blob", self._n, future, insert))
        n: int = await asyncio.shield(future)
        return n

    async def keep(self, writes: Sequence[StateWrite]) -> None:
        """Commit kept state without an event (on disk when this returns).

        Raises:
            OutboxError: the outbox is closed.
        """
        self._require_open()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._put(_Op("keep", None, future, keep=tuple(writes)))
        await asyncio.shield(future)

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
        """Record the broker's PUBACK for these rows (by row key ``n``); the mark
        rides in the next commit (``mark_linger``). Cancelling the caller leaves the
        mark, and every other mark sharing its commit, to be committed."""
        await asyncio.shield(self.mark_sent_soon(ns))

    def mark_sent_soon(self, ns: Iterable[int]) -> asyncio.Future[None]:
        """:meth:`mark_sent` without a task: the future is done once the mark is
        committed (the uplink's callback per PUBACK, issue 14).

        Marks join the one "sent" op still waiting for the writer while nothing else
        has been queued after it, so the marks a commit takes share one op and one
        future: the same future is returned for each of them (never cancel it: it is
        theirs too). During a drain a commit
        takes about 4,000 marks; an op, a future and two callbacks per mark made
        its settling on the loop 25-130 ms, which a live panic waited behind.

        Raises:
            OutboxError: the outbox is not open.
        """
        self._require_open()
        keys = list(ns)
        self.marking.update(keys)
        self.held.pubacked(keys)  # re-sent on time even while the mark cannot commit
        op = self._open_sent
        if op is not None and not op.future.done():
            op.arg.extend(keys)
            return op.future
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        op = self._open_sent = _Op("sent", keys, future)
        future.add_done_callback(lambda _: self.marking.difference_update(op.arg))
        self._put(op)
        return future

    def pubacked(self, row: PendingRow) -> asyncio.Future[None]:
        """The broker PUBACKed ``row`` (the uplink's callback): its mark rides in the next
        commit (:meth:`mark_sent_soon`, whose future this returns), and an event the
        center must ack is due again ``ack_timeout`` from now, whether or not the mark
        commits (review of 2026-12-04: on a full disk a stored panic PUBACKed after the
        failure began was never re-sent).

        Raises:
            OutboxError: the outbox is not open.
        """
        future = self.mark_sent_soon([row.n])
        if row.n in self.held:
            return future  # ``held.py`` keeps its schedule until it is stored
        if row.attempts == 0:
            self.first_marks.add(row.n)
        if row.track_ack:
            event = Sent(row.id, row.stream, row.seq)
            self.resends.sent(row.n, row.priority, event=event, row=row)
        return future

    async def mark_acked(self, ids: Iterable[str]) -> list[tuple[str, float]]:
        """Record the center's acknowledgement of these event ids.

        Returns:
            ``(id, stored_at)`` of each alarm (an event the center acks) it acked
            now, ``stored_at`` in wall-clock seconds; ids unknown, already acked or
            of events not awaiting an ack are left out.
        """
        keys = list(ids)
        # Off at once, not re-sent while the mark waits for a commit that may keep
        # failing; whoever listens (the escalation) hears of it now too.
        closes = self.held.acked(set(keys)) + self.resends.acked(keys)
        for listener in self.on_acked:
            listener(keys)
        acked: list[tuple[str, float]] = await self._submit("acked", keys, closes)
        return acked

    async def mark_acked_through(self, stream: str, up_to_seq: int) -> list[tuple[str, float]]:
        """Record the center's ack of every confirmed event of ``stream`` with ``seq`` <=
        ``up_to_seq``; returns ``(id, stored at)`` of each event it newly acked.

        Any stream the file still holds rows of may be acked (an unclean stop leaves
        the rows of the stream before it); one it holds none of acks nothing.
        """
        off = self.resends.acked_through(stream, up_to_seq)
        if stream == self.stream:
            off += self.held.acked_through(up_to_seq)
        if off:
            for listener in self.on_acked:
                listener([event_id for _, event_id in off])
        closes = [n for n, _ in off]
        acked: list[tuple[str, float]] = await self._submit(
            "acked_through", (stream, up_to_seq), closes
        )
        return acked

    async def open_alarms(self) -> list[OpenRow]:
        """Alarms (priority 1-2) the center has not acked yet, in ``seq`` order.

        Raises:
            OutboxError: the file cannot be read.
        """
        try:
            async with self._require_db().execute(sql.OPEN_ALARMS) as cur:
                rows = await cur.fetchall()
        except (sqlite3.Error, ValueError) as exc:
            raise OutboxError(f"cannot read outbox {self.path}: {exc}") from exc
        return [
            OpenRow(str(r[0]), str(r[1]), json.loads(r[4]).get("subject", ""), r[2], float(r[3]))
            for r in rows
        ]

    async def replay(self, from_seq: int, to_seq: int) -> tuple[int, list[int]]:
        """Make every event of the current stream with ``from_seq`` <= ``seq`` <= ``to_seq``
        that the outbox still holds and has sent before due again (a center that was
        away catches up).

        Returns:
            (events due again, the seqs of the range the outbox no longer holds:
            purged after ``retention_days`` or shed). Events of the range never
            sent yet are on their way anyway.
        """
        result: tuple[int, list[int]] = await self._submit("replay", (from_seq, to_seq))
        return result

    @property
    def last_seq(self) -> int:
        """The ``seq`` of the last event of :attr:`stream` committed (0 before the first)."""
        return self._stored_seq

    async def acked_up_to(self) -> int:
        """The highest ``seq`` of :attr:`stream` up to which the center has acked every
        event that needs its ack (priority 1-3); :attr:`last_seq` when none waits (read on
        :attr:`metrics`; an event held in memory is not acked).

        Raises:
            OutboxError: the file cannot be read and no earlier figure is known.
        """
        last = self._stored_seq
        first_open = await self.metrics.first_open_seq(self.stream)
        held = self.held.first_seq()
        if held is not None:
            first_open = held if first_open is None else min(first_open, held)
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

    def _require_open(self) -> None:
        if self._writer is None or self._writer.done():
            raise OutboxError("outbox is not open")

    def _put(self, op: _Op) -> None:
        if op is not self._open_sent and op.kind not in _CLOSING:
            # Marks join the open "sent" op only while nothing but acks by id has been
            # queued after it: a mark must commit after the row it marks (a held row's
            # insert queued after the op; joined to it, its UPDATE found no row and the
            # mark was lost), after a replay that made its row pending again, and after
            # a stream ack that came before its PUBACK (which covers only rows marked
            # sent: joined to an earlier op, a row sent after the ack was acked by it,
            # review of 2026-12-05). Acks by id only close rows, and come all the time
            # during a drain.
            self._open_sent = None
        self._submitted.append(op.at)
        self._queue.put_nowait(op)

    async def _submit(self, kind: str, arg: Any, closes: list[int] | None = None) -> Any:
        self._require_open()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._put(_Op(kind, arg, future, closes=closes or []))
        return await future

    def _offer_later(self) -> None:
        """Wake the uplink once a held row has waited ``offer_after`` (or at once while
        commits fail), and again while rows stay held."""
        if self._failing:
            self._changed.set()
        if self._offer_timer is None:
            loop = asyncio.get_running_loop()
            self._offer_timer = loop.call_later(self.held.offer_after, self._offer_tick)

    def _offer_tick(self) -> None:
        self._offer_timer = None
        if self.held.waiting_offer():
            self._changed.set()
        if len(self.held):
            self._offer_later()

    async def _write_loop(self) -> None:
        while True:
            ops = [await self._queue.get()]
            self._batch = ops  # a stop meanwhile commits them (``__aexit__``)
            if ops[0].kind in _MARKS:
                await self._gather_marks(ops)
            if self._linger and not _is_alarm(ops[-1]):
                # An alarm does not linger for company: on a busy loop each wait is
                # a turn of the loop behind everything else that is ready.
                await asyncio.sleep(self._linger)
            while not self._queue.empty():
                ops.append(self._queue.get_nowait())
            marks = [op for op in ops if op.kind in _MARKS]
            if _marks_hold_up(marks) and any(_is_alarm(op) for op in ops):
                # An alarm commits in its own transaction, not behind the marks of a
                # drain (a thousand or more in one commit); the marks follow at once.
                # A few marks ride with it: a second fsync would cost more than them.
                # Replays follow the marks queued before them, so they wait too: committed
                # first, a replay was undone by those marks (a review: lost in full).
                first: list[_Op] = []
                later: list[_Op] = []
                for op in ops:
                    (later if op.kind in _MARKS or op.kind == "replay" else first).append(op)
                await self._commit_until_done(first)
                self._batch = ops = later
            await self._commit_until_done(ops)
            self._batch = []

    async def _gather_marks(self, ops: list[_Op]) -> None:
        """Let marks (PUBACK, center ack) wait up to ``mark_linger`` for a write that
        needs a commit anyway, and ride in its transaction (issue 14: three fsyncs
        per event became one). A mark lost to a crash costs an at-least-once
        re-send with the same id; the uplink does not send a row again while its
        mark waits (``Uplink._settling``)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._mark_linger):
                while True:
                    op = await self._queue.get()
                    ops.append(op)
                    if op.kind not in _MARKS:
                        return

    async def _commit_until_done(self, ops: list[_Op]) -> None:
        """Commit ``ops``; on a full disk free room, on any failure reconnect and retry
        every second; never drop them."""
        failures = 0
        busy = False
        while True:
            try:
                if self._db is None or (failures and not busy) or self._durable_retry:
                    self._durable_retry = False
                    await self._reconnect()
                await self._commit(ops)
                if failures:
                    log.warning("outbox.commit_recovered", after_failures=failures)
                if not self.kept_loaded:
                    await self._load_kept_late()
                return
            except _DB_ERRORS as exc:
                failures += 1
                self.stats.commit_failures += 1
                self.last_error = str(exc) or type(exc).__name__
                self._writable.clear()
                if not self._failing:
                    self._failing = True
                    self._changed.set()  # held rows are offered at once from now on
                full = _is_disk_full(exc)
                busy = _is_busy(exc)
                if failures == 1 or failures % 60 == 0:
                    log.error(
                        "outbox.commit_failed", error=self.last_error, disk_full=full,
                        ops=len(ops), held=len(self.held),
                    )  # fmt: skip
                if full:
                    await self._make_room()
                await self.spill.write(self.stream, self.held.spilled())  # a kill loses none
                await asyncio.sleep(_RETRY_S if failures > 1 or not full else 0)

    async def _make_room(self) -> None:
        self.stats.disk_full += 1
        if not self.disk_pressure:
            self.capacity.disk_pressure = True
            released = self._ballast.release()
            log.error("outbox.disk_full", ballast_released=released, path=str(self.path))

    async def _commit(self, ops: list[_Op], *, clean_stop: bool = False) -> None:
        """One transaction for ``ops``; on failure it is rolled back and counters re-read."""
        db = self._require_db()
        try:
            await self._commit_ops(db, ops, clean_stop)
        except BaseException as exc:  # ``commit.apply`` rolled the transaction back
            with contextlib.suppress(*_DB_ERRORS):
                await self.capacity.recount(db)
            if not isinstance(exc, _DB_ERRORS):  # a stop during COMMIT: it may be in
                self.backlog.stale = True
            raise
        done = len(ops)
        while done and self._submitted:
            self._submitted.popleft()
            done -= 1
        self.last_error = None
        self._failing = False
        self._writable.set()
        self.spill.clear(len(self.held))

    async def _commit_ops(self, db: aiosqlite.Connection, ops: list[_Op], clean: bool) -> None:
        """All ops in one transaction, as one call on the connection's thread
        (:mod:`~gateway.delivery.outbox.commit`); results settled here on the loop."""
        tx = self._transaction(ops, clean)
        out = await run_on(db, functools.partial(commit.apply, tx=tx))
        self._settle(ops, tx, out)

    def _transaction(self, ops: list[_Op], clean: bool) -> commit.Transaction:
        """What ``ops`` write (copies: the transaction runs on another thread)."""
        tx = commit.Transaction(now=time.time())
        if not self._schema_ready:
            tx.prepare_stream = self.stream
        for i, op in enumerate(ops):
            if op.blob is not None:
                tx.inserts.append(op.blob)
            if op.insert is not None:
                tx.inserts.append(op.insert)
            elif op.kind == "sent":
                if op is self._open_sent:
                    self._open_sent = None  # taken: later marks join a new op
                tx.sent.extend((tx.now, n) for n in op.arg)
            elif op.kind == "acked":
                tx.acked[i] = list(op.arg)
            elif op.kind == "acked_through":
                tx.acked_through[i] = op.arg
                tx.marks_before[i] = len(tx.sent)  # marks after it are applied after it
            elif op.kind == "purge":
                tx.purges[i] = tx.now - op.arg
            elif op.kind == "replay":
                tx.replays[i] = (self.stream, *op.arg)
        tx.kept_deletes, tx.kept_puts = kept.statements(w for op in ops for w in op.keep)
        tx.last_seq = max(
            (r[1] for r in tx.inserts if r[2] == self.stream), default=self._stored_seq
        )
        if self._meta_due:
            tx.meta += [("stream", self.stream), ("running", "1")]
        if self._meta_due or tx.last_seq != self._stored_seq:
            tx.meta.append(("last_seq", str(tx.last_seq)))
        if clean and len(self.held) == len([op for op in ops if op.kind == "append"]):
            tx.meta.append(("running", "0"))  # nothing held is left out of this commit
        # (n, seq, stream, id, type, priority, topic, payload, size, …)
        added = [(r[5], r[8]) for r in tx.inserts]
        tx.counts = self.capacity.counts(added, purging=bool(tx.purges))
        tx.recount = not self.backlog.counted
        tx.alarm_rows = self.resends.rows.max_rows if tx.recount else 0
        for priority, size in added:
            self.capacity.added(priority, size)  # re-read from the file if the commit fails
        return tx

    def _settle(self, ops: list[_Op], tx: commit.Transaction, out: commit.Outcome) -> None:
        """Counters, schedule, listeners and futures once ``tx`` is committed."""
        if tx.prepare_stream is not None:
            self._schema_ready = True
            if out.migrated_from is not None:
                log.warning("outbox.migrated", path=str(self.path), stream_column=out.migrated_from)
                self.resends.name_stream(out.migrated_from)  # a stream ack names them now
        results: list[Any] = [None] * len(ops)
        closed: list[int] = []  # row keys the center acked
        again_ns: list[int] = []  # row keys a replay made pending again
        for i, op in enumerate(ops):
            if op.insert is not None:
                results[i] = op.arg
        for i, rows in out.acked.items():
            closed += [n for _, _, n, _ in rows]
            results[i] = [(event_id, created) for event_id, created, _, alarm in rows if alarm]
        for i, acked in out.acked_through.items():
            closed += [n for _, _, n in acked]
            results[i] = [(event_id, created) for event_id, created, _ in acked]
        for i, purged in out.purged.items():
            for size, priority in purged:
                self.capacity.removed(priority, size)
            self.stats.purged_total += len(purged)
            results[i] = len(purged)
        in_memory = self.held.seqs() if out.replays else set()  # numbered, not committed
        for i, (again, kept_seqs) in out.replays.items():
            again_ns += again  # off the resend schedule: pending now, on it at the PUBACK
            first, last = ops[i].arg
            results[i] = (
                len(again),
                [q for q in range(first, last + 1) if q not in kept_seqs and q not in in_memory],
            )
        self.capacity.count_shed(out.shed)
        self.backlog.settle(out.pending, out.unacked, out.counted)
        self._meta_due = False
        self._stored_seq = tx.last_seq
        writes = [w for op in ops for w in op.keep]
        kept.remember(self._kept, writes)
        if writes:
            for on_kept in self.on_kept:
                on_kept(writes)
        self.stats.commits += 1
        for handed in self.held.committed(r[0] for r in tx.inserts):
            # Its PUBACK or the center's ack came while it was held, their marks still to
            # commit: the schedule goes on from what memory knows.
            row = handed.row
            if handed.acked:
                self.resends.close([row.n])
            elif handed.pubacked_at is not None:
                self.first_marks.add(row.n)  # a mark behind its insert: not committed yet
                event = Sent(row.id, row.stream, row.seq)
                self.resends.sent(row.n, row.priority, event=event, at=handed.pubacked_at, row=row)
        if out.open_sent:  # counted afresh: a start that could not read the file
            task = asyncio.create_task(
                self._restore_in_turns(out.open_sent, tx.now), name="outbox-restore"
            )
            self._restoring.add(task)
            task.add_done_callback(self._restoring.discard)
        self._keep_rows(out.alarm_rows)  # that start's, or a migrated file's
        if out.shed or out.replays or out.migrated_from is not None:
            self.due.rebuild()  # pending rows went or came back: page them afresh
        else:
            # (n, seq, stream, id, type, priority, topic, payload, size, track_ack, …)
            self.due.committed(
                PendingRow(r[0], r[1], r[3], r[5], r[6], r[7], 0, bool(r[9]), r[2])
                for r in tx.inserts
            )
        self.due.sent(n for _, n in tx.sent)
        self.first_marks.difference_update(n for _, n in tx.sent)
        # In the transaction's order (``commit._statements``): the PUBACK marks (each
        # before the stream acks that came after it), then the acks and replays. A row
        # PUBACKed and acked in one commit (the usual case while marks linger) is off
        # the schedule; forgotten first, it stayed on it for good (issue 14: half a
        # million entries in a drain, and each dict resize a 60-110 ms stall of the
        # loop).
        for key, priority in out.opened:
            self.resends.open(key, priority)
        self.resends.forget(again_ns)
        self.resends.acks_committed([*closed, *(n for op in ops for n in op.closes)])
        for op, result in zip(ops, results, strict=True):
            if op.kind == "append":
                for listener in self.on_stored:
                    listener(result)
            if not op.future.done():
                op.future.set_result(result)
        if tx.inserts or any(again for again, _ in out.replays.values()):
            self._changed.set()
        elif tx.sent and self.due.frontier is not None:
            self._changed.set()  # the queue has room again for rows still in the file

    @property
    def changed(self) -> Flag:
        """Set when rows may have been appended (or held rows became due); whoever
        waits on it (the uplink's send loop) clears it before reading what is due."""
        return self._changed

    async def retry_durable(self) -> None:
        """Try the durable journal mode again (:attr:`not_durable`): the metrics
        reader is closed (an open connection of our own would keep a WAL file in
        WAL too) and the next commit runs on a fresh connection, which switches it
        once no other process has the file open. That commit is asked for now (an
        empty one if nothing waits): on a quiet site the next event may be hours
        away, and the heartbeat's next read would open the metrics reader again
        before it, so the switch was never tried."""
        await self.metrics.close()
        self._durable_retry = True
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_retrieve)
        self._put(_Op("keep", None, future))

    def poke(self) -> None:
        """Set :attr:`changed` (after a reconnect, pending rows are re-driven)."""
        self._changed.set()

    # -- internals ------------------------------------------------------------------------

    def _require_db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise OutboxError(f"outbox {self.path} is not open: {self.last_error}")
        return self._db

    async def _connect(self) -> aiosqlite.Connection:
        self._db, self.not_durable = await connect_durable(
            self.path, busy_s=_BUSY_S, pragmas=(f"PRAGMA cache_size=-{CACHE_KIB}",)
        )
        return self._db

    async def _reconnect(self) -> None:
        """A fresh connection: SQLite opens a file it cannot write read-only and never
        tries again, so after a failure only a new connection sees a mended disk."""
        await self._close_db()
        await self._connect()
        self._schema_ready = False

    async def _load_kept_late(self) -> None:
        """Read the kept state of a file that could not be read at start, now that a
        commit went through: the file holds it and every write committed since (a
        review of 2026-12-06: a start under a lock never learnt the panels' open
        incidents, so their restores closed nothing). A failed read is tried again
        after the next commit."""
        try:
            self._kept = await kept.load(self._require_db())
        except _KEPT_ERRORS as exc:
            log.error("outbox.kept_unreadable", error=str(exc))
            return
        self.kept_loaded = True
        log.warning("outbox.kept_loaded_late", kinds=sorted(self._kept))
        # Told outside the writer: nothing a listener does can stop or repeat a commit
        # (a review of 2026-12-06: a bad kept row made one raise into the writer, and
        # no event was stored after it).
        asyncio.get_running_loop().call_soon(self._tell_kept_loaded)

    def _tell_kept_loaded(self) -> None:
        for loaded in self.on_kept_loaded:
            try:
                loaded()
            except Exception:
                log.exception("outbox.kept_listener_failed", listener=repr(loaded))

    async def _meta(self, key: str) -> str | None:
        async with self._require_db().execute("SELECT value FROM meta WHERE key = ?", (key,)) as c:
            row = await c.fetchone()
        return None if row is None else str(row[0])

    async def _close_db(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            with contextlib.suppress(*_DB_ERRORS):
                await db.close()


def _alarm_row(row: tuple[Any, ...]) -> bool:
    """Is ``row`` (``sql.INSERT``'s values) a priority 1-2 event?"""
    return bool(row[5] <= ALARM_PRIORITY)


def _marks_hold_up(marks: list[_Op]) -> bool:
    """Would ``marks`` hold up an alarm committed with them? A stream ack may close any
    number of rows; marks naming up to ``MARKS_RIDING`` rows cost an alarm's commit a
    few index seeks, less than a commit of their own would cost the writer (issue 14:
    two fsyncs per contact change became one)."""
    named = 0
    for op in marks:
        if op.kind == "acked_through":
            return True
        named += len(op.arg)
    return named > MARKS_RIDING


def _is_alarm(op: _Op) -> bool:
    """Does ``op`` store a priority 1-2 event?"""
    return op.insert is not None and _alarm_row(op.insert)


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a held event's outcome as seen (nobody may be awaiting it)."""
    if not future.cancelled():
        future.exception()


def _is_busy(exc: BaseException) -> bool:
    """Another connection's lock: the connection itself is fine."""
    return getattr(exc, "sqlite_errorcode", 0) & 0xFF in _SQLITE_BUSY


def _is_disk_full(exc: BaseException) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and code & 0xFF == _SQLITE_FULL:
        return True
    if isinstance(exc, OSError) and exc.errno == 28:
        return True
    return "disk is full" in str(exc) or "No space left" in str(exc)
