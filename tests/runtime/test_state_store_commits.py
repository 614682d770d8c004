"""The state store's commits: write-behind changes share one, a waiting write goes at once.

A real SQLite file, read back by a second connection as another process would.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path

import pytest

from gateway.runtime import state_store
from gateway.runtime.state import META
from gateway.runtime.state_store import StateStore
from tests.helpers import eventually


def on_disk(path: Path) -> dict[str, str]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        rows = db.execute("SELECT key, value FROM state WHERE kind = 'meta'").fetchall()
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
