"""Outbox on a real SQLite file: durable, gap-free seq, priority order, restart-safe."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest

from gateway.errors import OutboxError
from gateway.outbox import Outbox
from gateway.schema import EventFactory
from tests.helpers import assert_valid_event

FACTORY = EventFactory("campus/s1/gw1", lambda: True)


def _panic(n: int):  # type: ignore[no-untyped-def]
    return FACTORY.make("alarm.panic", device="io", subject=f"Z{n}", state="active")


def _beat(n: int):  # type: ignore[no-untyped-def]
    return FACTORY.make("gateway.heartbeat", device="gateway", subject="gw1", state="instant")


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
        assert await outbox.mark_acked([panic.id, "unknown"]) == 1


async def test_rows_and_seq_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    async with Outbox(path) as outbox:
        stream = outbox.stream
        first = await outbox.append(_panic(1))
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
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
