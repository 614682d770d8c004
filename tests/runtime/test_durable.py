"""``gateway.runtime.durable``: the outbox and the state store commit through a persistent
rollback journal, never WAL, whose zeroed header marks each commit as done.

Why it matters: in ``DELETE`` mode the commit point is the journal's unlink, which
``synchronous=FULL`` does not sync; a power cut soon after could roll a stored alarm
back. A real SQLite file is read back by a second connection, as another process would.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from gateway.delivery.outbox import Outbox
from gateway.events.model import EventFactory
from gateway.runtime.durable import JOURNAL_LIMIT_BYTES
from gateway.runtime.state_store import StateStore

FACTORY = EventFactory("campus/s1/gw1", lambda: True)
_HEADER = 28  # bytes of a rollback journal's header (SQLite file format, §4)


def committed_journal(db_path: Path) -> bytes:
    """The journal beside ``db_path`` after a commit: it must exist (PERSIST, not DELETE)
    and hold nothing to roll back (its header zeroed)."""
    journal = Path(f"{db_path}-journal")
    assert journal.exists(), "the journal is unlinked at commit: journal_mode is not PERSIST"
    data = journal.read_bytes()
    assert data[:_HEADER] == bytes(_HEADER), "the journal's header was not zeroed at commit"
    return data


def not_wal(db_path: Path) -> None:
    with contextlib.closing(sqlite3.connect(db_path)) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] != "wal"
    assert not Path(f"{db_path}-wal").exists() and not Path(f"{db_path}-shm").exists()


async def test_an_outbox_commit_leaves_a_zeroed_journal_and_no_wal(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    async with Outbox(path) as outbox:
        event = await outbox.append(
            FACTORY.make("alarm.panic", device="io", subject="P1", state="active")
        )
        committed_journal(path)
        not_wal(path)
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("SELECT count(*) FROM messages WHERE id = ?", (event.id,)).fetchone()
    committed_journal(path)


async def test_a_state_store_commit_leaves_a_zeroed_journal_and_no_wal(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    async with StateStore(path) as store:
        await store.put_meta("armed", True)
        committed_journal(path)
        not_wal(path)


async def test_a_journal_grown_by_a_large_transaction_is_cut_back_to_the_limit(
    tmp_path: Path,
) -> None:
    path = tmp_path / "o.sqlite"
    async with Outbox(path) as outbox:
        big = "x" * 200_000
        for k in range(8):
            await outbox.append(
                FACTORY.make("alarm.panic", device="io", subject=f"P{k}", state="active",
                             data={"note": big})
            )  # fmt: skip
        # One transaction rewriting every page those rows filled: a journal of megabytes.
        await outbox.mark_sent([row.n for row in await outbox.pending(100)])
        assert len(committed_journal(path)) <= JOURNAL_LIMIT_BYTES
