"""Held rows and streams on a real SQLite file (issue 11).

A write lock held by a real second connection, a process that dies without
closing the outbox (``os._exit``), and a file of the previous version's schema.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest

from gateway.delivery.outbox import Outbox
from gateway.delivery.outbox.due import Sent
from gateway.delivery.outbox.rows import PendingRow
from gateway.events.model import EventFactory
from tests.fault_support import wait_until
from tests.helpers import REPO_ROOT, lock_held

FACTORY = EventFactory("campus/s1/gw1", lambda: True)


def _panic(n: int):  # type: ignore[no-untyped-def]
    return FACTORY.make("alarm.panic", device="io", subject=f"P{n}", state="active")


def _file_rows(path: Path) -> list[tuple[int, str, str]]:
    """(seq, stream, id) of every event row in the file, in ``n`` order."""
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        rows = db.execute(
            "SELECT seq, stream, id FROM messages WHERE seq IS NOT NULL ORDER BY n"
        ).fetchall()
    return [(int(s), str(st), str(i)) for s, st, i in rows]


async def test_a_held_event_is_due_from_memory_and_stored_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    async with Outbox(path) as outbox:
        first = await outbox.append(_panic(1))
        blocker = sqlite3.connect(path, timeout=5, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # another process's write lock
        try:
            held = outbox.hold(_panic(2))
            assert held.seq == 2 and held.stream == outbox.stream
            await wait_until(lambda: outbox.last_error is not None, 5, "a commit failed")
            assert "locked" in str(outbox.last_error)
            due = await outbox.pending(10)
            assert [(r.id, r.seq) for r in due] == [(first.id, 1), (held.id, 2)]
            assert outbox.stalled_for() > 0 and len(outbox.held) == 1
            assert await outbox.pending_count() == 2  # the held row is counted
            assert [r[2] for r in _file_rows(path)] == [first.id]  # not in the file
            # Its PUBACK: recorded by a commit queued behind its own.
            marking = asyncio.create_task(outbox.mark_sent([due[1].n]))
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        await asyncio.wait_for(marking, 5)
        assert outbox.last_error is None and not outbox.held and outbox.stalled_for() == 0
        assert _file_rows(path) == [(1, outbox.stream, first.id), (2, outbox.stream, held.id)]
        assert [r.id for r in await outbox.pending(10)] == [first.id]  # sent is recorded


async def test_mark_sent_of_a_held_row_waits_for_its_commit(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    async with Outbox(path) as outbox:
        blocker = sqlite3.connect(path, timeout=5, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            held = outbox.hold(_panic(1))
            await wait_until(lambda: outbox.last_error is not None, 5, "a commit failed")
            [row] = await outbox.pending(10)
            marking = asyncio.create_task(outbox.mark_sent([row.n]))
            await wait_until(lambda: outbox.stalled_for() > 0.3, 5, "the commit waits")
            assert not marking.done() and row.id == held.id
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        await asyncio.wait_for(marking, 5)
        assert await outbox.pending(10) == []


_CRASH = """
import asyncio, os, sys
from gateway.delivery.outbox import Outbox
from gateway.delivery.outbox.due import Sent
from gateway.events.model import EventFactory

async def main() -> None:
    outbox = await Outbox(sys.argv[1]).__aenter__()
    factory = EventFactory("campus/s1/gw1", lambda: True)
    event = await outbox.append(factory.make("alarm.panic", device="io", subject="P1",
                                             state="active"))
    print(outbox.stream, event.id, flush=True)
    os._exit(0)  # dies without closing the outbox: a crash

