"""The due queue: first sends in memory, the file read only to page in a backlog (issue 14).

On a real outbox file. The queue is made tiny (a page of 2 rows, room for 4) so the
frontier, paging and the bound are crossed in every example.
"""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
import threading
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.delivery.outbox import Outbox, PendingRow
from gateway.delivery.outbox.due_queue import DueQueue
from gateway.delivery.outbox.reads import _PAGES_PER_TAKE
from gateway.events.model import EventFactory
from gateway.runtime.onthread import run_on
from tests.helpers import eventually

FACTORY = EventFactory("campus/s1/gw1", lambda: True)
# One event type per priority the tests mix.
TYPES = {1: "alarm.panic", 2: "alarm.intrusion", 3: "fault.line", 5: "camera.status"}


def _event(priority: int, i: int):  # type: ignore[no-untyped-def]
    return FACTORY.make(TYPES[priority], device="io", subject=f"Z{i}", state="active")


def _due_in_file(path: Path, out: set[int]) -> list[int]:
    """Row keys of first sends the file holds, in send order, less those out."""
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT n FROM messages WHERE sent_at IS NULL ORDER BY priority, n"
        ).fetchall()
    return [n for (n,) in rows if n not in out]


def _tiny(outbox: Outbox) -> None:
    outbox.due = DueQueue(max_rows=4, max_bytes=1 << 20, page_rows=2)


