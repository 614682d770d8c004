"""The outbox's pending and unacked counts, kept in memory, against the file (issue 14).

The heartbeat no longer counts rows in the file (a count over 1,000,000 index
entries held the file's lock for 45 ms and kept panics' commits waiting), so the
counts in memory must stay exactly what a count of the file says, after every
kind of commit. Real SQLite files; the "truth" is a plain ``count(*)`` of each
definition on a connection of the test's own. A failed commit is a real write
lock held by a second connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path

import pytest

from gateway.delivery.outbox import Outbox, sql
from gateway.errors import OutboxError
from gateway.events.model import Event, EventFactory
from tests.fault_support import wait_until

FACTORY = EventFactory("campus/s1/gw1", lambda: True)

# The definitions, written out without the outbox's statements or indexes.
_PENDING = "SELECT count(*) FROM messages WHERE sent_at IS NULL"
_UNACKED = (
    "SELECT count(*) FROM messages WHERE track_ack = 1 AND acked_at IS NULL AND sent_at IS NOT NULL"
)


def _event(type_: str, n: int) -> Event:
    return FACTORY.make(type_, device="io", subject=f"Z{n}", state="active")


def _file_counts(path: Path) -> tuple[int, int]:
    """(pending, unacked) counted in the file now."""
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        return int(db.execute(_PENDING).fetchone()[0]), int(db.execute(_UNACKED).fetchone()[0])


async def _agree(outbox: Outbox, what: str) -> tuple[int, int]:
    """The in-memory counts equal the file's (nothing held, no mark waiting)."""
    assert not outbox.held and not outbox.marking, what
    memory = (outbox.backlog.pending, outbox.backlog.unacked)
    in_file = _file_counts(outbox.path)
    assert memory == in_file, f"after {what}: memory {memory}, file {in_file}"
    assert (await outbox.pending_count(), await outbox.unacked_count()) == in_file, what
    return in_file


async def test_counts_in_memory_match_the_file_after_every_kind_of_commit(
    tmp_path: Path,
) -> None:
    path = tmp_path / "o.sqlite"
    # Small caps so priority 4-5 rows are shed: 30 rows for them, 10 kept for alarms.
    opened = Outbox(path, mark_linger=0.01, max_rows=40, alarm_reserve_rows=10)
    async with opened as outbox:
        assert await _agree(outbox, "a new file") == (0, 0)
        panics = [await outbox.append(_event("alarm.panic", i)) for i in range(6)]
        faults = [await outbox.append(_event("fault.storage", i)) for i in range(3)]
        for i in range(8):
            await outbox.append(_event("camera.status", i))
        await outbox.append_blob("snapshots/x", b"\xff\xd8", 3)
        assert await _agree(outbox, "appends") == (18, 0)

        rows = {r.id: r.n for r in await outbox.pending(100)}
        sent = [rows[e.id] for e in panics[:4] + faults[:2]]
        await outbox.mark_sent([*sent, sent[0]])  # one row named twice in a commit
        assert await _agree(outbox, "first PUBACKs") == (12, 6)
        await outbox.mark_sent(sent[:2])  # re-sends of open alarms: already sent
        assert await _agree(outbox, "PUBACKs of re-sends") == (12, 6)

        # Acked: a sent panic, a panic not sent yet, a fault, an unknown id.
        ids = [panics[0].id, panics[5].id, faults[0].id, "unknown"]
        assert len(await outbox.mark_acked(ids)) == 3  # the panics and the fault
        assert await _agree(outbox, "acks by id") == (12, 4)
        await outbox.mark_sent([rows[panics[5].id]])  # PUBACK after the center's ack
        assert await _agree(outbox, "a PUBACK of an acked alarm") == (11, 4)

        # The center asks again for seqs 2-4: the sent ones are pending again.
        assert (await outbox.replay(2, 4))[0] == 3
        assert await _agree(outbox, "a replay") == (14, 1)
        await outbox.mark_sent([rows[panics[1].id], rows[panics[2].id]])
        assert await _agree(outbox, "PUBACKs of replayed rows") == (12, 3)
        await outbox.mark_acked_through(outbox.stream, panics[2].seq or 0)
        assert await _agree(outbox, "a stream ack") == (12, 1)

        # Priority 5 rows, some delivered, then a flood that sheds the oldest of them.
        await outbox.mark_sent([r.n for r in await outbox.pending(100) if r.priority == 5][:3])
        assert await _agree(outbox, "telemetry delivered") == (9, 1)
        for i in range(30):
            await outbox.append(_event("camera.status", 100 + i))
        shed = outbox.take_shed()
        assert shed is not None and 0 < shed.undelivered < shed.total  # both kinds went
        await _agree(outbox, "shedding")

        assert await outbox.purge(0) > 0  # delivered, closed rows go
        await _agree(outbox, "a purge")

    async with Outbox(path) as outbox:  # counted once at open
        await _agree(outbox, "a restart")


