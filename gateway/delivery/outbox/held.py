"""Held rows: messages the outbox has numbered and accepted but not yet committed.

An event gets its ``n``, ``seq`` and ``stream`` the moment it is accepted
(:meth:`~gateway.delivery.outbox.Outbox.hold`), and waits here until the
transaction holding it commits. A held row is offered to the uplink like a stored
one once it has waited ``offer_after`` seconds, or at once while commits are
failing, so an alarm never waits on the disk (issue 11: a locked, failing or
read-only outbox held panics for 37 s). It keeps its id and seq when it is
re-sent and when it is finally stored: nothing about the message changes.

Its PUBACK and the center's ack are recorded by commits queued behind its own, so
while commits keep failing a held event keeps its own re-send time and ack here: an
event the center must ack is due again ``ack_timeout`` after its last PUBACK until
the center acks it, as a committed one is (``due.py``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Container, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

from gateway.delivery.outbox.rows import PendingRow, topic_waits
from gateway.runtime.state import StateWrite


@dataclass(slots=True)
class _Held:
    row: PendingRow
    since: float  # time.monotonic() when accepted
    offered: bool = False
    pubacked_at: float | None = None  # time.monotonic() of its last PUBACK, until re-sent
    acked: bool = False  # the center acked it (the mark waits for a commit too)
    insert: tuple[Any, ...] | None = None  # its ``sql.INSERT`` row, for the spill
    keep: tuple[StateWrite, ...] = ()  # the state kept with it, for the spill


class Handover(NamedTuple):
    """A held event the center must ack, as its commit found it.

    Attributes:
        row: the row.
        pubacked_at: ``time.monotonic()`` of its last PUBACK if it is not being re-sent.
        acked: the center acked it (the mark waits for a later commit).
    """

    row: PendingRow
    pubacked_at: float | None
    acked: bool


class HeldRows:
    """The uncommitted rows of one outbox, by row key ``n``.

    Args:
        offer_after: seconds a row waits for its commit before the uplink may send it
            from memory (0 offers every row at once).
        clock: seconds, never going back (``time.monotonic``; a test steps its own).
    """

    def __init__(self, offer_after: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.offer_after = offer_after
        self._clock = clock
        # In the order held, which is also the order of ``since``: the rows that have
        # waited ``offer_after`` are a prefix, so a take on a healthy disk looks at
        # none of the others.
        self._rows: dict[int, _Held] = {}
        # Row keys of the events waiting for the center's ack since a PUBACK
        # (``_waits_since`` not None): the only ones that can be due again. A take
        # visits these and the ripe prefix, not every held row (a drain held 500 rows
        # and scanned them all at every take: a tenth of the uplink's time).
        self._waiting: set[int] = set()

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, n: object) -> bool:
        return n in self._rows

    def add(
        self,
        row: PendingRow,
        insert: tuple[Any, ...] | None = None,
        keep: Sequence[StateWrite] = (),
    ) -> None:
        """Hold ``row`` until :meth:`committed` names it; ``insert`` is its
        ``sql.INSERT`` row and ``keep`` the state kept with it, written to the spill
        while commits fail (``spill.py``)."""
        self._rows[row.n] = _Held(row, self._clock(), insert=insert, keep=tuple(keep))

    def inserts(self) -> list[tuple[Any, ...]]:
        """The ``sql.INSERT`` rows of the held events, in the order held."""
        return [h.insert for h in self._rows.values() if h.insert is not None]

    def spilled(self) -> list[tuple[tuple[Any, ...], tuple[StateWrite, ...]]]:
        """(``sql.INSERT`` row, kept state) of the held events, in the order held."""
        return [(h.insert, h.keep) for h in self._rows.values() if h.insert is not None]

    def _track(self, held: _Held) -> None:
        """Keep ``_waiting`` true to ``held`` after a change to it."""
        if self._waits_since(held) is None:
            self._waiting.discard(held.row.n)
        else:
            self._waiting.add(held.row.n)

    def committed(self, ns: Iterable[int]) -> list[Handover]:
        """These rows are in the file now: the uplink reads them from there.

        Returns:
            The events among them the center must ack, with what memory knows of their
            PUBACK and ack: the resend schedule (``due.py``) takes them over.
        """
        out: list[Handover] = []
        for n in ns:
            held = self._rows.pop(n, None)
            if held is None:
                continue
            self._waiting.discard(n)
            if held.row.track_ack:
                out.append(Handover(held.row, held.pubacked_at, held.acked))
        return out

    def pubacked(self, ns: Iterable[int]) -> None:
        """The broker PUBACKed these rows (those held): an event the center must ack
        is due again ``ack_timeout`` after this unless acked, commit or not."""
        now = self._clock()
        for n in ns:
            held = self._rows.get(n)
            if held is not None:
                held.pubacked_at = now
                self._track(held)

    def acked(self, ids: Container[str]) -> list[int]:
        """The center acked these event ids: those held are not re-sent again. Returns
        their row keys."""
        out: list[int] = []
        for held in self._rows.values():
            if held.row.id in ids:
                held.acked = True
                self._waiting.discard(held.row.n)
                out.append(held.row.n)
        return out

    def acked_through(self, seq: int) -> list[tuple[int, str]]:
        """The center acked every event of the current stream up to ``seq`` the broker
        confirmed (as the file's stream ack: one never PUBACKed cannot have arrived; a
        review of 2026-12-05 found such a panic never re-sent). Returns ``(n, id)``."""
        out: list[tuple[int, str]] = []
        for held in self._rows.values():
            row = held.row
            confirmed = held.pubacked_at is not None or row.attempts > 0
            if confirmed and row.seq is not None and row.seq <= seq and not held.acked:
                held.acked = True
                self._waiting.discard(row.n)
                out.append((row.n, row.id))
        return out

    def unacked(self) -> int:
        """Held events PUBACKed (or being re-sent) and not acked by the center yet."""
        return sum(
            1 for h in self._rows.values() if h.row.track_ack and not h.acked
            and (h.pubacked_at is not None or h.row.attempts > 0)
        )  # fmt: skip

    def next_resend_in(self, ack_timeout: float) -> float | None:
        """Seconds until the first held event the center has not acked is due again."""
        if not self._waiting:
            return None
        first = min(self._since_puback(n) for n in self._waiting)
        return max(0.0, first + ack_timeout - self._clock())

    def overdue(self, ack_timeout: float) -> int:
        """Held events the center has not acked within ``ack_timeout`` of their PUBACK."""
        bound = self._clock() - ack_timeout
        return sum(1 for n in self._waiting if self._since_puback(n) <= bound)

    @staticmethod
    def _waits_since(held: _Held) -> float | None:
        """When a held event the center must ack and has not was last PUBACKed, or None."""
        return held.pubacked_at if held.row.track_ack and not held.acked else None

    def _since_puback(self, n: int) -> float:
        """The last PUBACK of row ``n``, one of ``_waiting``."""
        at = self._rows[n].pubacked_at
        assert at is not None  # the invariant of ``_waiting``
        return at

    def _ripe(self, ripe: float) -> Iterator[_Held]:
        """The held rows accepted at or before ``ripe`` (on the clock), in order."""
        for held in self._rows.values():
            if held.since > ripe:
                return
            yield held

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
        return self._clock() - min(h.since for h in self._rows.values())

    def waiting_offer(self) -> bool:
        """True when a row not offered yet has waited ``offer_after`` (the uplink must look)."""
        return any(not h.offered for h in self._ripe(self._clock() - self.offer_after))

    def due(
        self,
        limit: int,
        *,
        now: bool,
        exclude: Container[int] = (),
        skip_topics: Iterable[str] = (),
        ack_timeout: float = float("inf"),
        resends: int | None = None,
    ) -> list[PendingRow]:
        """Up to ``limit`` held rows the uplink may send, in send order (priority, first
        sends before re-sends, ``n``): those not sent yet, and the events the center
        has not acked within ``ack_timeout`` seconds of their last PUBACK.

        Args:
            limit: maximum rows.
            now: offer every held row, however short its wait (commits are failing).
            exclude: row keys already in flight or PUBACKed (a held event due again is
                PUBACKed, its mark waiting for the commit: it goes all the same).
            skip_topics: as :meth:`~gateway.delivery.outbox.reads.OutboxReads.pending`.
            ack_timeout: seconds after its last PUBACK an unacked event is due again.
            resends: the most re-sends to return (the uplink's share of its window for
                them); None for no limit. The rest stay due.
        """
        skips = list(skip_topics)
        clock = self._clock()
        ripe = float("inf") if now else clock - self.offer_after
        overdue = clock - ack_timeout
        again: set[int] = set()
        out: list[_Held] = []
        for n in self._waiting:
            held = self._rows[n]
            if self._since_puback(n) <= overdue and not topic_waits(held.row.topic, skips):
                # Its "sent" mark waits for a commit that keeps failing: due again on
                # its own schedule all the same (review of 2026-12-04: a PUBACKed
                # panic was never re-sent while the disk stayed full).
                again.add(n)
                out.append(held)
        for held in self._ripe(ripe):
            n = held.row.n
            if n not in again and n not in exclude and not topic_waits(held.row.topic, skips):
                out.append(held)
        out.sort(key=lambda h: (h.row.priority, h.row.attempts > 0 or h.row.n in again, h.row.n))
        share = len(again) if resends is None else resends
        chosen: list[_Held] = []
        for held in out:
            if len(chosen) == limit:
                break
            if held.row.n in again:
                if share <= 0:
                    continue
                share -= 1
            chosen.append(held)
        for held in chosen:
            held.offered = True
            if held.row.n in again:  # a re-send, not due again before its own PUBACK
                held.pubacked_at = None
                self._waiting.discard(held.row.n)
                held.row = replace(held.row, attempts=held.row.attempts + 1)
        return [h.row for h in chosen]

    def resend_now(self, ns: Iterable[int] | None = None) -> None:
        """These held re-sends (every one when None) did not reach the broker (refused,
        or the connection was lost): due again at once."""
        keys = self._rows.keys() if ns is None else ns
        for n in keys:
            held = self._rows.get(n)
            if (
                held is not None
                and held.row.attempts
                and held.row.track_ack
                and held.pubacked_at is None
                and not held.acked
            ):
                held.pubacked_at = float("-inf")
                held.row = replace(held.row, attempts=held.row.attempts - 1)  # it did not go
                self._track(held)
