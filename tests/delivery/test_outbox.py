"""Outbox on a real SQLite file: durable, gap-free seq, priority order, restart-safe."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from pathlib import Path

import pytest

from gateway.delivery.outbox import Outbox
from gateway.delivery.outbox.store import MARKS_RIDING
from gateway.errors import OutboxError
from gateway.events.model import EventFactory
from tests.helpers import assert_valid_event, eventually

FACTORY = EventFactory("campus/s1/gw1", lambda: True)


def _panic(n: int):  # type: ignore[no-untyped-def]
    return FACTORY.make("alarm.panic", device="io", subject=f"Z{n}", state="active")


def _beat(n: int):  # type: ignore[no-untyped-def]
    return FACTORY.make("camera.status", device="cam1", subject="cam1", state="instant")


async def test_concurrent_appends_get_gap_free_seq_in_few_commits(tmp_path: Path) -> None:
    async with Outbox(tmp_path / "o.sqlite") as outbox:
        stored = await asyncio.gather(*(outbox.append(_beat(i)) for i in range(200)))
        seqs = sorted(e.seq for e in stored if e.seq is not None)
        assert seqs == list(range(1, 201))
        assert outbox.commits < 200  # group commit batched them
        for event in stored[:3]:
            assert_valid_event(json.loads(event.to_json()))


async def test_pending_is_priority_then_seq_and_sent_rows_leave(tmp_path: Path) -> None:
    async with Outbox(tmp_path / "o.sqlite") as outbox:
        for i in range(5):
            await outbox.append(_beat(i))
        panic = await outbox.append(_panic(1))
        rows = await outbox.pending(10)
        assert rows[0].id == panic.id and rows[0].priority == 1
        assert [r.seq for r in rows[1:]] == [1, 2, 3, 4, 5]
        assert [r.n for r in rows] == [6, 1, 2, 3, 4, 5]
        assert [r.seq for r in await outbox.pending(3, exclude=[6, 1])] == [2, 3, 4]
        await outbox.mark_sent([6, 1])
        assert await outbox.pending_count() == 4
        stored = time.time()
        beat = (await outbox.pending(1))[0].id
        # The center acks the panic (an alarm: its stored time, for the ack-latency
        # histogram); a heartbeat-like event awaits no ack and is left out.
        ((acked, stored_at),) = await outbox.mark_acked([panic.id, beat, "unknown"])
        assert acked == panic.id and stored - 5 < stored_at <= stored


async def test_rows_and_seq_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    async with Outbox(path) as outbox:
        stream = outbox.stream
        first = await outbox.append(_panic(1))
    with sqlite3.connect(path) as db:
        # A rollback journal, never WAL (the journal mode itself is per connection:
        # tests/runtime/test_durable.py checks the persistent journal).
        assert db.execute("PRAGMA journal_mode").fetchone()[0] != "wal"
    async with Outbox(path) as outbox:
        assert outbox.stream == stream
        second = await outbox.append(_panic(2))
        assert (first.seq, second.seq) == (1, 2)
        assert [r.id for r in await outbox.pending(10)] == [first.id, second.id]


async def test_second_daemon_on_same_outbox_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    async with Outbox(path):
        with pytest.raises(OutboxError, match="in use by another"):
            async with Outbox(path):
                pass


async def test_purge_keeps_the_record_and_every_unacked_alarm(tmp_path: Path) -> None:
    async with Outbox(tmp_path / "o.sqlite") as outbox:
        acked = await outbox.append(_panic(1))
        unacked = await outbox.append(_panic(2))
        beat = await outbox.append(_beat(3))
        pending = await outbox.append(_beat(4))
        rows = {r.id: r.n for r in await outbox.pending(10)}
        await outbox.mark_sent([rows[acked.id], rows[unacked.id], rows[beat.id]])
        await outbox.mark_acked([acked.id])
        assert await outbox.purge(retention=3600) == 0  # all younger than the retention
        await asyncio.sleep(0.05)
        assert await outbox.purge(retention=0.01) == 2  # the acked alarm and the sent beat
        left = {r.id for r in await outbox.pending(10)}
        assert left == {pending.id}
        assert await outbox.unacked_count() == 1  # the unacked alarm is kept, forever


async def test_unacked_alarm_comes_due_again_after_the_ack_timeout(tmp_path: Path) -> None:
    async with Outbox(tmp_path / "o.sqlite", ack_timeout=0.2) as outbox:
        panic = await outbox.append(_panic(1))
        [row] = await outbox.pending(10)
        await outbox.mark_sent([row.n])
        assert await outbox.pending(10) == []
        due_in = await outbox.next_due_in()
        assert due_in is not None and 0 < due_in <= 0.2
        await asyncio.sleep(0.25)
        [again] = await outbox.pending(10)
        assert (again.id, again.attempts, again.track_ack) == (panic.id, 1, True)
        await outbox.mark_acked([panic.id])
        await asyncio.sleep(0.25)
        assert await outbox.pending(10) == [] and await outbox.next_due_in() is None


async def test_a_resend_never_goes_before_a_first_send_of_its_priority(tmp_path: Path) -> None:
    """Issue 14: overdue alarms ordered first made a slow center's re-sends a storm."""
    async with Outbox(tmp_path / "o.sqlite", ack_timeout=0.1) as outbox:
        old = await outbox.append(_panic(1))
        [row] = await outbox.pending(10)
        await outbox.mark_sent([row.n])
        beat = await outbox.append(_beat(2))
        await asyncio.sleep(0.15)  # the old panic's ack is overdue: it is due again
        new = await outbox.append(_panic(3))
        due = await outbox.pending(10)
        assert [(r.id, r.attempts) for r in due] == [(new.id, 0), (old.id, 1), (beat.id, 0)]
        assert [r.id for r in await outbox.pending(1)] == [new.id]