async def test_a_failed_commit_and_an_unreadable_start_keep_the_counts_exact(
    tmp_path: Path,
) -> None:
    path = tmp_path / "o.sqlite"
    async with Outbox(path, mark_linger=0.01) as outbox:
        for i in range(5):
            await outbox.append(_event("alarm.panic", i))
        await outbox.mark_sent([r.n for r in await outbox.pending(2)])
        await _agree(outbox, "before the lock")

        blocker = sqlite3.connect(path, timeout=5, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")  # another process: no commit, no read
        try:
            outbox.hold(_event("alarm.panic", 9))
            await wait_until(lambda: outbox.last_error is not None, 5, "a commit failed")
            await wait_until(lambda: outbox.stats.commit_failures >= 2, 5, "a retry failed")
            # A failed commit changed nothing: the last committed figures, the held
            # row on top.
            assert outbox.backlog.counted
            assert await outbox.pending_count() == 3 + 1
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        await wait_until(lambda: not outbox.held, 5, "the held row is stored")
        assert await _agree(outbox, "a commit after failures") == (4, 2)

    with contextlib.closing(sqlite3.connect(path, timeout=5, isolation_level=None)) as blocker:
        blocker.execute("BEGIN EXCLUSIVE")
        async with Outbox(path, mark_linger=0.01) as outbox:
            assert outbox.stream_change is not None
            assert outbox.stream_change[1] == "unreadable at start"
            assert outbox.backlog.pending is None  # never counted: no figure to give
            with pytest.raises(OutboxError, match="not counted"):
                await outbox.pending_count()
            blocker.execute("ROLLBACK")
            await outbox.append(_event("alarm.panic", 20))
            assert await _agree(outbox, "the first commit after an unreadable start") == (5, 2)


def test_the_heartbeat_reads_seek_on_their_indexes(tmp_path: Path) -> None:
    """What is left of the heartbeat's reads stops after a row or a few whatever the
    file holds: the planner's choice for each, on a file of this version."""
    with contextlib.closing(sqlite3.connect(tmp_path / "o.sqlite")) as db:
        for statement in sql.SCHEMA_STATEMENTS:
            db.execute(statement)

        def plan(query: str, *params: object) -> str:
            return " | ".join(r[3] for r in db.execute(f"EXPLAIN QUERY PLAN {query}", params))

        assert "SEARCH messages USING INDEX messages_open_by_stream (stream=?)" in plan(
            sql.FIRST_OPEN_SEQ, "s"
        )
        # Five seeks, one per priority, on the pending index.
        assert (
            plan(sql.OLDEST_PENDING).count(
                "SEARCH messages USING INDEX messages_pending (priority=?)"
            )
            == 5
        )
        assert plan(sql.RECENT, 10) == "SCAN messages"  # backwards by n, LIMIT: stops early
        assert "SCAN messages USING INDEX messages_open_by_stream" in plan(sql.OPEN_ALARMS)


async def test_a_mark_waiting_for_its_commit_leaves_the_depth_only_for_a_first_send(
    tmp_path: Path,
) -> None:
    # Marks wait (30 s at most) for a commit that stores something: an append.
    async with Outbox(tmp_path / "o.sqlite", mark_linger=30, ack_timeout=0.05) as outbox:

        async def mark_then(n: int, *, before: int) -> None:
            """PUBACK row ``n``; the depth while its mark waits is ``before``."""
            marking = asyncio.create_task(outbox.mark_sent([n]))
            await wait_until(lambda: n in outbox.marking, 5, "the mark waits")
            assert await outbox.pending_count() == before
            await outbox.append(_event("camera.status", n))  # the mark rides in its commit
            await marking

        sent = await outbox.append(_event("alarm.panic", 1))
        first_send = await outbox.append(_event("alarm.panic", 2))
        rows = {r.id: r.n for r in await outbox.pending(10)}
        await mark_then(rows[sent.id], before=1)  # a first send: left out at once
        await wait_until(lambda: outbox.resends.overdue_count() == 1, 5, "due again")
        assert await outbox.pending_count() == 2  # the other panic and the telemetry
        await mark_then(rows[sent.id], before=2)  # a re-send: it was not pending
        await mark_then(rows[first_send.id], before=2)  # 3 pending, one left out
        assert await _agree(outbox, "the marks") == (3, 2)
