"""Held rows: messages the outbox has numbered and accepted but not yet committed.

An event gets its ``n``, ``seq`` and ``stream`` the moment it is accepted
(:meth:`~gateway.delivery.outbox.Outbox.hold`), and waits here until the
transaction holding it commits. A held row is offered to the uplink like a stored
one once it has waited ``offer_after`` seconds, or at once while commits are
failing, so an alarm never waits on the disk (issue 11: a locked, failing or
read-only outbox held panics for 37 s). It keeps its id and seq when it is
re-sent and when it is finally stored: nothing about the message changes.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from gateway.delivery.outbox.rows import PendingRow, topic_waits


@dataclass(slots=True)
class _Held:
    row: PendingRow
    since: float  # time.monotonic() when accepted
    offered: bool = False


class HeldRows:
    """The uncommitted rows of one outbox, by row key ``n``.

    Args:
        offer_after: seconds a row waits for its commit before the uplink may send it
            from memory (0 offers every row at once).
    """

    def __init__(self, offer_after: float) -> None:
        self.offer_after = offer_after
        self._rows: dict[int, _Held] = {}

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, n: object) -> bool:
        return n in self._rows

    def add(self, row: PendingRow) -> None:
        """Hold ``row`` until :meth:`committed` names it."""
        self._rows[row.n] = _Held(row, time.monotonic())

    def committed(self, ns: Iterable[int]) -> None:
        """These rows are in the file now: the uplink reads them from there."""
        for n in ns:
            self._rows.pop(n, None)

    def ids(self) -> set[str]:
        """Ids of every held event."""
        return {h.row.id for h in self._rows.values()}

    def seqs(self) -> set[int]:
        """Seqs of every held event (all of the outbox's current stream)."""
        return {h.row.seq for h in self._rows.values() if h.row.seq is not None}

    def first_seq(self) -> int | None:
        """The lowest seq held, or None."""
        return min(self.seqs(), default=None)

    def oldest_age(self) -> float | None:
        """Seconds the oldest held row has waited for its commit, or None when none waits."""
        if not self._rows:
            return None
        return time.monotonic() - min(h.since for h in self._rows.values())

    def waiting_offer(self) -> bool:
        """True when a row not offered yet has waited ``offer_after`` (the uplink must look)."""
        ripe = time.monotonic() - self.offer_after
        return any(not h.offered and h.since <= ripe for h in self._rows.values())

    def due(
        self,
        limit: int,
        *,
        now: bool,
        exclude: Iterable[int] = (),
        skip_topics: Iterable[str] = (),
    ) -> list[PendingRow]:
        """Up to ``limit`` held rows the uplink may send, in send order (priority, ``n``).

        Args:
            limit: maximum rows.
            now: offer every held row, however short its wait (commits are failing).
            exclude: row keys already in flight or PUBACKed.
            skip_topics: as :meth:`~gateway.delivery.outbox.reads.OutboxReads.pending`.
        """
        left_out = set(exclude)
        skips = list(skip_topics)
        ripe = float("inf") if now else time.monotonic() - self.offer_after
        out: list[_Held] = []
        for held in self._rows.values():
            if held.since > ripe or held.row.n in left_out or topic_waits(held.row.topic, skips):
                continue
            out.append(held)
        out.sort(key=lambda h: (h.row.priority, h.row.n))
        for held in out[:limit]:
            held.offered = True
        return [h.row for h in out[:limit]]