async def test_resends_are_paced_to_the_share_asked_and_the_rest_stay_due(
    tmp_path: Path,
) -> None:
    """Issue 14: a slow center's overdue alarms come a share at a time, not as a storm;
    first sends are not limited by it."""
    async with Outbox(tmp_path / "o.sqlite", ack_timeout=0.1, mark_linger=0) as outbox:
        panics = [await outbox.append(_panic(i)) for i in range(6)]
        await outbox.mark_sent([r.n for r in await outbox.take(10)])
        await asyncio.sleep(0.15)  # all six are overdue
        beats = [await outbox.append(_beat(i)) for i in range(3)]
        first = await outbox.take(10, resends=2)
        assert [r.id for r in first] == [p.id for p in panics[:2]] + [b.id for b in beats]
        rest = await outbox.take(10, exclude={r.n for r in first}, resends=10)
        assert [r.id for r in rest] == [p.id for p in panics[2:]]
        assert await outbox.take(10, exclude={r.n for r in first + rest}, resends=0) == []


async def test_heartbeat_counts_are_read_beside_the_writer(tmp_path: Path) -> None:
    """Depth, oldest pending row and unacked alarms, on the read-only connection."""
    async with Outbox(tmp_path / "o.sqlite") as outbox:
        assert (await outbox.pending_count(), await outbox.oldest_pending_age()) == (0, None)
        beat = await outbox.append(_beat(1))
        await asyncio.sleep(0.2)
        panic = await outbox.append(_panic(2))
        age = await outbox.oldest_pending_age()
        assert age is not None and age >= 0.2  # the priority 5 beat, older than the panic
        assert (await outbox.pending_count(), await outbox.unacked_count()) == (2, 0)
        rows = {r.id: r.n for r in await outbox.pending(10)}
        await outbox.mark_sent([rows[panic.id]])
        # Sent, not acked: counted as unacked, no longer pending; the beat is the oldest.
        assert (await outbox.pending_count(), await outbox.unacked_count()) == (1, 1)
        await outbox.mark_sent([rows[beat.id]])
        await outbox.mark_acked([panic.id])
        assert await outbox.oldest_pending_age() is None
        assert (await outbox.pending_count(), await outbox.unacked_count()) == (0, 0)


def _fault(n: int):  # type: ignore[no-untyped-def]
    return FACTORY.make("fault.device_offline", device="io", subject=f"M{n}", state="active")


