"""The state store's commits: write-behind changes share one, a waiting write goes at once,
a failed write never lands later, and a value SQLite cannot bind never stops the writer.

A real SQLite file, read back by a second connection as another process would; the
fault is another process holding the file's lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path

import pytest

from gateway.errors import StateError
from gateway.events.model import Event, EventFactory
from gateway.runtime import state_store
from gateway.runtime.state import AREA, META, AreaRecord
from gateway.runtime.state_store import StateStore
from tests.helpers import eventually, locked

FACTORY = EventFactory("campus/s1/gw1", lambda: True)


def on_disk(path: Path, kind: str = "meta") -> dict[str, str]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        rows = db.execute("SELECT key, value FROM state WHERE kind = ?", (kind,)).fetchall()
    return {str(k): str(v) for k, v in rows}


async def test_write_behind_changes_a_tenth_of_a_second_apart_share_one_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(state_store, "BEHIND_S", 3.0)  # far above the changes' spread
    async with StateStore(tmp_path / "state.sqlite") as store:
        before = store.commits
        for i in range(5):  # a stream of changes, 0.1 s apart (the scenario, not a wait)
            await store.apply([META.write(f"k{i}", i)], wait=False)
            await asyncio.sleep(0.1)
        await eventually(lambda: store.commits > before)
        assert store.commits == before + 1
        assert on_disk(store.path) == {f"k{i}": str(i) for i in range(5)}


async def test_a_waiting_write_commits_at_once_with_the_write_behind_queued_before_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(state_store, "BEHIND_S", 60.0)
    async with StateStore(tmp_path / "state.sqlite") as store:
        before = store.commits
        await store.apply([META.write("behind", 1)], wait=False)
        await asyncio.sleep(0.1)  # the scenario: a waiting write comes a little later
        async with asyncio.timeout(5):  # not the 60 s the write-behind would wait
            await store.put(META, "waited", 2)
        assert store.commits == before + 1
        assert on_disk(store.path) == {"behind": "1", "waited": "2"}


async def test_a_clean_close_commits_the_write_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(state_store, "BEHIND_S", 60.0)
    path = tmp_path / "state.sqlite"
    async with asyncio.timeout(5):
        async with StateStore(path) as store:
            await store.apply([META.write("behind", 1)], wait=False)
    assert on_disk(path) == {"behind": "1"}


async def test_a_disarm_the_caller_was_told_failed_never_lands_with_a_later_commit(
    tmp_path: Path,
) -> None:
    """The caller of a failed commit is told nothing changed and nothing is reported;
    the next commit of anything must not write the disarm and its report after all."""
    path = tmp_path / "state.sqlite"
    async with StateStore(path) as store:
        armed_at = FACTORY.make("area.armed", device="gw", subject="PERIM", state="instant").time
        await store.put_area("PERIM", AreaRecord(True, armed_at, "initial"))
        disarmed = FACTORY.make("area.disarmed", device="gw", subject="PERIM", state="instant")
        emitted: list[Event] = []

        async def emit(event: Event) -> Event:
            emitted.append(event)
            return event

        with locked(path), pytest.raises(StateError):
            write = AREA.write("PERIM", AreaRecord(False, disarmed.time, "cmd"))
            await store.report([write], [disarmed], emit)
        assert emitted == [] and store.areas["PERIM"].armed
        await store.put_meta("unrelated", 1)
    async with StateStore(path) as store:
        assert store.unreported() == []
        assert store.areas["PERIM"].armed


async def test_a_lone_surrogate_is_stored_escaped_and_a_key_with_one_is_refused(
    tmp_path: Path,
) -> None:
    """JSON from a device may carry ``"\\ud800"``, which sqlite3 cannot bind as UTF-8:
    the value is stored escaped (it reads back the same), a key is refused, and the
    writer goes on committing."""
    path = tmp_path / "state.sqlite"
    async with asyncio.timeout(10), StateStore(path) as store:
        await store.put_meta("guard", {"tag": "\ud800"})
        with pytest.raises(StateError, match="cannot be stored"):
            await store.put_meta("\ud800", 1)
        await store.apply([META.write("\udfff", 2)], wait=False)  # logged, dropped
        await store.put_meta("after", 3)
    assert on_disk(path) == {"guard": '{"tag": "\\ud800"}', "after": "3"}
    async with StateStore(path) as store:
        assert store.values(META)["guard"] == {"tag": "\ud800"}


async def test_a_failed_write_behind_is_retried_a_second_later_not_after_another_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(state_store, "BEHIND_S", 0.1)
    path = tmp_path / "state.sqlite"
    async with StateStore(path) as store:
        with locked(path):
            before = store.commits
            await store.apply([META.write("behind", 1)], wait=False)
            await asyncio.sleep(1.5)  # the scenario: its commit fails on the lock meanwhile
            monkeypatch.setattr(state_store, "BEHIND_S", 60.0)
        await eventually(lambda: store.commits > before, 5)  # not 60 s
        assert on_disk(path) == {"behind": "1"}