PRIORITIES = st.lists(st.sampled_from(sorted(TYPES)), min_size=1, max_size=6)
OPS = st.lists(
    st.one_of(
        st.tuples(
            st.just("store"), st.lists(st.sampled_from(sorted(TYPES)), min_size=1, max_size=6)
        ),
        st.tuples(st.just("take"), st.integers(1, 5)),
        st.tuples(st.just("sent"), st.integers(0, 4)),
        st.tuples(st.just("release"), st.integers(0, 4)),
        st.tuples(st.just("reconnect"), st.just(0)),
    ),
    min_size=1,
    max_size=30,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(OPS)
def test_what_is_taken_is_always_the_head_of_the_files_first_sends(ops: list) -> None:  # type: ignore[type-arg]
    """Whatever mix of commits, takes, PUBACK marks, refusals and reconnects: each take
    returns the first rows due in the file in send order (priority, then creation),
    never one that is out, and never nothing while something is due."""

    async def run(path: Path) -> None:
        async with Outbox(path, mark_linger=0) as outbox:
            _tiny(outbox)
            out: dict[int, PendingRow] = {}
            made = 0
            for op, arg in ops:
                if op == "store":
                    await asyncio.gather(
                        *(outbox.append(_event(p, made + i)) for i, p in enumerate(arg))
                    )
                    made += len(arg)
                elif op == "take":
                    due = _due_in_file(path, set(out))
                    taken = await outbox.take(arg, exclude=set(out))
                    assert [r.n for r in taken] == due[: len(taken)]
                    # A take reads at most _PAGES_PER_TAKE pages: when every row they
                    # bring is out, it may return nothing; the next take reads on.
                    budget = _PAGES_PER_TAKE * outbox.due.page_rows
                    assert taken or not due or len(out) >= budget, "nothing taken while due"
                    out.update((r.n, r) for r in taken)
                elif op == "sent" and out:
                    ns = sorted(out)[:arg]
                    await outbox.mark_sent(ns)
                    for n in ns:
                        del out[n]
                elif op == "release" and out:
                    for n in sorted(out)[:arg]:
                        outbox.release(out.pop(n))
                elif op == "reconnect":
                    outbox.redrive()  # what is in flight stays out: the uplink excludes it

    with tempfile.TemporaryDirectory() as work:
        asyncio.run(run(Path(work) / "o.sqlite"))


async def test_rows_committed_while_the_queue_has_room_are_taken_without_a_read(
    tmp_path: Path,
) -> None:
    """The uplink does not read the file per message: once the backlog is paged in,
    new rows come from the writer's commits alone."""
    async with Outbox(tmp_path / "o.sqlite", mark_linger=0) as outbox:
        assert await outbox.take(20) == []  # the first take pages the (empty) file
        reads = outbox.due.pages
        for i in range(50):
            stored = await outbox.append(_event(2, i))
            (row,) = await outbox.take(20)
            assert row.id == stored.id
            await outbox.mark_sent([row.n])
        assert outbox.due.pages == reads


async def test_a_backlog_is_read_a_page_at_a_time_and_the_queue_stays_bounded(
    tmp_path: Path,
) -> None:
    async with Outbox(tmp_path / "o.sqlite", mark_linger=0) as outbox:
        outbox.due = DueQueue(max_rows=40, page_rows=20)
        await asyncio.gather(*(outbox.append(_event(5, i)) for i in range(200)))
        assert len(outbox.due) == 0  # the first take has not paged yet: all in the file
        sent: list[int] = []
        while rows := await outbox.take(7):
            assert len(outbox.due) <= 40 + 20  # a page may pass the bound once
            sent += [r.n for r in rows]
            await outbox.mark_sent([r.n for r in rows])
        assert sent == sorted(sent) and len(sent) == 200
        assert outbox.due.pages <= 200 // 20 + 2


async def test_an_alarm_committed_behind_a_full_queue_still_goes_first(tmp_path: Path) -> None:
    """A row that does not fit lowers the frontier to itself: the queue's rows beyond it
    wait until it has been read back, so a panic is never passed by a backlog."""
    async with Outbox(tmp_path / "o.sqlite", mark_linger=0) as outbox:
        outbox.due = DueQueue(max_rows=3, page_rows=4)
        await asyncio.gather(*(outbox.append(_event(5, i)) for i in range(10)))
        (first,) = await outbox.take(1)  # pages 4 rows in: the queue is full with 3
        await asyncio.gather(*(outbox.append(_event(5, 10 + i)) for i in range(2)))
        panic = await outbox.append(_event(1, 99))
        assert outbox.due.frontier == (1, panic_n := first.n + 12)  # not queued: no room
        taken = await outbox.take(2)
        assert taken[0].id == panic.id and taken[0].n == panic_n
        assert taken[1].n == first.n + 1


async def test_an_alarm_in_memory_goes_without_waiting_for_a_read_of_the_file(
    tmp_path: Path,
) -> None:
    """A take that would run short waits for the next page of a backlog, and that read
    queues on the writer's connection behind whatever it runs. During a drain that is
    the commit of a thousand marks right after a live panic's own commit: the panic,
    in memory already, waited 60 ms with nothing in flight (issue 14). An alarm in
    memory is returned at once; the page comes with the next take."""
    async with Outbox(tmp_path / "o.sqlite", mark_linger=0) as outbox:
        outbox.due = DueQueue(max_rows=40, page_rows=20)
        await asyncio.gather(*(outbox.append(_event(5, i)) for i in range(200)))
        await outbox.take(30)  # a page in, the next one read in the background
        await eventually(lambda: outbox._prefetching is None or outbox._prefetching.done())
        panic = await outbox.append(_event(1, 999))
        gate = threading.Event()  # the writer's connection is busy until the test says
        busy = asyncio.ensure_future(run_on(outbox._require_db(), lambda _: gate.wait(30)))
        try:
            rows = await asyncio.wait_for(outbox.take(40), 10)
        finally:
            gate.set()
            await busy
        assert rows[0].id == panic.id
        assert all(r.priority == 5 for r in rows[1:])  # what memory held, nothing read
        more = await outbox.take(40)  # the read, now the connection is free
        assert more and more[0].n == max(r.n for r in rows[1:]) + 1


async def test_an_alarm_in_hand_never_lets_telemetry_pass_an_overdue_alarm_resend(
    tmp_path: Path,
) -> None:
    """The take that returns an alarm from memory at once does not read the re-sends
    due: what would go after the first of them waits for the next take, so an unacked
    panic's re-send is never passed by priority-5 rows (a fresh review)."""
    async with Outbox(tmp_path / "o.sqlite", ack_timeout=0.1, mark_linger=0) as outbox:
        old = await outbox.append(_event(1, 1))
        [row] = await outbox.take(10)
        await outbox.mark_sent([row.n])
        for i in range(10):
            await outbox.append(_event(5, i))
        await eventually(lambda: outbox.resends.overdue_count() == 1)  # its ack is late
        new = await outbox.append(_event(1, 3))
        got = await outbox.take(4)
        assert [r.id for r in got] == [new.id]  # the alarm at once, nothing behind the re-send
        rest = await outbox.take(4)
        assert [(r.id, r.attempts) for r in rest[:1]] == [(old.id, 1)]
        assert [r.priority for r in rest[1:]] == [5, 5, 5]


async def test_an_alarm_in_hand_behind_an_overdue_panic_resend_waits_for_its_read(
    tmp_path: Path,
) -> None:
    """An intrusion in memory, an unacked panic overdue: the panic's re-send goes
    first, so it must be read now. Skipped, the take answered nothing and put the
    intrusion back, for ever, the send loop waking at once each time (a review: the
    intrusion never sent, a core spinning)."""
    async with Outbox(tmp_path / "o.sqlite", ack_timeout=0.1, mark_linger=0) as outbox:
        panic = await outbox.append(_event(1, 1))
        [row] = await outbox.take(10)
        await outbox.mark_sent([row.n])
        await eventually(lambda: outbox.resends.overdue_count() == 1)  # the center is silent
        intrusion = await outbox.append(_event(2, 2))
        got = await outbox.take(10, resends=2)  # as the uplink's send loop asks
        assert [(r.id, r.attempts) for r in got] == [(panic.id, 1), (intrusion.id, 0)]


async def test_the_next_page_of_a_backlog_is_read_while_the_take_returns(tmp_path: Path) -> None:
    """A take that has rows enough in memory returns them at once; the next page is read
    in the background (a read queues behind the writer's commit, and a live panic
    waited behind such reads during a drain). A take that runs short waits for it."""
    async with Outbox(tmp_path / "o.sqlite", mark_linger=0) as outbox:
        outbox.due = DueQueue(max_rows=40, page_rows=20)
        await asyncio.gather(*(outbox.append(_event(5, i)) for i in range(200)))
        first = await outbox.take(5)  # nothing in memory: this one waits for a page
        assert outbox.due.pages == 1 and len(outbox.due) == 15  # 15 < 40 // 2: more wanted
        second = await outbox.take(5)  # from memory, the read still on its way
        assert outbox.due.pages == 1
        await eventually(lambda: outbox.due.pages == 2)
        assert len(outbox.due) == 30
        rest = await outbox.take(40)  # short: reads (one read at a time) until full
        sent = [r.n for r in [*first, *second, *rest]]
        assert sent == list(range(sent[0], sent[0] + 50))


async def test_rows_in_flight_on_a_lost_connection_are_taken_again_after_a_page_read(
    tmp_path: Path,
) -> None:
    """A page read in the background when the uplink reconnects is dropped: applied
    after the rebuild, it marked a row in flight on the lost connection as out for
    good (found by the property above on 2026-12-05: the row was never taken again)."""
    async with Outbox(tmp_path / "o.sqlite", mark_linger=0) as outbox:
        _tiny(outbox)
        for i in range(4):
            await outbox.append(_event(1, i))
        out: dict[int, PendingRow] = {}
        for _ in range(3):  # the third take starts a page read in the background
            out.update((r.n, r) for r in await outbox.take(1, exclude=set(out)))
        outbox.redrive()  # reconnected: nothing is in flight any more
        first = out.pop(min(out))  # its PUBLISH went with the lost connection
        outbox.release(first)
        taken = await outbox.take(1, exclude=set(out))
        assert [r.n for r in taken] == [first.n]
