"""The gateway's persisted state: arming, bypasses, open alarms, patrol progress.

GB 50394 (commentary): after power returns the previous arming state is
restored. The state lives in its own SQLite file beside the outbox
(``<outbox>-state.sqlite``), a persistent rollback journal and ``synchronous=FULL``
(:mod:`gateway.runtime.durable`: a WAL's ``-shm`` memory map kills the process with
SIGBUS when the file turns unwritable, issue 11), one writer task committing whatever is queued in
one transaction (group commit). A failed commit is retried every second on a fresh
connection (one opened on a read-only file stays read-only), so a disk that
mends is written again without a restart.

Schema: one table ``state (kind TEXT, key TEXT, value TEXT, PRIMARY KEY (kind, key))``;
``value`` is JSON. The kinds and their value shapes are :class:`~gateway.runtime.state.Kind`
objects defined beside the rules that own them (the alarm system's in
:mod:`gateway.runtime.state`, the guard tour's in :mod:`gateway.patrol.memory`).

Three ways to write:

* **Commit before report** (``wait=True``, the default): the call returns once the
  commit is on disk, and only then does the caller emit the event that reports
  the change (an ``area.armed`` event never describes a state a power cut can
  undo). :meth:`StateStore.apply` may commit, in the same transaction, the
  events that report the change (kind ``report``): they are appended to the
  outbox next and forgotten once *committed* there (:meth:`StateStore.stored`, an
  ``Outbox.on_stored`` listener; :meth:`StateStore.reported` for a caller that
  waited for the commit itself).
  Events a crash left in between are found by :meth:`StateStore.unreported` at
  the next start and appended then (``gateway/delivery/reports.py``), so the
  change and its report are never separated: neither lost nor doubled.
* **Write behind** (``wait=False``): in memory at once, on disk with the next
  commit, which waits up to :data:`BEHIND_S` for company (a waiting write commits
  at once, taking what is queued with it). A failed commit is retried with the
  next one. Only what the outbox can restore at the next start is written so.
* **Behind the outbox** (open alarms): an alarm transition never waits for this
  file. The outbox keeps each open alarm's record in its event's transaction (the
  durable record); :meth:`StateStore.put_alarm` changes memory only, and
  :meth:`StateStore.outbox_kept` (an ``Outbox.on_kept`` listener) writes the
  records here once the outbox has committed them, so this file holds a prefix of
  the outbox's record changes, never one the outbox lacks. At start
  ``gateway/delivery/reports.py`` brings it up to the outbox: records put back,
  replaced, and removed where the outbox holds the alarm's ``cleared`` event.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self, TypeVar

import aiosqlite
import structlog

from gateway.errors import StateError
from gateway.events.model import Emit, Event
from gateway.runtime.durable import connect_durable, quarantine, write_transaction
from gateway.runtime.onthread import run_on
from gateway.runtime.state import (
    ALARM,
    AREA,
    BYPASS,
    META,
    AlarmRecord,
    AreaRecord,
    BypassRecord,
    Kind,
    StateWrite,
)

log = structlog.get_logger(__name__)

T = TypeVar("T")

_BUSY_S = 1.0  # seconds a write waits for another process's lock
_SHOWN = 500  # characters of a value left out that its log line keeps
_RETRY_S = 1.0  # seconds between attempts while commits fail
_CONFIRM_S = 0.5  # seconds before a file that looked corrupt is read again
_READ_CAP = 64 << 20  # bytes of a file that looked corrupt read to compare it (a 8 GiB one: 30 s)
BEHIND_S = 1.0
"""Seconds a write-behind change (a forgotten report, an open alarm's copy) waits for
others before its commit: one fsync a second at most for what the next start can
rebuild from the outbox (issue 14), unless a waiting write commits it sooner."""

REPORT: Kind[tuple[int, Event]] = Kind(
    "report",
    lambda r: {"order": r[0], "event": r[1].to_dict()},
    lambda v: (int(v["order"]), Event.from_dict(v["event"])),
)
"""``report``/``<event id>``: an event committed with the change it reports, not yet
in the outbox: ``{"order": n, "event": <its JSON>}`` (``n`` orders the reports as
they were made: wall-clock nanoseconds, one more than the last at least)."""

__all__ = ["REPORT", "AlarmRecord", "AreaRecord", "BypassRecord", "StateStore", "state_path"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS state (
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (kind, key)
);
"""


def _write(
    conn: sqlite3.Connection, *, deletes: list[tuple[str, str]], puts: list[tuple[str, str, str]]
) -> None:
    """One transaction on the connection's thread (one hop, :mod:`gateway.runtime.onthread`)."""
    with write_transaction(conn):
        if deletes:
            conn.executemany("DELETE FROM state WHERE kind = ? AND key = ?", deletes)
        if puts:
            conn.executemany(
                "INSERT OR REPLACE INTO state (kind, key, value) VALUES (?, ?, ?)", puts
            )


def _json(data: Any) -> str:
    """``data`` as JSON text SQLite can bind: UTF-8 as is, but a lone UTF-16 surrogate
    (``"\\ud800"`` in a device's JSON) escaped, which reads back the same."""
    text = json.dumps(data, ensure_ascii=False)
    try:
        text.encode()
    except UnicodeEncodeError:
        return json.dumps(data)
    return text


def _storable(write: StateWrite) -> bool:
    """Whether the write's kind and key can be bound (no lone surrogate)."""
    try:
        write.kind.encode()
        write.key.encode()
    except UnicodeEncodeError:
        return False
    return True


def _order(report: tuple[int, Event]) -> int:
    return report[0]


def state_path(outbox_path: Path) -> Path:
    """Where the state of the outbox at ``outbox_path`` is kept."""
    return outbox_path.with_name(outbox_path.stem + "-state.sqlite")


class StateStore:
    """Use as ``async with StateStore(path) as store``; everything is loaded on entry.

    Attributes:
        areas, bypasses, alarms: the alarm system's records (typed views of the
            kinds ``area``, ``bypass`` and ``alarm``).
        commits: transactions committed.
        commit_failures: commits failed.
        unread: why the file could not be read at start (the store then runs
            from memory and writes nothing, see ``__aenter__``), or None.
        unsaved: changes made in memory only because the store is unread.
        bad_values: stored values left out (not JSON, or their kind cannot decode them).
        left_out: ``(kind, key)`` of each value left out.
        not_durable: why the last connection does not commit in the durable
            journal mode (``gateway.runtime.durable``), or None.
        quarantined: where a corrupt file was moved at start, or None.

    Raises:
        StateError: from every waiting write, when the file cannot be written.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: aiosqlite.Connection | None = None
        self._data: dict[str, dict[str, Any]] = {}  # kind -> key -> JSON data
        self._typed: dict[str, dict[str, Any]] = {}  # kind -> key -> decoded value
        self._kinds: dict[str, Kind[Any]] = {}
        self._queued: dict[tuple[str, str], str | None] = {}  # (kind, key) -> JSON, None: delete
        self._waiters: list[asyncio.Future[None]] = []
        self._wake = asyncio.Event()  # something is queued
        self._urgent = asyncio.Event()  # a caller waits for the commit
        self._waited: set[tuple[str, str]] = set()  # queued keys whose callers wait
        self._writer: asyncio.Task[None] | None = None
        self._last_order = 0
        self._reconnect = False
        self.commits = 0
        self.commit_failures = 0
        self.unread: str | None = None
        self.unsaved = 0
        self.left_out: set[tuple[str, str]] = set()  # (kind, key) of bad values
        self.not_durable: str | None = None
        self.quarantined: Path | None = None

    async def __aenter__(self) -> Self:
        """Open the file and load every value.

        A corrupt file (not a database, or one ``PRAGMA quick_check`` finds damaged,
        and still so on a second look: :meth:`_second_look`) is quarantined:
        moved aside with its journal to ``<file>.corrupt-<UTC time>``
        (:attr:`quarantined`, kept for a technician) and a new file is
        begun and written from then on, so one damaged sector does not leave the
        box saving nothing for the rest of its life, restart after restart. What
        it held starts from the configuration (arming) or from nothing (bypasses,
        patrol progress); the open alarms are brought back from the outbox.

        A file that cannot be opened or read (an I/O error, a hot journal on a file
        turned read-only, a lock held past the busy timeout) does
        not stop the start (a value that is not JSON, or that its kind cannot
        decode, is left out, :meth:`values`): the store runs *unread*
        (:attr:`unread` says why). Nothing is loaded; every change is made in
        memory only, waiting writes included (the rules, the schedule and the
        center's commands work on), and nothing is written to the file for the
        rest of the run, so the values it holds are never overwritten with the
        ones this run started from. Before, the daemon exited, and systemd
        restarted it into the same error: no alarm path at all.
        """
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                await self._load()
            except sqlite3.DatabaseError as exc:
                if isinstance(exc, sqlite3.OperationalError):  # locked, I/O: not corrupt
                    raise
                verdict = await self._second_look(exc)
                if verdict == "unread":
                    raise
                if verdict == "corrupt":
                    self.quarantined = quarantine(self.path)
                    log.error(
                        "state.quarantined", path=str(self.path), error=str(exc),
                        moved_to=str(self.quarantined),
                    )  # fmt: skip
                    await self._load()
        except (sqlite3.Error, OSError, ValueError) as exc:
            await self._reset()
            self.unread = f"cannot read state {self.path}: {exc}"
            log.error("state.unread", path=str(self.path), error=str(exc))
        except BaseException:  # a stop while opening: no connection left behind
            await self._close()
            raise
        self._writer = asyncio.create_task(self._write_loop(), name="state-writer")
        return self

    async def _second_look(
        self, first: sqlite3.DatabaseError
    ) -> Literal["corrupt", "loaded", "unread"]:
        """Whether a file that failed to load is corrupt, not merely unreadable for a
        moment: ``"corrupt"`` only when it should be quarantined (the store is then
        closed and empty), ``"loaded"`` when it loaded this time, ``"unread"`` when
        the store should run unread for this start.

        A read error of the disk is not corruption (SQLite reports some as a
        damaged page, ``error code=`` in ``quick_check``'s answer), nor is a file
        still being written (a technician's copy restoring it at start): both would
        move an intact file aside and lose the arming it holds at the next start
        (reviews reproduced both, and a copy that paused longer than the look). So
        a file shorter than its header says (a copy still coming in) is never taken
        for corrupt; the
        file is read (an ``OSError`` says the disk failed) and dropped from the page
        cache, so that the second look, :data:`_CONFIRM_S` later, reads the disk
        again; and only the same kind of failure on an unchanged file counts
        (:func:`_fingerprint`).

        Raises:
            OSError: the file cannot be read (the caller runs unread).
            sqlite3.Error: the second load failed otherwise.
        """
        await self._reset()
        if _io_failure(first):
            return "unread"
        # None: shorter than its header says, a copy still coming in: never corrupt
        before = await asyncio.to_thread(_fingerprint, self.path)
        await asyncio.sleep(_CONFIRM_S)
        try:
            await self._load()
        except sqlite3.DatabaseError as again:
            if isinstance(again, sqlite3.OperationalError):
                raise
            await self._reset()
            after = await asyncio.to_thread(_fingerprint, self.path)
            unchanged = before is not None and after == before
            return "corrupt" if unchanged and not _io_failure(again) else "unread"
        log.warning("state.read_on_second_try", path=str(self.path), error=str(first))
        return "loaded"

    async def _reset(self) -> None:
        """Close and forget whatever a failed load read."""
        await self._close()
        self._data.clear()
        self._typed.clear()
        self.left_out.clear()

    async def _load(self) -> None:
        """Connect, check the file (``PRAGMA quick_check``) and read every value.

        Raises:
            sqlite3.DatabaseError: the file is corrupt or not a database (an
                ``OperationalError`` when it is locked or cannot be read).
            sqlite3.Error, OSError, ValueError: it cannot be opened or read.
        """
        await self._connect()
        assert self._db is not None
        async with self._db.execute("PRAGMA quick_check") as cursor:
            check = await cursor.fetchone()
        if check is None or check[0] != "ok":
            raise sqlite3.DatabaseError(f"quick_check: {check[0] if check else 'no answer'}")
        with contextlib.suppress(sqlite3.OperationalError):  # a read-only file has it
            await self._db.executescript(_SCHEMA)
        # As bytes (SQLite converts a UTF-16 file's text to UTF-8 first): text
        # that is not UTF-8 (a bit flipped on the disk) would fail the whole fetch
        # in sqlite3's decoding, not just its own row.
        self._db.text_factory = bytes
        try:
            async with self._db.execute("SELECT kind, key, value FROM state") as cursor:
                rows = await cursor.fetchall()
        finally:
            self._db.text_factory = str
        for raw_kind, raw_key, value in rows:
            try:
                kind, key = _text(raw_kind), _text(raw_key)
                data = json.loads(_text(value))
            except (TypeError, ValueError, RecursionError) as exc:  # as in values()
                # UnicodeDecodeError is a ValueError: a name or value not UTF-8
                not_utf8 = isinstance(exc, UnicodeDecodeError)
                kind, key = _text(raw_kind, "replace"), _text(raw_key, "replace")
                self.left_out.add((kind, key))
                log.error(
                    "state.value_unreadable", path=str(self.path), kind=kind, key=key,
                    error=f"{'not UTF-8' if not_utf8 else 'not JSON'}: {exc}",
                    stored=_text(value, "replace")[:_SHOWN],
                )  # fmt: skip
                continue
            self._data.setdefault(kind, {})[key] = data
        alarm_kinds: tuple[Kind[Any], ...] = (AREA, BYPASS, ALARM)
        for alarm_kind in alarm_kinds:
            self.values(alarm_kind)  # decoded now: a bad record is logged at start

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Commit what is queued (bounded by SQLite's own locking), then close."""
        if self._writer is not None:
            with contextlib.suppress(StateError):
                await self._submit((), wait=True)
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            self._writer = None
        await self._close()

    # -- reads ----------------------------------------------------------------------------

    @property
    def bad_values(self) -> int:
        """How many stored values were left out (:attr:`left_out`)."""
        return len(self.left_out)

    def values(self, kind: Kind[T]) -> Mapping[str, T]:
        """Every value of ``kind`` by key (a live view: do not change it).

        A stored value ``kind`` cannot decode (a file written by hand, or by a
        version that wrote it differently) is left out: logged once
        (``state.value_unreadable``, naming the file, kind and key, with the stored
        text, up to :data:`_SHOWN` characters, since the next write of its key
        replaces it), counted in :attr:`bad_values`. Before, it
        stopped the start, and systemd restarted the daemon into the same error
        (review of 2026-12-03): the alarm path must not depend on one record.
        """
        typed = self._typed.get(kind.name)
        if typed is None:
            typed = {}
            for key, data in self._data.get(kind.name, {}).items():
                try:
                    typed[key] = self._decode(kind, key, data)
                except StateError as exc:
                    self.left_out.add((kind.name, key))
                    log.error(
                        "state.value_unreadable", path=str(self.path), error=str(exc),
                        stored=json.dumps(data, ensure_ascii=False)[:_SHOWN],
                    )  # fmt: skip
            self._typed[kind.name] = typed
            self._kinds[kind.name] = kind
        return typed

    def get(self, kind: Kind[T], key: str) -> T | None:
        """The value of ``kind`` under ``key``, or None."""
        return self.values(kind).get(key)

    @property
    def areas(self) -> Mapping[str, AreaRecord]:
        return self.values(AREA)

    @property
    def bypasses(self) -> Mapping[str, BypassRecord]:
        return self.values(BYPASS)

    @property
    def alarms(self) -> Mapping[str, AlarmRecord]:
        return self.values(ALARM)

    def meta(self, key: str) -> Any:
        """A ``meta`` value, or None."""
        return self.get(META, key)

    def unreported(self) -> list[Event]:
        """Events committed with their change by :meth:`apply` and not yet marked
        :meth:`reported`, oldest first (ids are time-ordered ULIDs).

        Raises:
            StateError: one cannot be read back.
        """
        return [event for _, event in sorted(self.values(REPORT).values(), key=_order)]

    # -- writes ---------------------------------------------------------------------------

    async def put(self, kind: Kind[T], key: str, value: T | None, *, wait: bool = True) -> None:
        """Set (or, with None, delete) one value; see :meth:`apply`."""
        await self.apply([kind.write(key, value)], wait=wait)

    async def apply(
        self, writes: Sequence[StateWrite], *, reports: Sequence[Event] = (), wait: bool = True
    ) -> None:
        """Commit ``writes`` and the ``reports`` (events reporting them) in one transaction.

        With ``wait`` it returns once the commit is on disk, and the values in
        memory change only then (unchanged when it fails); without, memory changes
        at once and the disk follows with the next commit.

        Raises:
            StateError: the store is closed, or (with ``wait``) the commit failed.
        """
        writes = list(writes)
        for event in reports:
            self._last_order = max(time.time_ns(), self._last_order + 1)
            writes.append(REPORT.write(event.id, (self._last_order, event)))
        if not wait:
            self._remember(writes)
        await self._submit(writes, wait=wait)
        if wait:
            self._remember(writes)

    async def report(
        self, writes: Sequence[StateWrite], events: Sequence[Event], emit: Emit
    ) -> list[Event]:
        """Commit ``writes`` with ``events`` (one transaction, :meth:`apply`), then store
        the events in the outbox through ``emit``, in order. They are forgotten here
        once the outbox has committed them (:meth:`stored`, which the daemon adds to
        ``Outbox.on_stored``), not when ``emit`` returns: ``emit`` may only hold them.

        A cut anywhere leaves the change and its report together: before the commit
        neither happened; after it, the events the outbox has not committed are
        appended at the next start (``gateway/delivery/reports.py``).

        Raises:
            StateError: the commit failed (nothing changed, nothing reported).
            OutboxError: the outbox refused an event (it stays here for the next start).
        """
        await self.apply(writes, reports=events)
        return [await emit(event) for event in events]

    async def reported(self, ids: Iterable[str]) -> None:
        """Forget reports now committed in the outbox (write-behind).

        Raises:
            StateError: the store is closed.
        """
        await self.apply([REPORT.write(i, None) for i in ids], wait=False)

    def stored(self, event: Event) -> None:
        """An ``Outbox.on_stored`` listener: forget ``event``'s report, if it is one, now
        that the outbox has *committed* it (write-behind).

        Not when the outbox merely holds it: ``emit`` may return before the commit
        (``Outbox.hold``), and a report forgotten then, with a cut before the
        outbox's commit, would lose the event (issue 12). A closed store forgets
        nothing; the next start finds the event in the outbox and skips it.
        """
        if event.id not in self._data.get(REPORT.name, {}):
            return
        writes = [REPORT.write(event.id, None)]
        self._remember(writes)
        if self._writer is not None and not self._writer.done():
            self._queue(writes)

    async def put_area(self, area_id: str, record: AreaRecord) -> None:
        """Persist an area's arming state (on disk when this returns).

        Raises:
            StateError: the commit failed (the state in memory is unchanged).
        """
        await self.put(AREA, area_id, record)

    async def put_bypass(self, zone_id: str, record: BypassRecord | None) -> None:
        """Persist a bypass, or its end (None); on disk when this returns.

        Raises:
            StateError: the commit failed (the state in memory is unchanged).
        """
        await self.put(BYPASS, zone_id, record)

    async def put_alarm(self, key: str, record: AlarmRecord | None) -> None:
        """Record an active condition, or its end (None), in memory at once. The file
        follows the outbox, not this call: the zone engine keeps the record with its
        event in the outbox (table ``kept``) and :meth:`outbox_kept` writes it here
        once the outbox has committed it. So this file never holds an alarm the
        outbox has not committed (issue 14: before, a kill between the two commits
        left a latched panic here whose event was never stored, and a button still
        pressed after the restart raised nothing)."""
        self._remember([ALARM.write(key, record)])

    def outbox_kept(self, writes: Sequence[StateWrite]) -> None:
        """An ``Outbox.on_kept`` listener: the open-alarm records (kind ``alarm``) the
        outbox has just committed with their events go to this file next, in the
        outbox's commit order (write-behind). Memory is left alone: :meth:`put_alarm`
        set it when the alarm changed, perhaps again since. A closed store writes
        nothing; the next start repairs this file from the outbox
        (``gateway/delivery/reports.py``)."""
        alarms = [w for w in writes if w.kind == ALARM.name]
        if alarms and self._writer is not None and not self._writer.done():
            self._queue(alarms)

    async def put_meta(self, key: str, value: Any) -> None:
        """Persist a ``meta`` value (JSON-serialisable); on disk when this returns.

        Raises:
            StateError: the commit failed.
        """
        await self.put(META, key, value)

    def retry_durable(self) -> None:
        """Try the durable journal mode again (:attr:`not_durable`) on a fresh
        connection, now (with an empty commit if nothing waits: the state changes
        rarely, and the switch waited for the next change)."""
        self._reconnect = self.unread is None
        if self._reconnect:
            self._wake.set()
            self._urgent.set()

    # -- internals ------------------------------------------------------------------------

    def _decode(self, kind: Kind[T], key: str, data: Any) -> T:
        try:
            return kind.decode(data)
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
            raise StateError(
                f"state {self.path}: {kind.name}/{key} cannot be read: {exc!r}"
            ) from exc

    def _remember(self, writes: Sequence[StateWrite]) -> None:
        for write in writes:
            section = self._data.setdefault(write.kind, {})
            typed = self._typed.get(write.kind)
            if write.data is None:
                section.pop(write.key, None)
                if typed is not None:
                    typed.pop(write.key, None)
                continue
            section[write.key] = write.data
            if typed is not None:
                typed[write.key] = self._decode(self._kinds[write.kind], write.key, write.data)

    async def _submit(self, writes: Sequence[StateWrite], *, wait: bool) -> None:
        """Queue writes and, with ``wait``, return once a commit holding them is on disk."""
        if self._writer is None or self._writer.done():
            raise StateError(f"state {self.path} is not open")
        if self.unread is not None:
            # In memory for this run (``apply`` remembers it); the file keeps what it
            # holds for a start that can read it. Counted, never silent.
            self.unsaved += len(writes)
            return
        if wait:
            for write in writes:
                if not _storable(write):
                    raise StateError(
                        f"state {self.path}: {write.kind}/{write.key!r} cannot be stored "
                        "(not valid UTF-8)"
                    )
        self._queue(writes, waited=wait)
        if wait:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(future)
            self._urgent.set()
            await future

    def _queue(self, writes: Sequence[StateWrite], *, waited: bool = False) -> None:
        """Queue writes for the next commit (a later write of a key replaces an earlier).
        ``waited``: their callers wait for the commit, and are told if it fails."""
        if self.unread is not None:
            return  # never written over (see __aenter__)
        for write in writes:
            item = (write.kind, write.key)
            if not _storable(write):  # a write-behind: nobody to tell but the log
                log.error("state.unstorable", kind=write.kind, key=repr(write.key))
                continue
            self._queued.pop(item, None)
            self._queued[item] = None if write.data is None else _json(write.data)
            if waited:
                self._waited.add(item)
            else:
                self._waited.discard(item)
        self._wake.set()

    def _requeue_failed(
        self, batch: dict[tuple[str, str], str | None], waited: set[tuple[str, str]]
    ) -> None:
        """A failed commit's writes, queued again for the next one, unless newer ones are
        queued. A waiting caller was told its write failed, and its value in memory
        never changed, so its key is queued with what memory holds: the failed write
        never reaches the disk later behind the caller's back (a disarm reported as
        failed must not come true at the next commit, with an ``area.disarmed`` no one
        sent)."""
        for item, text in batch.items():
            if item in waited:
                kind, key = item
                data = self._data.get(kind, {}).get(key)
                text = None if data is None else _json(data)
            if item not in self._queued:
                self._queued[item] = text

    async def _write_loop(self) -> None:
        failing = False
        while True:
            await self._wake.wait()
            if not (self._waiters or failing):  # write-behind: let the next second's join
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(BEHIND_S):
                        await self._urgent.wait()
            self._wake.clear()
            self._urgent.clear()
            batch, self._queued = self._queued, {}
            waiters, self._waiters = self._waiters, []
            waited, self._waited = self._waited, set()
            try:
                await self._commit(batch)
            except StateError as exc:
                self.commit_failures += 1
                log.error("state.commit_failed", error=str(exc), writes=len(batch))
                self._requeue_failed(batch, waited)  # retried with the next commit
                for future in waiters:
                    if not future.done():
                        future.set_exception(exc)
                failing = True  # retried every _RETRY_S, not _RETRY_S + BEHIND_S
                asyncio.get_running_loop().call_later(_RETRY_S, self._wake.set)
                continue
            failing = False
            for future in waiters:
                if not future.done():
                    future.set_result(None)

    async def _connect(self) -> None:
        self._db, self.not_durable = await connect_durable(self.path, busy_s=_BUSY_S)

    async def _commit(self, batch: dict[tuple[str, str], str | None]) -> None:
        if not (batch or self._reconnect):
            return
        try:
            if self._reconnect:
                await self._close()
                await self._connect()
                assert self._db is not None
                await self._db.executescript(_SCHEMA)
                self._reconnect = False
        except (sqlite3.Error, OSError) as exc:
            raise StateError(f"cannot open state {self.path}: {exc}") from exc
        db = self._db
        if db is None:
            raise StateError(f"state {self.path} is not open")
        deletes = [key for key, text in batch.items() if text is None]
        puts = [(kind, key, text) for (kind, key), text in batch.items() if text is not None]
        try:
            await run_on(db, functools.partial(_write, deletes=deletes, puts=puts))
        except (sqlite3.Error, OSError, ValueError) as exc:  # ValueError: a bind refused
            self._reconnect = True
            raise StateError(f"cannot write state {self.path}: {exc}") from exc
        self.commits += 1

    async def _close(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            with contextlib.suppress(sqlite3.Error):
                await db.close()


def _io_failure(exc: sqlite3.DatabaseError) -> bool:
    """Whether SQLite says the disk failed (an ``SQLITE_IOERR`` code, or
    ``quick_check``'s "unable to get the page. error code=…"), not the bytes."""
    name = str(getattr(exc, "sqlite_errorname", "") or "")
    return name.startswith("SQLITE_IOERR") or "error code=" in str(exc)


def _text(raw: object, errors: str = "strict") -> str:
    """A column read as bytes, as text (None as "").

    Raises:
        UnicodeDecodeError: not UTF-8 (``errors="strict"``).
    """
    if isinstance(raw, bytes):
        return raw.decode("utf-8", errors)
    return "" if raw is None else str(raw)  # a number stored in a text column


def _fingerprint(path: Path) -> tuple[object, ...] | None:
    """What says the file changed: its ``stat`` (inode, size, times) and a SHA-256 of
    its first :data:`_READ_CAP` bytes, read through (an ``OSError`` when the disk
    fails) and then dropped from the page cache (``POSIX_FADV_DONTNEED``), so a
    second look reads the disk, not a wrong sector the cache kept (a review). None
    when the file is shorter than its header's page count says.

    Raises:
        OSError: the file cannot be read.
    """
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        header = fh.read(100)
        digest.update(header)
        read = len(header)
        while read < _READ_CAP and (chunk := fh.read(min(1 << 20, _READ_CAP - read))):
            digest.update(chunk)
            read += len(chunk)
        info = os.fstat(fh.fileno())
        with contextlib.suppress(OSError, AttributeError):
            os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    if header[:16] == b"SQLite format 3\x00":
        page_size = int.from_bytes(header[16:18], "big")
        page_size = 65536 if page_size == 1 else page_size
        pages = int.from_bytes(header[28:32], "big")
        if header[24:28] == header[92:96] and info.st_size < pages * page_size:
            return None
    return (info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns, digest.hexdigest())
