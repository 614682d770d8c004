"""State kept in the outbox with an event: one transaction, read back after a restart."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest

from gateway.delivery.outbox import Outbox
from gateway.errors import OutboxError
from gateway.events.model import EventFactory
from gateway.runtime.state import Kind, json_kind

FACTORY = EventFactory("campus/s1/gw1", lambda: True)
NOTE = json_kind("test.note")
NUMBER: Kind[int] = Kind("test.number", int, lambda v: int(v["n"]))


async def test_kept_state_commits_with_its_event_and_its_picture(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    alarm = FACTORY.make("alarm.intrusion", device="io", subject="Z01", state="active")
    shot = FACTORY.make("camera.snapshot", device="cam", subject="cam", state="instant")
    async with Outbox(path) as outbox:
        await outbox.append(alarm, keep=[NOTE.write("r1", {"for": alarm.id})])
        assert outbox.kept(NOTE) == {"r1": {"for": alarm.id}}
        await outbox.append(shot, keep=[NOTE.write("r1", None)], blob=("snapshots/x", b"\xff\xd8"))
        assert outbox.kept(NOTE) == {}
        rows = await outbox.pending(10)
    # the picture's bytes go just before the event that names them, at its priority
    assert [(r.topic, r.seq, r.priority) for r in rows] == [
        ("events/alarm/intrusion", 1, 2),
        ("snapshots/x", None, 3),
        ("events/camera/snapshot", 2, 3),
    ]
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM kept").fetchone()[0] == 0


async def test_kept_state_is_read_back_after_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    async with Outbox(path) as outbox:
        await outbox.keep([NOTE.write("a", [1, "二"]), NOTE.write("b", True)])
        await outbox.keep([NOTE.write("b", None)])
    async with Outbox(path) as outbox:
        assert outbox.kept(NOTE) == {"a": [1, "二"]}
        assert outbox.kept(NUMBER) == {}


async def test_a_kept_value_its_kind_cannot_read_names_file_kind_and_key(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    async with Outbox(path) as outbox:
        await outbox.keep([NOTE.write("k1", {"n": 3})])
    with sqlite3.connect(path) as db:
        db.execute("UPDATE kept SET value = ? WHERE key = 'k1'", (json.dumps({"x": 1}),))
        db.execute("UPDATE kept SET kind = 'test.number'")
    async with Outbox(path) as outbox:
        with pytest.raises(OutboxError, match=r"o\.sqlite: kept test\.number/k1 cannot be read"):
            outbox.kept(NUMBER)


async def test_in_one_commit_the_last_write_of_a_key_wins(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    async with Outbox(path, commit_linger=0.05) as outbox:  # one commit for all of them
        before = outbox.commits  # the start's own commit (``running``) is not counted
        await asyncio.gather(
            outbox.keep([NOTE.write("a", 1), NOTE.write("b", 1)]),
            outbox.keep([NOTE.write("a", None), NOTE.write("b", 2)]),
            outbox.keep([NOTE.write("c", 3), NOTE.write("a", 4), NOTE.write("c", None)]),
        )
        commits = outbox.commits - before
    async with Outbox(path) as outbox:
        assert outbox.kept(NOTE) == {"a": 4, "b": 2}
    assert commits == 1
