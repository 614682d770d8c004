"""The backlog of the outbox file, counted in memory: rows pending and alarms unacked.

The heartbeat, the status and the bench page ask for two counts every few seconds:
rows the broker has not confirmed (``sent_at IS NULL``) and events the broker
confirmed that the center has not acked (``track_ack = 1 AND acked_at IS NULL AND
sent_at IS NOT NULL``). Read from the file each is a count over an index, one
entry per row: with 1,000,000 rows each took about 45 ms, and the outbox keeps a
rollback journal (``store.py`` says why), so a reader's shared lock held that long
keeps the writer's ``COMMIT`` waiting: a panic's commit waited up to 63 ms behind
a heartbeat (issue 14: ``bench/outbox_bench.py heartbeat --rows 1000000``).

So they are counted once, when the outbox opens (:func:`count`, O(rows)), and
then kept exact by every commit: each statement that can move a row in or out of
either set reports how many it moved (``pending`` and ``unacked`` of
:class:`~gateway.delivery.outbox.commit.Outcome`, worked out on the connection's
thread inside the transaction, from what that statement changed), and
:meth:`Backlog.settle` adds them once the transaction has committed. A commit
that fails with a database error was rolled back: it changed nothing in the file
and nothing here. One that ended otherwise (a stop cancelled it during its
``COMMIT``) may have gone in: the figures are then :attr:`Backlog.stale`, and the
next commit counts afresh inside its own transaction, as does the first commit
after a start that could not read the file. Counts are of committed rows; rows
held in memory are added by
:meth:`~gateway.delivery.outbox.reads.OutboxReads.pending_count`.
"""

from __future__ import annotations

import sqlite3

from gateway.delivery.outbox import sql


def count(conn: sqlite3.Connection) -> tuple[int, int]:
    """``(pending, unacked)`` counted in the file on ``conn`` (on its own thread), each
    over its partial index (``sql.PENDING_COUNT``, ``sql.UNACKED_COUNT``): O(rows).

    Raises:
        sqlite3.Error, OSError: the file cannot be read.
    """
    pending = conn.execute(sql.PENDING_COUNT).fetchone()
    unacked = conn.execute(sql.UNACKED_COUNT).fetchone()
    return int(pending[0]) if pending else 0, int(unacked[0]) if unacked else 0


class Backlog:
    """Pending rows and unacked alarms the file holds, as of its last commit.

    Attributes:
        pending: rows whose PUBACK is not recorded (``sent_at IS NULL``); None until
            the file was counted (it could not be read at open).
        unacked: events (priority 1-3) whose PUBACK is recorded and whose center ack
            is not; None until counted.
        stale: a commit ended without a clean rollback: the figures may be off until
            the next commit counts afresh.
    """

    def __init__(self) -> None:
        self.pending: int | None = None
        self.unacked: int | None = None
        self.stale = False

    @property
    def counted(self) -> bool:
        """True when the figures are exact (counted, nothing unsure since)."""
        return self.pending is not None and not self.stale

    def set(self, counts: tuple[int, int]) -> None:
        """Take ``(pending, unacked)`` as counted in the file (:func:`count`)."""
        self.pending, self.unacked = counts
        self.stale = False

    def empty(self) -> None:
        """The file holds no table yet: nothing waits (exact, no read needed)."""
        self.set((0, 0))

    def settle(self, pending: int, unacked: int, counted: tuple[int, int] | None) -> None:
        """A transaction committed: add its changes (``Outcome.pending``,
        ``Outcome.unacked``), or take the counts it read afresh (``Outcome.counted``)."""
        if counted is not None:
            self.set(counted)
        elif self.pending is not None and self.unacked is not None:
            self.pending += pending
            self.unacked += unacked