async def test_priority_3_stays_open_until_acked_and_a_stream_ack_closes_up_to_its_seq(
    tmp_path: Path,
) -> None:
    """Issue 10 item 4: a fault is acked end to end like an alarm; a center may ack a
    whole stream up to a seq, and only what the broker confirmed in that stream."""
    async with Outbox(tmp_path / "o.sqlite", ack_timeout=0.1) as outbox:
        fault = await outbox.append(_fault(1))  # seq 1, P3
        beat = await outbox.append(_beat(2))  # seq 2, P5: never acked
        panic = await outbox.append(_panic(3))  # seq 3, P1
        late = await outbox.append(_fault(4))  # seq 4, not yet published
        assert await outbox.acked_up_to() == 0 and outbox.last_seq == 4
        rows = {r.id: r for r in await outbox.pending(10)}
        assert rows[fault.id].track_ack and not rows[beat.id].track_ack
        await outbox.mark_sent([rows[fault.id].n, rows[beat.id].n, rows[panic.id].n])
        await asyncio.sleep(0.15)
        assert {r.id for r in await outbox.pending(10)} == {fault.id, panic.id, late.id}
        assert await outbox.mark_acked_through("another-stream", 4) == []
        acked = await outbox.mark_acked_through(outbox.stream, 4)
        assert {event_id for event_id, _ in acked} == {fault.id, panic.id}  # not the unsent
        assert await outbox.acked_up_to() == 3
        await asyncio.sleep(0.15)
        assert [r.id for r in await outbox.pending(10)] == [late.id]
        await outbox.mark_sent([rows[late.id].n])
        assert [i for i, _ in await outbox.mark_acked([late.id])] == [late.id]
        assert await outbox.acked_up_to() == 4


def _of(type_: str, n: int):  # type: ignore[no-untyped-def]
    return FACTORY.make(type_, device="io", subject=f"S{n}", state="active")


async def test_a_full_outbox_of_alarms_and_faults_sheds_only_priority_4_and_5(
    tmp_path: Path,
) -> None:
    """The capacity rule (GB 50394 §5.2.2): past the caps only priority 5, then 4, are
    shed; priority 1-3 stay, however far past the cap they go."""
    types = ["alarm.panic", "alarm.intrusion", "fault.line", "output.switched", "camera.status"]
    async with Outbox(tmp_path / "o.sqlite", max_rows=100, alarm_reserve_rows=50) as outbox:
        stored = await asyncio.gather(*(outbox.append(_of(types[i % 5], i)) for i in range(250)))
        kept = {e.id for e in stored if e.priority <= 3}
        assert len(kept) == 150 and outbox.stats.rows >= 150  # 1.5 x the cap: none shed
        assert await outbox.known_ids(e.id for e in stored) >= kept
        report = outbox.take_shed()
        assert report is not None and set(report.by_priority) == {4, 5}
        assert outbox.stats.rows == 150  # every priority 4-5 row went to make room


async def test_seq_has_no_gap_after_any_event_type(tmp_path: Path) -> None:
    """Every type the gateway emits takes exactly the next seq, whatever came before."""
    from gateway.events.codes import KINDS

    types = sorted(KINDS)
    order = [*types, *reversed(types), *types]  # every type after every neighbour
    async with Outbox(tmp_path / "o.sqlite") as outbox:
        stored = [await outbox.append(_of(t, i)) for i, t in enumerate(order)]
        stored += await asyncio.gather(*(outbox.append(_of(t, i)) for i, t in enumerate(types)))
    assert sorted(e.seq for e in stored if e.seq is not None) == list(range(1, len(stored) + 1))
    assert [e.seq for e in stored[: len(order)]] == list(range(1, len(order) + 1))


async def test_replay_makes_what_is_held_due_again_and_names_what_is_not(tmp_path: Path) -> None:
    async with Outbox(tmp_path / "o.sqlite") as outbox:
        stored = [await outbox.append(_beat(i)) for i in range(3)]
        await outbox.mark_sent([r.n for r in await outbox.pending(10)])
        await asyncio.sleep(0.05)
        assert await outbox.purge(retention=0.01) == 3  # delivered and old: purged
        later = [await outbox.append(_beat(i)) for i in range(3)]
        await outbox.mark_sent([r.n for r in await outbox.pending(1)])  # seq 4 sent
        assert await outbox.replay(1, 6) == (1, [1, 2, 3])
        # seq 4 again, after the first sends of its priority (it was sent once)
        assert [r.seq for r in await outbox.pending(10)] == [5, 6, 4]
        assert [e.seq for e in [*stored, *later]] == [1, 2, 3, 4, 5, 6]