asyncio.run(main())
"""


async def test_a_clean_stop_stores_what_is_held_once_a_lock_goes_within_its_grace(
    tmp_path: Path,
) -> None:
    """Another process holds the lock when the stop comes and lets it go 0.5 s later:
    the stop keeps trying for its 2 s, so the held panic is stored and the stop is
    clean (a fresh review of 2026-12-05: the first failed read gave up, and the panic,
    never acked, was not re-sent after the restart)."""
    path = tmp_path / "o.sqlite"
    outbox = Outbox(path)
    await outbox.__aenter__()
    async with lock_held(path) as release:
        held = outbox.hold(_panic(1))
        await wait_until(lambda: outbox.last_error is not None, 5, "a commit failed")
        asyncio.get_running_loop().call_later(0.5, release.set)
        await outbox.__aexit__(None, None, None)
    assert _file_rows(path) == [(1, outbox.stream, held.id)]
    async with Outbox(path) as again:  # the stop was clean: the stream carries on
        assert again.stream == outbox.stream and again.stream_change is None


async def test_a_start_after_an_unclean_stop_begins_a_new_stream(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    crash = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _CRASH, str(path), stdout=asyncio.subprocess.PIPE, cwd=REPO_ROOT
    )
    out, _ = await crash.communicate()
    assert crash.returncode == 0
    old_stream, old_id = out.decode().splitlines()[-1].split()
    async with Outbox(path) as outbox:
        assert outbox.stream != old_stream
        assert outbox.stream_change == (old_stream, "unclean stop")
        new = await outbox.append(_panic(2))
        assert new.seq == 1  # the new stream begins at 1
        assert [r.id for r in await outbox.pending(10)] == [old_id, new.id]
        stream = outbox.stream
    assert _file_rows(path) == [(1, old_stream, old_id), (1, stream, new.id)]
    async with Outbox(path) as outbox:  # after a clean stop the stream carries on
        assert outbox.stream == stream and outbox.stream_change is None
        assert (await outbox.append(_panic(3))).seq == 2


_V1_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE messages (
    n INTEGER PRIMARY KEY, seq INTEGER UNIQUE, id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL, priority INTEGER NOT NULL, topic TEXT NOT NULL,
    payload BLOB NOT NULL, size INTEGER NOT NULL, track_ack INTEGER NOT NULL,
    created_at REAL NOT NULL, sent_at REAL, acked_at REAL,
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX messages_pending ON messages (priority, n) WHERE sent_at IS NULL;
CREATE INDEX messages_unacked ON messages (sent_at)
    WHERE track_ack = 1 AND acked_at IS NULL AND sent_at IS NOT NULL;
CREATE INDEX messages_unacked_order ON messages (priority, n, sent_at)
    WHERE track_ack = 1 AND acked_at IS NULL AND sent_at IS NOT NULL;
CREATE INDEX messages_by_priority ON messages (priority, n);
CREATE INDEX messages_created ON messages (created_at);
INSERT INTO meta VALUES ('stream', 'OLDSTREAM'), ('last_seq', '2');
INSERT INTO messages (n, seq, id, type, priority, topic, payload, size, track_ack, created_at)
VALUES (1, 1, 'A', 'alarm.panic', 1, 'events/alarm/panic', X'7B7D', 2, 1, 1.0),
       (2, NULL, 'B', 'blob', 3, 'snapshots/A', X'FFD8', 2, 0, 1.0),
       (3, 2, 'C', 'alarm.panic', 1, 'events/alarm/panic', X'7B7D', 2, 1, 1.0);
"""


async def test_a_file_of_the_previous_version_is_migrated_with_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.executescript(_V1_SCHEMA)
    async with Outbox(path) as outbox:
        assert outbox.stream == "OLDSTREAM" and outbox.stream_change is None
        event = await outbox.append(_panic(4))
        assert event.seq == 3
        assert [r.id for r in await outbox.pending(10)][:3] == ["A", "C", event.id]
    assert _file_rows(path) == [(1, "OLDSTREAM", "A"), (2, "OLDSTREAM", "C"),
                                (3, "OLDSTREAM", event.id)]  # fmt: skip
    with contextlib.closing(sqlite3.connect(path)) as db:
        [(blob_stream,)] = db.execute("SELECT stream FROM messages WHERE n = 2").fetchall()
    assert blob_stream is None


