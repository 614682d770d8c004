"""Capacity of the outbox: caps on rows and bytes, what is shed and when, the counters.

When rows or bytes pass their caps, priority 5 then 4 rows are shed, oldest first
(a chunk of 1 % of ``max_rows`` more than needed, so shedding is not done on every
commit); priority 1-3 never are, and ``reserve_rows`` of the cap (with the same
share of the bytes) is kept for them. Under disk pressure (the disk filled up),
new priority 4-5 messages are refused at the door instead: deleting old rows would
itself need space the disk does not have.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import aiosqlite

from gateway.delivery.outbox import sql


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
    spill_failures: int = 0  # held rows that could not be written to the spill (``spill.py``)


@dataclass(slots=True)
class Counts:
    """A copy of the counters and caps, for shedding on the connection's thread.

    Attributes:
        rows, bytes, low_rows, low_bytes: what the file holds (low: priority 4-5).
        max_rows, max_bytes: the caps; ``low_cap_rows``, ``low_cap_bytes`` the part
            priority 4-5 may use (the caps less the reserve for priority 1-3).
    """

    rows: int
    bytes: int
    low_rows: int
    low_bytes: int
    max_rows: int
    max_bytes: int
    low_cap_rows: int
    low_cap_bytes: int

    def excess(self) -> tuple[int, int]:
        """(rows, bytes) over their caps; <= 0 when within."""
        rows = max(self.low_rows - self.low_cap_rows, self.rows - self.max_rows)
        over = max(self.low_bytes - self.low_cap_bytes, self.bytes - self.max_bytes)
        return rows, over

    def remove(self, priority: int, size: int) -> None:
        """Count a row gone."""
        _tally(self, priority, size, -1)


def _tally(counters: Counts | OutboxStats, priority: int, size: int, sign: int) -> None:
    """Count a row of ``priority`` and ``size`` bytes in (``sign`` 1) or out (-1)."""
    counters.rows += sign
    counters.bytes += sign * size
    if priority >= 4:
        counters.low_rows += sign
        counters.low_bytes += sign * size


def shed_rows(conn: sqlite3.Connection, counts: Counts) -> list[tuple[int, list[Any]]]:
    """Shed priority 5, then 4, oldest first, until ``counts`` are within the caps (in
    the caller's open transaction, on the connection's thread; ``counts`` is a copy
    and is updated here).

    Returns:
        ``(priority, [(seq, size, undelivered), …])`` per statement, for
        :meth:`Capacity.count_shed` on the event loop.
    """
    out: list[tuple[int, list[Any]]] = []
    for priority in (5, 4):
        while True:
            excess, over_bytes = counts.excess()
            if excess <= 0 and over_bytes <= 0:
                return out
            chunk = max(excess, 1) + counts.max_rows // 100 if excess > 0 else 64
            shed = conn.execute(sql.SHED, (priority, chunk)).fetchall()
            if not shed:
                break
            for _seq, size, _undelivered in shed:
                counts.remove(priority, size)
            out.append((priority, shed))
    return out


class Capacity:
    """Counts what the outbox holds and sheds what does not fit.

    Args:
        max_rows, max_bytes: the caps.
        reserve_rows: part of ``max_rows`` only priority 1-3 may use.
        stats: the outbox's counters, kept up to date here.
    """

    def __init__(self, max_rows: int, max_bytes: int, reserve_rows: int, stats: OutboxStats):
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self.reserve_rows = min(reserve_rows, max_rows // 2)
        self.reserve_bytes = max_bytes * self.reserve_rows // max_rows
        self.stats = stats
        self.disk_pressure = False
        self._shed = ShedReport()

    def refuse(self, priority: int) -> bool:
        """Under disk pressure a priority 4-5 message is shed at the door (counted)."""
        if not self.disk_pressure or priority < 4:
            return False
        self.stats.shed_total += 1
        self._shed.by_priority[priority] = self._shed.by_priority.get(priority, 0) + 1
        self._shed.undelivered += 1
        return True

    def added(self, priority: int, size: int) -> None:
        """Count a stored row."""
        _tally(self.stats, priority, size, 1)

    def removed(self, priority: int, size: int) -> None:
        """Count a purged row."""
        _tally(self.stats, priority, size, -1)

    def take_report(self) -> ShedReport | None:
        """Rows shed since the last call, or None when none were."""
        if not self._shed.total:
            return None
        report, self._shed = self._shed, ShedReport()
        return report

    def counts(self, added: Iterable[tuple[int, int]], purging: bool) -> Counts | None:
        """The counters with ``added`` ``(priority, size)`` rows, when a commit may have
        to shed (over a cap now, or purging, which may bring it back under); None
        when it certainly need not."""
        c = Counts(
            self.stats.rows, self.stats.bytes, self.stats.low_rows, self.stats.low_bytes,
            self.max_rows, self.max_bytes,
            self.max_rows - self.reserve_rows, self.max_bytes - self.reserve_bytes,
        )  # fmt: skip
        for priority, size in added:
            _tally(c, priority, size, 1)
        excess, over_bytes = c.excess()
        return c if excess > 0 or over_bytes > 0 or purging else None

    def count_shed(self, shed: Iterable[tuple[int, list[Any]]]) -> None:
        """Count what :func:`shed_rows` deleted (once its transaction committed)."""
        for priority, rows in shed:
            self._count(priority, rows)

    def _count(self, priority: int, shed: Iterable[Any]) -> None:
        for seq, size, undelivered in shed:
            self.removed(priority, size)
            self.stats.shed_total += 1
            self._shed.by_priority[priority] = self._shed.by_priority.get(priority, 0) + 1
            if undelivered:
                self._shed.undelivered += 1
                if seq is not None:
                    self._shed.seqs.append(seq)

    async def recount(self, db: aiosqlite.Connection) -> None:
        """Read the counters afresh from the database (at open, after a failed commit)."""
        async with db.execute(sql.TOTALS) as cur:
            total = await cur.fetchone()
        async with db.execute(sql.LOW_TOTALS) as cur:
            low = await cur.fetchone()
        self.stats.rows, self.stats.bytes = (int(total[0]), int(total[1])) if total else (0, 0)
        self.stats.low_rows, self.stats.low_bytes = (int(low[0]), int(low[1])) if low else (0, 0)