async def test_puback_and_ack_marks_ride_in_the_next_events_commit(tmp_path: Path) -> None:
    """Marks cost no commit (no fsync) of their own: queued while the writer waits for
    more, they go in the transaction of the next event (issue 14)."""
    async with Outbox(tmp_path / "o.sqlite", mark_linger=30.0) as outbox:
        first = await outbox.append(_panic(1))
        (row,) = await outbox.pending(10)
        before = outbox.commits
        marks = asyncio.gather(outbox.mark_sent([row.n]), outbox.mark_acked([first.id]))
        await asyncio.sleep(0.2)  # long enough for a commit of their own, were there one
        assert outbox.commits == before and not marks.done()
        second = await outbox.append(_beat(2))
        await marks
        assert outbox.commits == before + 1  # the event and both marks: one transaction
        assert [r.id for r in await outbox.pending(10)] == [second.id]


async def test_a_row_puback_and_acked_in_one_commit_is_off_the_resend_schedule(
    tmp_path: Path,
) -> None:
    """The usual case while marks linger: the PUBACK's mark and the center's ack of an
    alarm commit together. The row is closed, so nothing may wait to re-send it (it
    stayed on the schedule for good: a drain's half a million entries, issue 14)."""
    async with Outbox(tmp_path / "o.sqlite", mark_linger=30.0) as outbox:
        first = await outbox.append(_panic(1))
        (row,) = await outbox.pending(10)
        marks = asyncio.gather(outbox.mark_sent([row.n]), outbox.mark_acked([first.id]))
        await asyncio.sleep(0)  # both queued before the next event's commit takes them
        await outbox.append(_beat(2))
        _, (acked,) = await asyncio.wait_for(marks, 10)
        assert acked[0] == first.id  # acked in the commit that recorded its PUBACK
        assert row.n not in outbox.resends and len(outbox.resends) == 0
        assert await outbox.next_due_in() is None  # nothing waits to be sent again


