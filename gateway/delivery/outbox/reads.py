"""Reads of the outbox for the uplink and the heartbeat: what is due, how much waits.

First sends due are kept in memory (``due_queue.py``), fed by the writer's commits;
the file is read only to page in a backlog, on the writer's aiosqlite connection
(one thread), in one call between its commits (each commit is one call too), so a
page holds every committed row and nothing uncommitted. The rows not yet committed
are added from memory too (``held.py``).
When an open event comes due again is kept in memory on the monotonic clock
(``due.py``), never read from the wall clock.
The heartbeat's depth and unacked count come from memory (``backlog.py``: counted
once at open, kept exact by every commit), since counting them in the file holds
its lock for as long as the count takes; its other figures are single seeks on a
read-only connection of their own (``metrics.py``) so they never queue a commit.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Container, Iterable
from dataclasses import replace
from typing import Any

import aiosqlite
import structlog

from gateway.delivery.outbox import sql
from gateway.delivery.outbox.backlog import Backlog
from gateway.delivery.outbox.due import ResendSchedule
from gateway.delivery.outbox.due_queue import DueQueue, Page, read_page
from gateway.delivery.outbox.held import HeldRows
from gateway.delivery.outbox.metrics import OutboxMetrics, StoredEvent
from gateway.delivery.outbox.rows import ALARM_PRIORITY, PendingRow, topic_waits
from gateway.errors import OutboxError
from gateway.runtime.onthread import run_on
from gateway.runtime.tasks import cancel_and_wait

log = structlog.get_logger(__name__)

# Seconds the uplink waits before it reads a file that failed to read again.
_REREAD_S = 1.0
# Pages one take may read when the rows paged in are in flight or their topic waits.
_PAGES_PER_TAKE = 4


class OutboxReads:
    """Read methods of :class:`~gateway.delivery.outbox.Outbox` (a mixin: it gives the connection).

    Attributes:
        ack_timeout: seconds after a PUBACK an unacked event is due again.
        metrics: the read-only connection for the heartbeat's seeks.
        backlog: the pending and unacked counts of the file, kept in memory.
        resends: when each open event is due again (monotonic clock).
        due: the first sends due, in memory.
        read_failures: reads of the file that failed since open.
    """

    ack_timeout: float
    metrics: OutboxMetrics
    backlog: Backlog
    last_error: str | None
    held: HeldRows
    marking: set[int]
    first_marks: set[int]
    _failing: bool
    resends: ResendSchedule
    due: DueQueue
    read_failures: int = 0
    _read_failed: bool = False
    _read_failed_at: float = 0.0
    _prefetching: asyncio.Task[None] | None = None

    def _require_db(self) -> aiosqlite.Connection:
        raise NotImplementedError

    async def pending(
        self,
        limit: int,
        exclude: Container[int] = (),
        skip_topics: Iterable[str] = (),
        resends: int | None = None,
    ) -> list[PendingRow]:
        """The rows :meth:`take` would return, left due (a look: for tests and status),
        read in full: an alarm in memory does not cut the answer short."""
        rows = await self.take(limit, exclude, skip_topics, resends, alarms_alone=False)
        for row in rows:
            self.release(row)
        return rows

    async def take(
        self,
        limit: int,
        exclude: Container[int] = (),
        skip_topics: Iterable[str] = (),
        resends: int | None = None,
        *,
        inflight: Container[int] | None = None,
        alarms_alone: bool = True,
    ) -> list[PendingRow]:
        """Up to ``limit`` rows due now, in send order: priority, first sends before
        re-sends, then creation. The rows returned are the caller's to send: a first
        send stays out of later answers until its PUBACK's mark is committed, or
        :meth:`release` gives it back.

        First sends come from memory (:mod:`~gateway.delivery.outbox.due_queue`), the
        file is read only to page in a backlog. Held rows (not committed yet) are
        among them once they have waited the outbox's ``offer_after``, or at once
        while commits fail; when the file cannot be read, what memory has is
        returned (the failure is logged).

        Due: never confirmed by the broker, or an event the center has not acked
        within ``ack_timeout`` of its last PUBACK (monotonic: a wall-clock step
        re-sends nothing early). A re-send never goes before a first send of its
        priority: a slow center must not turn old alarms into a storm that holds
        back new ones (issue 14).

        Args:
            limit: maximum rows.
            exclude: row keys in flight or PUBACKed and not yet marked (never returned;
                only asked ``in``, never copied: the uplink gives a live view).
            skip_topics: topics whose rows wait (the broker refused them); a topic
                ending in ``/`` stands for every topic it begins, ``""`` for all.
            resends: the most open events due again to return (the uplink's share of
                its window for them); None for no limit. The rest stay due.
            inflight: those of ``exclude`` in flight; an open event due again is
                returned unless it is in flight, its last mark committed or not (the
                resend schedule starts at the PUBACK: ``due.py``). None: ``exclude``.
            alarms_alone: with an alarm (priority 1-2) among the first sends in memory,
                return what memory has at once, without reading the file (the rest
                go at the next take); False waits for the reads a full answer needs.
        """
        excluded, skips = exclude, list(skip_topics)
        fresh = self.due.take(limit, excluded, skips)
        overdue_keys = self.resends.overdue(excluded if inflight is None else inflight)
        room = limit if resends is None else max(0, min(limit, resends))
        overdue_keys = overdue_keys if room else []
        # Alarms due again whose rows memory keeps need no read (``resend_rows.py``).
        overdue: list[PendingRow] = []
        unread: list[int] = []
        for n in overdue_keys:
            kept = self.resends.rows.get(n)
            if kept is None:
                unread.append(n)
            elif not topic_waits(kept.topic, skips):
                overdue.append(replace(kept, attempts=kept.attempts + 1))
        overdue_keys = unread
        # An alarm in memory goes now, never after a read of the file: a read queues
        # on the writer's connection behind its commit, and during a drain that is the
        # commit of the marks that follow the alarm's own (a live panic waited 60 ms
        # with nothing in flight, issue 14). What the read brings goes at the next take.
        # Only when that alarm goes before the first re-send due: the re-sends are read
        # from the file, and one that goes first must be read now (a review found an
        # intrusion held back for ever behind an unread panic re-send, the loop spinning).
        first_resend = (self.resends.priority(overdue_keys[0]) or 1, True) if overdue_keys else None
        first_alarm = min(
            ((r.priority, False) for r in fresh if r.priority <= ALARM_PRIORITY), default=None
        )
        alarm = (
            alarms_alone
            and first_alarm is not None
            and (first_resend is None or first_alarm < first_resend)
        )
        # A read that failed less than ``_REREAD_S`` ago (the file locked by another
        # process, I/O errors) is not tried again at every take: each try waits on the
        # lock, and with it the re-sends memory has (a review of 2026-12-05: 20 a
        # second, a live panic behind a thousand older alarms). What memory has goes.
        reading = not self._rereading_soon()
        reads = _PAGES_PER_TAKE if reading and not alarm else 0
        for _ in range(reads):
            short = len(fresh) < limit and self.due.can_page()
            if not (short or overdue_keys):
                break
            if await self._prefetched():  # one read of the file at a time
                fresh += self.due.take(limit - len(fresh), excluded, skips)
                continue
            try:
                paging = self.due.can_page()
                overdue += await self._read_file(paging, overdue_keys, excluded, room, skips)
                self._read_ok()
            except (OutboxError, sqlite3.Error, OSError, ValueError) as exc:
                self._read_error(exc)
                break
            overdue_keys = []
            fresh += self.due.take(limit - len(fresh), excluded, skips)
        overdue = sorted(overdue, key=lambda r: (r.priority, r.n))[:room]
        held = self.held.due(
            limit, now=self._failing, exclude=excluded, skip_topics=skips,
            ack_timeout=self.ack_timeout,
            resends=None if resends is None else max(0, room - len(overdue)),
        )  # fmt: skip
        # (priority, already PUBACKed at least once, n)
        rows = sorted([*fresh, *overdue, *held], key=lambda r: (r.priority, r.attempts > 0, r.n))
        cut = limit
        if alarm and first_resend is not None and reading:
            # The re-sends due were not read: nothing that goes after the first of them
            # may go now, or telemetry would pass an unacked panic's re-send. They come,
            # read, at the next take; the alarm, which goes before them, goes now.
            cut = min(limit, sum(1 for r in rows if (r.priority, r.attempts > 0) < first_resend))
        chosen = rows[:cut]
        first = {r.n for r in fresh}
        self.due.put_back(r for r in rows[cut:] if r.n in first)
        self.held.resend_now(r.n for r in rows[cut:] if r.attempts)  # due at the next take
        self.due.taken(r.n for r in chosen if r.n in self.held)
        if self._prefetching is not None and self._prefetching.done():
            self._prefetching = None  # its page is in (a take with an alarm did not wait)
        if (
            self._prefetching is None
            and self.due.wants_page()
            and self.due.can_page()
            and not self._rereading_soon()
        ):
            self._prefetching = asyncio.create_task(
                self._prefetch(excluded, skips), name="outbox-prefetch"
            )
        return chosen

    async def _prefetch(self, exclude: Container[int], skip_topics: list[str]) -> None:
        """Page in the next rows of a backlog before the queue runs dry, in the
        background: a take that has rows enough returns them at once instead of
        waiting for the read, which queues behind the writer's commit (issue 14: a
        live panic waited for such reads during a drain). One read at a time: a take
        that runs short waits for this one first (:meth:`_prefetched`)."""
        try:
            await self._read_file(True, [], exclude, 0, skip_topics)
            self._read_ok()
        except (OutboxError, sqlite3.Error, OSError, ValueError) as exc:
            self._read_error(exc)
            return  # the uplink looks again in _REREAD_S (next_due_in), not at once
        self.poke()  # an uplink with nothing left to send looks again

    def _read_error(self, exc: BaseException) -> None:
        """A read of the file failed: logged once until a read succeeds again (a disk
        that stays full or unreadable must not flood the journal), and no page is
        read in the background again for ``_REREAD_S`` (review of 2026-12-04: a start
        on a full disk read, failed and read again at once, 5,800 times a second)."""
        self.read_failures += 1
        if not self._read_failed:
            log.warning("outbox.read_failed", error=str(exc), held=len(self.held))
        self._read_failed = True
        self._read_failed_at = asyncio.get_running_loop().time()

    def _read_ok(self) -> None:
        if self._read_failed:
            log.info("outbox.read_recovered", held=len(self.held))
        self._read_failed = False

    def _rereading_soon(self) -> bool:
        """Whether the last read failed less than ``_REREAD_S`` ago."""
        return (
            self._read_failed
            and asyncio.get_running_loop().time() - self._read_failed_at < _REREAD_S
        )

    async def _prefetched(self) -> bool:
        """Wait for the page read in the background, if one runs; True when one did."""
        task, self._prefetching = self._prefetching, None
        if task is None:
            return False
        await task
        return True

    async def _stop_reads(self) -> None:
        """End a page read in the background (the outbox is closing)."""
        task, self._prefetching = self._prefetching, None
        if task is not None:
            await cancel_and_wait([task])

    def redrive(self) -> None:
        """The uplink connected again: what was in flight on the lost connection is due
        again. The due queue is rebuilt from the file, and the uplink woken.

        A page read in the background meanwhile is dropped: it would mark the rows in
        flight on the lost connection as out, and they would never be taken again
        (found by ``tests/delivery/test_due_queue.py``'s property on 2026-12-05)."""
        task, self._prefetching = self._prefetching, None
        if task is not None:
            task.cancel()
        self.due.rebuild()
        self.held.resend_now()  # held re-sends that were in flight
        self.poke()

    def poke(self) -> None:
        raise NotImplementedError

    def release(self, row: PendingRow) -> None:
        """``row`` from :meth:`take` was not sent after all (the broker refused it, or
        its send failed): it is due again."""
        self.due.release(row, stored=row.n not in self.held)
        self.held.resend_now([row.n])
        if row.n in self.first_marks:  # PUBACKed, its mark failed: a first send again
            self.first_marks.discard(row.n)
            self.resends.forget([row.n])

    async def _read_file(
        self,
        page: bool,
        overdue_keys: list[int],
        exclude: Container[int],
        limit: int,
        skip_topics: list[str],
    ) -> list[PendingRow]:
        """A page of first sends (into :attr:`due`) and the open events due again, read
        in one call on the connection's thread (:mod:`~gateway.runtime.onthread`);
        returns the sendable open events due again."""
        start = self.due.frontier if page else None
        rows, size = self.due.page_rows, self.due.page_bytes

        def read(conn: sqlite3.Connection) -> tuple[Page | None, list[Any], set[int]]:
            fresh = None if start is None else read_page(conn, start, rows, size)
            overdue: list[Any] = []
            asked: set[int] = set()
            sendable = 0
            for begin in range(0, len(overdue_keys), 500):  # below SQLite's variable limit
                chunk = overdue_keys[begin : begin + 500]
                query = sql.OPEN_ROWS.format(marks=",".join("?" * len(chunk)))
                found = conn.execute(query, chunk).fetchall()
                overdue += found
                asked.update(chunk)
                sendable += sum(1 for r in found if not topic_waits(str(r[4]), skip_topics))
                if sendable >= limit:
                    break
            return fresh, overdue, asked

        fresh, overdue, asked = await run_on(self._require_db(), read)
        if fresh is not None:
            self.due.page(fresh, exclude)
        found = {r[0] for r in overdue}
        self.resends.forget(n for n in asked if n not in found)  # acked or purged
        # A re-send whatever the file's count of attempts (its first mark may not have
        # committed), and only if the center did not ack it during the read.
        return [
            PendingRow.of_columns(r, resend=True)
            for r in overdue
            if not topic_waits(str(r[4]), skip_topics) and r[0] in self.resends
        ]

    async def known_ids(self, ids: Iterable[str], *, held: bool = True) -> set[str]:
        """Those of ``ids`` the outbox holds (stored, delivered or not; held in memory
        too unless ``held`` is False).

        Raises:
            OutboxError: the file cannot be read.
        """
        wanted = list(ids)
        found: set[str] = self.held.ids() & set(wanted) if held else set()
        return found | await self._select_in("SELECT id FROM messages WHERE id IN ({})", wanted)

    async def ended(self, incidents: Iterable[str]) -> set[str]:
        """Those of ``incidents`` (ids of ``active`` events) whose ``cleared`` event the
        file holds (``data.incident``). Reads every event row's JSON: for the start's
        repair of open-alarm records (``gateway/delivery/reports.py``), not a hot path.

        Raises:
            OutboxError: the file cannot be read.
        """
        incident = "json_extract(CAST(payload AS TEXT), '$.data.incident')"
        return await self._select_in(
            f"SELECT {incident} FROM messages WHERE seq IS NOT NULL"
            " AND json_extract(CAST(payload AS TEXT), '$.data.state') = 'cleared'"
            f" AND {incident} IN ({{}})",
            list(incidents),
        )

    async def _select_in(self, query: str, values: list[str]) -> set[str]:
        """The first column of ``query``'s rows, run for ``values`` in chunks (its
        ``{}`` becomes their placeholders).

        Raises:
            OutboxError: the file cannot be read.
        """
        found: set[str] = set()
        for start in range(0, len(values), 500):  # below SQLite's variable limit
            chunk = values[start : start + 500]
            try:
                sql_text = query.format(",".join("?" * len(chunk)))
                async with self._require_db().execute(sql_text, chunk) as cur:
                    found.update(str(r[0]) for r in await cur.fetchall())
            except (sqlite3.Error, ValueError) as exc:  # ValueError: closed to reconnect
                raise OutboxError(f"cannot read outbox: {exc}") from exc
        return found

    async def next_due_in(self) -> float | None:
        """Seconds until the next unacked event comes due again, or None when none waits
        (on the monotonic clock; ``_REREAD_S`` at most after a read of the file failed,
        so the uplink looks again)."""
        due = self.resends.next_due_in()
        held = self.held.next_resend_in(self.ack_timeout)
        if held is not None:
            due = held if due is None else min(due, held)
        if self._read_failed:
            return _REREAD_S if due is None else min(due, _REREAD_S)
        return due

    async def pending_count(self) -> int:
        """Rows not yet confirmed by the broker, held ones included (PUBACKed or not:
        not stored yet), stored ones whose first PUBACK came and whose mark waits for
        the next commit left out (a re-send of an open event waiting for its mark was
        not pending). From memory (:attr:`backlog`), never a read: O(1) in the rows
        held, O(marks waiting). While commits fail it is the last committed figure.

        Raises:
            OutboxError: the file has not been counted (it could not be read at open,
                and no commit has succeeded since).
        """
        marked = sum(
            1 for n in self.marking
            if n not in self.held and (n in self.first_marks or n not in self.resends)
        )  # fmt: skip
        return max(0, self._backlog_figure(self.backlog.pending) + len(self.held) - marked)

    async def unacked_count(self) -> int:
        """Events (priority 1-3) the broker confirmed and the center has not acked: those
        on the resend schedule (stored; from their PUBACK until the center's ack, marks
        committed or not) and those held in memory. O(1) in the stored rows.

        Raises:
            OutboxError: the file has not been counted (as :meth:`pending_count`).
        """
        self._backlog_figure(self.backlog.unacked)
        return len(self.resends) + self.held.unacked()

    def _backlog_figure(self, figure: int | None) -> int:
        if figure is None:
            raise OutboxError(f"outbox not counted yet: {self.last_error or 'not open'}")
        return figure

    async def oldest_pending_age(self) -> float | None:
        """Seconds since the oldest unconfirmed row was stored, or None (on :attr:`metrics`)."""
        return await self.metrics.oldest_pending_age()

    async def overdue_count(self) -> int:
        """Events whose center ack is overdue (due again now; monotonic clock), held ones
        (not yet committed) included."""
        return self.resends.overdue_count() + self.held.overdue(self.ack_timeout)

    async def recent(self, limit: int = 10) -> list[StoredEvent]:
        """The last ``limit`` events stored, newest first (on :attr:`metrics`)."""
        return await self.metrics.recent(limit)
