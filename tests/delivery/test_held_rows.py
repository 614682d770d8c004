"""Held rows answer as a plain scan of every held row would (``gateway/delivery/outbox/held.py``).

``HeldRows`` indexes the rows waiting for the center's ack and visits only the prefix
of rows old enough to offer; this property drives it and a model that looks at every
row, step for step, with a stepped clock, and compares every answer.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from gateway.delivery.outbox.held import HeldRows
from gateway.delivery.outbox.rows import PendingRow, topic_waits

OFFER_AFTER = 1.0
ACK_TIMEOUT = 30.0
TOPICS = ("events/alarm/panic", "events/alarm/intrusion", "events/camera/status")


@dataclass
class _Model:
    n: int
    seq: int
    id: str
    priority: int
    topic: str
    track: bool
    since: float
    attempts: int = 0
    offered: bool = False
    pubacked_at: float | None = None
    acked: bool = False

    def waits_since(self) -> float | None:
        return self.pubacked_at if self.track and not self.acked else None


class HeldRowsAgainstAScan(RuleBasedStateMachine):
    @initialize()
    def start(self) -> None:
        self.now = 1000.0
        self.held = HeldRows(OFFER_AFTER, clock=lambda: self.now)
        self.model: dict[int, _Model] = {}
        self.next_n = 0

    def _pick(self, data: st.DataObject) -> list[int]:
        return data.draw(st.lists(st.sampled_from(sorted(self.model)), unique=True))

    @rule(
        priority=st.integers(1, 5),
        track=st.booleans(),
        topic=st.sampled_from(TOPICS),
        k=st.integers(1, 3),
    )
    def hold(self, priority: int, track: bool, topic: str, k: int) -> None:
        for _ in range(k):
            self.next_n += 1
            n = self.next_n
            row = PendingRow(n, n, f"id{n}", priority, topic, b"{}", 0, track, "s1")
            self.held.add(row)
            self.model[n] = _Model(n, n, f"id{n}", priority, topic, track, self.now)

    @rule(dt=st.sampled_from([0.0, 0.4, 0.7, 1.5, 29.0, 31.0]))
    def tick(self, dt: float) -> None:
        self.now += dt

    @rule(data=st.data())
    def pubacked(self, data: st.DataObject) -> None:
        ns = self._pick(data) if self.model else []
        self.held.pubacked(ns)
        for n in ns:
            self.model[n].pubacked_at = self.now

    @rule()
    def pubacked_every_row(self) -> None:
        self.held.pubacked(list(self.model))
        for m in self.model.values():
            m.pubacked_at = self.now

    @rule(data=st.data())
    def acked(self, data: st.DataObject) -> None:
        ids = {self.model[n].id for n in self._pick(data)} if self.model else set()
        got = self.held.acked(ids)
        want = [m.n for m in self.model.values() if m.id in ids]
        for n in want:
            self.model[n].acked = True
        assert got == want

    @rule(seq=st.integers(0, 40))
    def acked_through(self, seq: int) -> None:
        got = self.held.acked_through(seq)
        want = []
        for m in self.model.values():
            confirmed = m.pubacked_at is not None or m.attempts > 0
            if confirmed and m.seq <= seq and not m.acked:
                m.acked = True
                want.append((m.n, m.id))
        assert got == want

    @rule(data=st.data())
    def committed(self, data: st.DataObject) -> None:
        ns = self._pick(data) if self.model else []
        got = [(h.row.n, h.row.attempts, h.pubacked_at, h.acked) for h in self.held.committed(ns)]
        want = []
        for n in ns:
            m = self.model.pop(n)
            if m.track:
                want.append((n, m.attempts, m.pubacked_at, m.acked))
        assert got == want

    @rule(data=st.data(), every=st.booleans())
    def resend_now(self, data: st.DataObject, every: bool) -> None:
        ns = None if every or not self.model else self._pick(data)
        self.held.resend_now(ns)
        for n in self.model if ns is None else ns:
            m = self.model[n]
            if m.attempts and m.track and m.pubacked_at is None and not m.acked:
                m.pubacked_at = float("-inf")
                m.attempts -= 1

    @rule(
        data=st.data(),
        limit=st.integers(1, 8),
        now=st.booleans(),
        skip=st.sampled_from([(), ("events/camera/",), ("events/alarm/panic",), ("",)]),
        resends=st.one_of(st.none(), st.integers(0, 3)),
    )
    def due(
        self, data: st.DataObject, limit: int, now: bool, skip: tuple[str, ...], resends: int | None
    ) -> None:
        exclude = set(self._pick(data)) if self.model else set()
        got = self.held.due(
            limit, now=now, exclude=exclude, skip_topics=skip, ack_timeout=ACK_TIMEOUT,
            resends=resends,
        )  # fmt: skip
        ripe = float("inf") if now else self.now - OFFER_AFTER
        again: set[int] = set()
        out: list[_Model] = []
        for m in self.model.values():
            if topic_waits(m.topic, list(skip)):
                continue
            since = m.waits_since()
            if since is not None and since <= self.now - ACK_TIMEOUT:
                again.add(m.n)
                out.append(m)
            elif m.since <= ripe and m.n not in exclude:
                out.append(m)
        out.sort(key=lambda m: (m.priority, m.attempts > 0 or m.n in again, m.n))
        share = len(again) if resends is None else resends
        # In send order, up to ``limit``, re-sends only while the share lasts.
        resends_left = share
        chosen: list[_Model] = []
        for m in out:
            resend = m.n in again
            if len(chosen) < limit and (resends_left > 0 or not resend):
                chosen.append(m)
                resends_left -= resend
        for m in chosen:
            m.offered = True
            m.attempts += m.n in again
            m.pubacked_at = None if m.n in again else m.pubacked_at
        assert [(r.n, r.attempts) for r in got] == [(m.n, m.attempts) for m in chosen]

    @invariant()
    def the_figures_agree(self) -> None:
        if not hasattr(self, "held"):
            return
        waiting = [t for m in self.model.values() if (t := m.waits_since()) is not None]
        want_next = None if not waiting else max(0.0, min(waiting) + ACK_TIMEOUT - self.now)
        assert self.held.next_resend_in(ACK_TIMEOUT) == want_next
        assert self.held.overdue(ACK_TIMEOUT) == sum(
            1 for t in waiting if t <= self.now - ACK_TIMEOUT
        )
        ripe = self.now - OFFER_AFTER
        assert self.held.waiting_offer() == any(
            not m.offered and m.since <= ripe for m in self.model.values()
        )
        assert len(self.held) == len(self.model)


HeldRowsAgainstAScan.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None
)
test_held_rows_answer_as_a_scan_of_every_row = HeldRowsAgainstAScan.TestCase


def test_held_re_sends_keep_to_their_share_of_the_window() -> None:
    """Three PUBACKed panics overdue, a share of one: one goes now, in ``n`` order, and
    the others stay due for the next take."""
    now = 0.0
    held = HeldRows(OFFER_AFTER, clock=lambda: now)
    for n in (1, 2, 3):
        held.add(PendingRow(n, n, f"id{n}", 1, TOPICS[0], b"{}", 0, True, "s1"))
    held.pubacked([1, 2, 3])
    now = ACK_TIMEOUT + 1
    first = held.due(8, now=False, exclude={1, 2, 3}, ack_timeout=ACK_TIMEOUT, resends=1)
    assert [(r.n, r.attempts) for r in first] == [(1, 1)]
    assert held.overdue(ACK_TIMEOUT) == 2
    rest = held.due(8, now=False, exclude={1, 2, 3}, ack_timeout=ACK_TIMEOUT, resends=5)
    assert [(r.n, r.attempts) for r in rest] == [(2, 1), (3, 1)]
