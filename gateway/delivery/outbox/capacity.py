"""Capacity of the outbox: caps on rows and bytes, what is shed and when, the counters.

When rows or bytes pass their caps, priority 5 then 4 rows are shed, oldest first
(a chunk of 1 % of ``max_rows`` more than needed, so shedding is not done on every
commit); priority 1-3 never are, and ``reserve_rows`` of the cap (with the same
share of the bytes) is kept for them. Under disk pressure (the disk filled up),
new priority 4-5 messages are refused at the door instead: deleting old rows would
itself need space the disk does not have.
"""

from __future__ import annotations

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
        self.stats.rows += 1
        self.stats.bytes += size
        if priority >= 4:
            self.stats.low_rows += 1
            self.stats.low_bytes += size

    def removed(self, priority: int, size: int) -> None:
        """Count a purged row."""
        self.stats.rows -= 1
        self.stats.bytes -= size
        if priority >= 4:
            self.stats.low_rows -= 1
            self.stats.low_bytes -= size

    def take_report(self) -> ShedReport | None:
        """Rows shed since the last call, or None when none were."""
        if not self._shed.total:
            return None
        report, self._shed = self._shed, ShedReport()
        return report

    async def shed(self, db: aiosqlite.Connection) -> None:
        """Shed priority 5, then 4, oldest first, until within the caps."""
        low_cap_rows = self.max_rows - self.reserve_rows
        low_cap_bytes = self.max_bytes - self.reserve_bytes
        for priority in (5, 4):
            while True:
                excess = max(
                    self.stats.low_rows - low_cap_rows,
                    self.stats.rows - self.max_rows,
                )
                over_bytes = max(
                    self.stats.low_bytes - low_cap_bytes, self.stats.bytes - self.max_bytes
                )
                if excess <= 0 and over_bytes <= 0:
                    return
                chunk = max(excess, 1) + self.max_rows // 100 if excess > 0 else 64
                async with db.execute(sql.SHED, (priority, chunk)) as cur:
                    shed = await cur.fetchall()
                if not shed:
                    break
                self._count(priority, shed)

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