async def test_a_held_alarm_is_due_again_unacked_while_commits_keep_failing(
    tmp_path: Path,
) -> None:
    """Its PUBACK's mark cannot commit, yet an alarm the center has not acked is due
    again every ``ack_timeout`` and counted unacked; the center's ack stops it (review
    of 2026-12-04: a panic PUBACKed on a full disk was never re-sent until the disk
    had room again)."""
    path = tmp_path / "o.sqlite"
    async with Outbox(path, ack_timeout=0.5) as outbox:
        blocker = sqlite3.connect(path, timeout=5, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # every commit fails from here
        try:
            held = outbox.hold(_panic(1))
            await wait_until(lambda: outbox.last_error is not None, 5, "a commit failed")
            [row] = await outbox.take(10)
            assert (row.id, row.attempts) == (held.id, 0)
            settling = {row.n}  # PUBACKed, its mark waiting: as the uplink excludes it
            marks = [outbox.mark_sent_soon([row.n])]
            assert await outbox.take(10, exclude=settling) == []
            assert await outbox.unacked_count() == 1
            wait = await outbox.next_due_in()
            assert wait is not None and wait <= 0.5
            assert await outbox.overdue_count() == 0
            await wait_until(lambda: _due_in_zero(outbox), 5, "the ack timeout")
            assert await outbox.overdue_count() == 1  # held, its PUBACK's mark waiting
            for attempt in (1, 2):
                resent = await _next_resend(outbox, f"re-send {attempt}", exclude=settling)
                assert (resent.id, resent.attempts) == (held.id, attempt)
                marks.append(outbox.mark_sent_soon([row.n]))  # its PUBACK
            acking = asyncio.create_task(outbox.mark_acked([held.id]))
            await _nothing_due_after_the_ack(outbox, marks, exclude=settling)
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        await _all_committed(outbox, *marks, acking)


async def test_held_re_sends_keep_to_their_share_and_one_cut_comes_back(tmp_path: Path) -> None:
    """While commits fail, held alarms due again take at most the uplink's share for
    re-sends, and one that a take's answer leaves out is due at the next take (a
    second review of 2026-12-04: 20 of 20 slots went to held re-sends, and a cut one
    was never due again)."""
    path = tmp_path / "o.sqlite"
    async with Outbox(path, ack_timeout=0.3) as outbox:
        backlog = await outbox.append(_panic(0))  # stored, not sent yet
        blocker = sqlite3.connect(path, timeout=5, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            for i in range(1, 11):
                outbox.hold(_panic(i))
            await wait_until(lambda: outbox.last_error is not None, 5, "a commit failed")
            first = await outbox.take(20)
            held = [r for r in first if r.id != backlog.id]
            outbox.release(next(r for r in first if r.id == backlog.id))
            settling = {r.n for r in held}
            marks = [outbox.mark_sent_soon(sorted(settling))]  # their PUBACKs
            await wait_until(lambda: _due_in_zero(outbox), 5, "the ack timeout")
            shared = await outbox.take(20, exclude=settling, resends=3)
            assert sum(1 for r in shared if r.attempts) == 3, shared
            assert [r.id for r in shared if not r.attempts] == [backlog.id]
            # One slot: the backlog's first send goes; the re-sends cut come back.
            for r in shared:
                outbox.release(r)
            [one] = await outbox.take(1, exclude=settling, resends=3)
            assert one.id == backlog.id
            rest = await outbox.take(20, exclude=settling | {one.n})
            assert sorted(r.id for r in rest) == sorted(r.id for r in held)
            assert all(r.attempts == 1 for r in rest)
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        await asyncio.wait_for(asyncio.gather(*marks), 10)


async def _due_in_zero(outbox: Outbox) -> bool:
    return await outbox.next_due_in() == 0.0


@pytest.mark.parametrize("ack", ["by id", "by stream"])
@pytest.mark.parametrize("lock", ["IMMEDIATE", "EXCLUSIVE"])
async def test_a_stored_alarm_pubacked_while_commits_fail_is_due_again_on_time(
    tmp_path: Path, ack: str, lock: str
) -> None:
    """An alarm stored before commits began to fail, PUBACKed after: due again every
    ``ack_timeout`` from its PUBACK though its mark cannot commit, counted unacked,
    and stopped by the center's ack before that ack commits (a second review of
    2026-12-04: six such panics went once in 20 s while held ones were re-sent) —
    also while the file cannot even be read (another process's ``EXCLUSIVE``
    transaction: a review of 2026-12-05 found 122 of 147 such alarms never re-sent)."""
    path = tmp_path / "o.sqlite"
    async with Outbox(path, ack_timeout=0.5) as outbox:
        stored = await outbox.append(_panic(1))
        [row] = await outbox.take(10)
        blocker = sqlite3.connect(path, timeout=5, isolation_level=None)
        blocker.execute(f"BEGIN {lock}")  # every commit fails from here (and every read)
        acking: asyncio.Future[list[tuple[str, float]]] | None = None
        try:
            assert await outbox.unacked_count() == 0
            marks = [outbox.pubacked(row)]  # the uplink's callback at its PUBACK
            settling = {row.n}  # as the uplink excludes it until the mark commits
            assert await outbox.take(10, exclude=settling, inflight=set()) == []
            assert await outbox.unacked_count() == 1
            for attempt in (1, 2):
                what = f"re-send {attempt}"
                resent = await _next_resend(outbox, what, exclude=settling, inflight=set())
                assert (resent.id, resent.attempts > 0) == (stored.id, True)
                assert await outbox.take(10, exclude=settling, inflight={row.n}) == []
                marks.append(outbox.pubacked(resent))  # its PUBACK
            assert outbox.last_error is not None
            if ack == "by id":
                acking = asyncio.ensure_future(outbox.mark_acked([stored.id]))
            else:
                assert stored.seq is not None
                acking = asyncio.ensure_future(outbox.mark_acked_through(outbox.stream, stored.seq))
            await _nothing_due_after_the_ack(outbox, marks, exclude=settling, inflight=set())
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        await _all_committed(outbox, *marks, acking)


async def _next_resend(outbox: Outbox, what: str, **take: Any) -> PendingRow:
    """The one row a take returns once it comes due (``take`` as ``Outbox.take``'s)."""
    found: list[PendingRow] = []

    async def due() -> bool:
        found[:] = await outbox.take(10, **take)
        return bool(found)

    await wait_until(due, 5, what)
    [row] = found
    return row


async def _nothing_due_after_the_ack(
    outbox: Outbox, marks: list[asyncio.Future[None]], **take: Any
) -> None:
    """Three ack timeouts (0.5 s) after the center's ack: nothing came due, nothing is
    counted unacked, and the first mark has still not committed."""
    await asyncio.sleep(1.5)  # an absence: no condition to wait for
    assert await outbox.take(10, **take) == []
    assert await outbox.unacked_count() == 0
    assert not marks[0].done()  # all of it while the commits still fail


async def _all_committed(outbox: Outbox, *writes: asyncio.Future[Any] | None) -> None:
    """The lock is gone: ``writes`` commit, and nothing is left pending or unacked."""
    await asyncio.wait_for(asyncio.gather(*(w for w in writes if w is not None)), 10)
    assert await outbox.unacked_count() == 0
    assert await outbox.pending(10) == []


async def test_a_stream_ack_in_memory_takes_off_only_that_streams_events(tmp_path: Path) -> None:
    """While commits fail, a stream ack takes off the schedule exactly the events of that
    stream up to its seq: one sent by the previous process (restored at start), and not
    an open event of an older stream sent now (a review of 2026-12-05: the first kept
    being re-sent, the second was taken off for good, its rows tagged with the current
    stream)."""
    path = tmp_path / "o.sqlite"
    async with Outbox(path) as first:
        before = await first.append(_panic(1))  # S1 seq 1: sent, never acked
        await first.pubacked((await first.take(10))[0])
        old = await first.append(_panic(2))  # S1 seq 2: never sent
        s1 = first.stream
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute("UPDATE meta SET value = '1' WHERE key = 'running'")  # an unclean stop
    async with Outbox(path, ack_timeout=0.5) as outbox:
        assert outbox.stream != s1
        new = await outbox.append(_panic(3))  # S2 seq 1
        rows = {r.id: r for r in await outbox.take(10)}
        assert set(rows) == {old.id, new.id}
        await asyncio.gather(*(outbox.pubacked(r) for r in rows.values()))
        assert await outbox.unacked_count() == 3
        blocker = sqlite3.connect(path, timeout=5, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # the acks cannot commit
        try:
            assert before.seq is not None
            acks = [
                asyncio.ensure_future(outbox.mark_acked_through(s1, before.seq)),
                asyncio.ensure_future(outbox.mark_acked_through(outbox.stream, 5)),
            ]
            resent = await _next_resend(outbox, "the old stream's event", inflight=set())
            assert resent.id == old.id
            assert await outbox.unacked_count() == 1
            marks = [outbox.pubacked(resent)]
            assert (await _next_resend(outbox, "again", inflight=set())).id == old.id
            assert not any(ack.done() for ack in acks)
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        await asyncio.wait_for(asyncio.gather(*marks, *acks), 10)
        assert await outbox.unacked_count() == 1  # the old stream's, as in the file


async def test_a_re_sends_puback_after_the_committed_ack_leaves_nothing_unacked(
    tmp_path: Path,
) -> None:
    """The center acks an alarm while its re-send is in flight, the ack commits, then the
    re-send's PUBACK comes: not counted unacked, never due again (a review of
    2026-12-05: counted unacked for an ack timeout)."""
    async with Outbox(tmp_path / "o.sqlite", ack_timeout=0.3) as outbox:
        stored = await outbox.append(_panic(1))
        await outbox.pubacked((await outbox.take(10))[0])
        again = await _next_resend(outbox, "the re-send", inflight=set())
        await outbox.mark_acked([stored.id])
        assert await outbox.unacked_count() == 0
        await outbox.pubacked(again)
        assert await outbox.unacked_count() == 0
        await asyncio.sleep(0.6)  # two ack timeouts: an absence
        assert await outbox.take(10) == []
        assert await outbox.unacked_count() == 0


async def test_a_stream_ack_in_memory_passes_over_an_event_not_confirmed_yet(
    tmp_path: Path,
) -> None:
    """While commits fail, a stream ack up to seq 2 arrives when only seq 1 was sent and
    PUBACKed: seq 2 was not acked (the file's rule: an event not sent cannot have
    arrived), so once sent and PUBACKed it is due again and counted unacked, in memory
    and in the file (a review of 2026-12-05: it was taken off for the rest of the
    process while the file kept it open)."""
    path = tmp_path / "o.sqlite"
    async with Outbox(path, ack_timeout=0.5) as outbox:
        blocker = sqlite3.connect(path, timeout=5, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            first, second = outbox.hold(_panic(1)), outbox.hold(_panic(2))
            await wait_until(lambda: outbox.last_error is not None, 5, "a commit failed")
            [sent] = await outbox.take(1)
            assert sent.id == first.id
            marks = [outbox.pubacked(sent)]
            acking = asyncio.ensure_future(outbox.mark_acked_through(outbox.stream, 2))
            await asyncio.sleep(0)  # the ack is in before the second is even sent
            [late] = await outbox.take(10, exclude={sent.n})
            assert late.id == second.id
            marks.append(outbox.pubacked(late))
            settling = {sent.n, late.n}  # PUBACKed, marks waiting
            resent = await _next_resend(outbox, "the second", exclude=settling, inflight=set())
            assert resent.id == second.id
            assert await outbox.unacked_count() == 1
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        await asyncio.wait_for(asyncio.gather(*marks, acking), 10)
        assert await outbox.unacked_count() == 1  # as the file: the second is open
        assert (await _next_resend(outbox, "again, stored", inflight=set())).id == second.id


async def test_a_replay_of_acked_events_leaves_nothing_unacked(tmp_path: Path) -> None:
    """The center replays events it had acked, after a restart: their copies are not
    counted unacked, and its acks of them again leave nothing behind (a review of
    2026-12-05: 200 replayed acked panics read as 200 unacked, and their re-acks stayed
    in memory for good)."""
    path = tmp_path / "o.sqlite"
    async with Outbox(path) as outbox:
        events = [await outbox.append(_panic(i)) for i in range(3)]
        await asyncio.gather(*(outbox.pubacked(r) for r in await outbox.take(10)))
        await outbox.mark_acked([e.id for e in events])
    async with Outbox(path) as outbox:
        again, missing = await outbox.replay(1, 3)
        assert (again, missing) == (3, [])
        copies = await outbox.take(10)
        assert sorted(r.id for r in copies) == sorted(e.id for e in events)
        await asyncio.gather(*(outbox.pubacked(r) for r in copies))
        assert await outbox.unacked_count() == 0
        # Whatever put an acked row on the schedule (the review's way was the PUBACK of
        # a replayed copy), the center's ack of it again leaves nothing in memory once
        # committed, though the file acks nothing.
        outbox.resends.sent(copies[0].n, copies[0].priority, event=Sent(copies[0].id))
        assert await outbox.mark_acked([e.id for e in events]) == []  # acked before
        assert outbox.resends.closing == 0 and len(outbox.resends) == 0


async def test_marks_and_stream_acks_commit_in_the_order_they_came(tmp_path: Path) -> None:
    """PUBACK of seq 1, a stream ack up to 1, PUBACK of seq 2, a stream ack up to 2, all
    in one commit: both are acked, in the file as in memory (a review of 2026-12-05:
    the second PUBACK's mark was applied after both stream acks, so the file kept seq 2
    open, re-sent and escalated after a restart, while memory said acked)."""
    path = tmp_path / "o.sqlite"
    async with Outbox(path, ack_timeout=0.5) as outbox:
        events = [await outbox.append(_panic(i)) for i in (1, 2)]
        rows = {r.id: r for r in await outbox.take(10)}
        commits = outbox.commits
        writes: list[asyncio.Future[Any]] = []
        for event in events:
            assert event.seq is not None
            writes.append(outbox.pubacked(rows[event.id]))
            ack = outbox.mark_acked_through(outbox.stream, event.seq)
            writes.append(asyncio.ensure_future(ack))
            await asyncio.sleep(0)  # the ack's op is queued before the next PUBACK
        done = await asyncio.wait_for(asyncio.gather(*writes), 10)
        assert outbox.commits == commits + 1  # one transaction held all four
        assert [len(acked) for acked in done[1::2]] == [1, 1]
        assert await outbox.unacked_count() == 0
    async with Outbox(path) as outbox:
        assert await outbox.open_alarms() == []


async def test_an_earlier_process_alarm_is_re_sent_from_memory_while_the_file_is_locked(
    tmp_path: Path,
) -> None:
    """An alarm sent and not acked before a restart is kept in memory from the start: its
    re-sends go while another process holds an ``EXCLUSIVE`` transaction (a review of
    2026-12-05: none went, the row was only ever read from the file)."""
    path = tmp_path / "o.sqlite"
    async with Outbox(path) as outbox:
        stored = await outbox.append(_panic(1))
        await outbox.pubacked((await outbox.take(10))[0])
    async with Outbox(path, ack_timeout=0.5) as outbox:
        blocker = sqlite3.connect(path, timeout=5, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")  # no read of the file succeeds from here
        try:
            for attempt in (1, 2):
                resent = await _next_resend(outbox, f"re-send {attempt}", inflight=set())
                assert (resent.id, resent.payload) == (stored.id, stored.to_json())
                outbox.pubacked(resent)
            assert outbox.read_failures > 0
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()


async def test_alarms_found_after_an_unreadable_start_are_re_sent_from_memory(
    tmp_path: Path,
) -> None:
    """The file was locked at start (nothing read); once a commit reads it, the open
    alarms a previous process sent are kept too: a later ``EXCLUSIVE`` lock does not
    stop their re-sends (a review of 2026-12-05: none went)."""
    path = tmp_path / "o.sqlite"
    async with Outbox(path) as outbox:
        stored = await outbox.append(_panic(1))
        await outbox.pubacked((await outbox.take(10))[0])
    blocker = sqlite3.connect(path, timeout=5, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        async with Outbox(path, ack_timeout=0.5) as outbox:
            assert outbox.stream_change is not None
            assert outbox.stream_change[1] == "unreadable at start"
            blocker.execute("ROLLBACK")
            await outbox.keep([])  # the first commit, which reads what is open
            blocker.execute("BEGIN EXCLUSIVE")  # no read of the file succeeds from here
            resent = await _next_resend(outbox, "the earlier alarm", inflight=set())
            assert (resent.id, resent.payload) == (stored.id, stored.to_json())
            assert outbox.read_failures > 0
    finally:
        with contextlib.suppress(sqlite3.Error):
            blocker.execute("ROLLBACK")
        blocker.close()


async def test_a_failed_read_is_not_tried_at_every_take_while_kept_alarms_go(
    tmp_path: Path,
) -> None:
    """More open alarms than memory keeps, and the file cannot be read: the kept ones are
    re-sent at once, and the file is tried again about once a second, not at every
    take (a review of 2026-12-05: each take waited on the lock, 20 re-sends a second,
    and a live panic sat behind a thousand older alarms)."""
    path = tmp_path / "o.sqlite"
    async with Outbox(path, ack_timeout=0.3) as outbox:
        outbox.resends.rows.max_rows = 2
        events = [await outbox.append(_panic(i)) for i in range(5)]
        await asyncio.gather(*(outbox.pubacked(r) for r in await outbox.take(10)))
        blocker = sqlite3.connect(path, timeout=5, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")  # no read of the file succeeds from here
        try:
            await wait_until(lambda: _due_in_zero(outbox), 5, "the ack timeout")
            takes, sent = 0, set()
            async with asyncio.timeout(1.5):
                while len(sent) < 2 or takes < 20:
                    takes += 1
                    for row in await outbox.take(10, inflight=set()):
                        sent.add(row.id)
                    await asyncio.sleep(0.02)
            assert sent == {e.id for e in events[-2:]}  # the newest two, kept
            assert outbox.read_failures <= 2, (outbox.read_failures, takes)
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()


async def test_a_stream_ack_names_the_alarms_of_a_migrated_file(tmp_path: Path) -> None:
    """A file from before streams with two alarms sent and not acked: after its upgrade a
    stream ack of its stream takes them off in memory, before the ack commits (a review
    of 2026-12-05: they kept being re-sent, known by seq with no stream)."""
    path = tmp_path / "o.sqlite"
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.executescript(_V1_SCHEMA)
        db.execute("UPDATE messages SET sent_at = 1.0, attempts = 1 WHERE id IN ('A', 'C')")
        db.commit()
    async with Outbox(path, ack_timeout=0.3) as outbox:
        await outbox.keep([])  # the upgrade is in
        assert await outbox.unacked_count() == 2
        blocker = sqlite3.connect(path, timeout=5, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # the ack cannot commit; reads can
        try:
            acking = asyncio.ensure_future(outbox.mark_acked_through("OLDSTREAM", 2))
            await asyncio.sleep(0.6)  # two ack timeouts: an absence
            due = await outbox.take(10, inflight=set())
            assert [r.id for r in due] == ["B"]  # the picture's first send; no re-send
            assert await outbox.unacked_count() == 0
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        await asyncio.wait_for(acking, 10)


async def test_open_events_found_at_the_first_commit_go_back_in_turns(tmp_path: Path) -> None:
    """After a start that could not read the file, its open events go back on the resend
    schedule a few thousand per turn of the loop, never all in one (a review of
    2026-12-05: half a million in one turn stalled the loop for 1.85 s)."""
    path = tmp_path / "o.sqlite"
    async with Outbox(path) as outbox:
        first = await outbox.append(_panic(0))
        stream = outbox.stream
    many = 10_000
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.executemany(
            "INSERT INTO messages (n, seq, stream, id, type, priority, topic, payload, size,"
            " track_ack, created_at, sent_at, attempts) VALUES (?, ?, ?, ?, 'alarm.fault', 3,"
            " 'events/fault', X'7B7D', 2, 1, 1.0, 1.0, 1)",
            [(n, n, stream, f"F{n}") for n in range(2, many + 2)],
        )
        db.execute("UPDATE meta SET value = ? WHERE key = 'last_seq'", (str(many + 1),))
        db.commit()
    blocker = sqlite3.connect(path, timeout=5, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        async with Outbox(path) as outbox:
            assert first.id and len(outbox.resends) == 0  # nothing read at start
            blocker.execute("ROLLBACK")
            await outbox.keep([])  # the first commit, which finds them
            assert len(outbox.resends) < many  # not all in the turn that settled it
            await wait_until(lambda: len(outbox.resends) == many, 10, "all back")
    finally:
        blocker.close()