def _sent(path: Path, n: int) -> tuple[float | None, int]:
    """``(sent_at, attempts)`` of row ``n``, read on a connection of its own."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        row = conn.execute("SELECT sent_at, attempts FROM messages WHERE n = ?", (n,)).fetchone()
    return row[0], row[1]


async def test_a_mark_never_joins_an_op_queued_before_the_row_it_marks(tmp_path: Path) -> None:
    """A commit's PUBACK marks share one op. The writer holds a drain's marks while an
    alarm commits alone and fails (another process holds the lock); a new event is
    held, offered from memory, sent and PUBACKed meanwhile. Its mark joined the old
    op, which commits before the event's insert: the UPDATE found no row, the mark
    was lost and the row sent again (a fresh review of the shared op)."""
    path = tmp_path / "o.sqlite"
    async with Outbox(path, mark_linger=30.0) as outbox:
        for i in range(40):
            await outbox.append(_beat(i))
        drained = await outbox.take(100)
        shared = outbox.mark_sent_soon([drained[0].n])
        for row in drained[1:]:
            assert outbox.mark_sent_soon([row.n]) is shared  # one op, one future
        # the writer has taken the op and waits for company (private: the batch)
        await eventually(lambda: any(op.future is shared for op in outbox._batch))
        blocker = sqlite3.connect(path, isolation_level=None, timeout=0)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            outbox.hold(_panic(1))
            await eventually(lambda: outbox.last_error is not None)  # its commit fails
            beat = outbox.hold(_beat(500))
            (row,) = [r for r in await outbox.take(10) if r.id == beat.id]  # from memory
            joined = outbox.mark_sent_soon([row.n])  # its PUBACK
            assert joined is not shared
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        await asyncio.wait_for(joined, 10)
        sent_at, attempts = _sent(path, row.n)
        assert sent_at is not None and attempts == 1
        assert beat.id not in [r.id for r in await outbox.pending(100)]


async def test_a_cancelled_caller_of_mark_sent_leaves_the_marks_sharing_its_commit(
    tmp_path: Path,
) -> None:
    """The marks of a commit share one future: a caller of ``mark_sent`` cancelled (a
    timeout) cancelled it for every mark, and each later PUBACK got a finished future,
    so the uplink released its row and sent it again in a tight loop (a fresh review:
    about 2,300 sends per row in 2 s)."""
    async with Outbox(tmp_path / "o.sqlite", mark_linger=30.0) as outbox:
        for i in range(3):
            await outbox.append(_beat(i))
        a, b, c = await outbox.take(10)
        fa = outbox.mark_sent_soon([a.n])
        waiter = asyncio.ensure_future(outbox.mark_sent([b.n]))
        await asyncio.sleep(0)  # the caller waits on the mark
        waiter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiter
        fc = outbox.mark_sent_soon([c.n])
        assert not fa.done() and not fc.done()
        await outbox.append(_beat(99))  # the commit that takes the marks
        await asyncio.wait_for(asyncio.gather(fa, fc), 10)
        assert all(_sent(outbox.path, row.n)[0] is not None for row in (a, b, c))
        assert await outbox.pending_count() == 1 and not outbox.marking


async def test_an_alarm_commits_alone_and_the_marks_queued_with_it_follow(
    tmp_path: Path,
) -> None:
    """A priority 1-2 event does not ride in the transaction of a drain's marks (a
    thousand or more): it commits alone, and they follow at once (issue 14: a live
    panic during a drain)."""
    async with Outbox(tmp_path / "o.sqlite", mark_linger=30.0) as outbox:
        for k in range(MARKS_RIDING + 1):
            await outbox.append(_beat(k + 1))
        rows = await outbox.pending(100)
        assert len(rows) == MARKS_RIDING + 1
        before = outbox.commits
        marks = asyncio.ensure_future(outbox.mark_sent([row.n for row in rows]))
        await asyncio.sleep(0)  # the marks are queued first
        panic = await outbox.append(_panic(99))
        assert outbox.commits == before + 1 and not marks.done()
        await marks
        assert outbox.commits == before + 2
        assert [r.id for r in await outbox.pending(100)] == [panic.id]


async def test_a_replay_queued_behind_marks_is_not_undone_by_an_alarm_committing_alone(
    tmp_path: Path,
) -> None:
    """The center asks for rows again after their PUBACK marks were queued; a panic
    comes and commits alone, ahead of the marks. The replay went with the panic, and
    the marks committed after it marked every replayed row sent again: the replay was
    lost in full (a review). It now follows the marks queued before it."""
    path = tmp_path / "o.sqlite"
    async with Outbox(path, mark_linger=0.5) as outbox:
        stored = [await outbox.append(_beat(i)) for i in range(MARKS_RIDING + 8)]
        rows = await outbox.take(100)
        marks = outbox.mark_sent_soon([r.n for r in rows])  # their PUBACKs came
        replay = asyncio.ensure_future(outbox.replay(stored[0].seq, stored[-1].seq))
        await asyncio.sleep(0)  # the replay is queued; the writer holds the marks
        assert [op.kind for op in outbox._batch] == ["sent"] and outbox.waiting == 1
        outbox.hold(_panic(99))
        await asyncio.wait_for(marks, 10)
        again, missing = await asyncio.wait_for(replay, 10)
        assert (again, missing) == (len(stored), [])
        pending = {r.id for r in await outbox.pending(100)}
        assert {e.id for e in stored} <= pending


async def test_a_few_marks_ride_in_an_alarms_commit(tmp_path: Path) -> None:
    """A contact change's marks (its PUBACK, the center's ack) cost no fsync of their
    own: they wait for the next event and share its commit, alarm or not (issue 14)."""
    async with Outbox(tmp_path / "o.sqlite", mark_linger=30.0) as outbox:
        first = await outbox.append(_panic(1))
        (row,) = await outbox.pending(10)
        before = outbox.commits
        marks = asyncio.gather(outbox.mark_sent([row.n]), outbox.mark_acked([first.id]))
        await asyncio.sleep(0)  # the marks are queued first
        second = await outbox.append(_panic(2))
        await asyncio.wait_for(marks, 10)
        assert outbox.commits == before + 1
        assert [r.id for r in await outbox.pending(10)] == [second.id]


async def test_a_mark_alone_is_committed_after_the_mark_linger(tmp_path: Path) -> None:
    async with Outbox(tmp_path / "o.sqlite", mark_linger=0.05) as outbox:
        first = await outbox.append(_panic(1))
        (row,) = await outbox.pending(10)
        await asyncio.wait_for(outbox.mark_sent([row.n]), 10)
        assert first.id not in {r.id for r in await outbox.pending(10)}
