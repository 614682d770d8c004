"""``gateway.runtime.durable``: the outbox and the state store commit through a persistent
rollback journal, never WAL, whose zeroed header marks each commit as done.

Why it matters: in ``DELETE`` mode the commit point is the journal's unlink, which
``synchronous=FULL`` does not sync; a power cut soon after could roll a stored alarm
back. A real SQLite file is read back by a second connection, as another process would.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.config.root import OutboxConfig
from gateway.delivery import housekeeping
from gateway.delivery.housekeeping import Housekeeping
from gateway.delivery.outbox import Outbox
from gateway.events.model import Event, EventFactory
from gateway.runtime.durable import JOURNAL_LIMIT_BYTES
from gateway.runtime.state_store import StateStore
from gateway.runtime.tasks import cancel_and_wait
from tests.fault_support import wait_until
from tests.helpers import eventually

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


_HOLD_OPEN = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute("SELECT count(*) FROM sqlite_master").fetchone()
print("open", flush=True)
sys.stdin.read()  # until the test closes our stdin
"""


@contextlib.contextmanager
def wal_file_held_open(path: Path) -> Iterator[None]:
    """``path`` in WAL mode, as a version before issue 11 left it, kept open by another
    process (a technician's ``sqlite3`` shell, a backup tool)."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
        db.execute("CREATE TABLE IF NOT EXISTS t (x)")
        db.commit()
    with subprocess.Popen(
        [sys.executable, "-c", _HOLD_OPEN, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        assert holder.stdout is not None and holder.stdout.readline() == "open\n"
        try:
            yield
        finally:
            assert holder.stdin is not None
            holder.stdin.close()


async def test_a_wal_file_another_process_keeps_open_is_reported_then_switched_once_free(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The switch out of WAL needs the file to itself. Before, its failure was
    suppressed and the outbox ran in WAL (SIGBUS on ``-shm`` once the disk turns
    unwritable) with nothing said; now ``fault.storage`` says so, naming the file,
    and once the other process is gone the switch is tried again on a fresh
    connection (``DURABLE_RETRY_S``, shortened here) and the fault clears."""
    monkeypatch.setattr(housekeeping, "DURABLE_RETRY_S", 0.2)
    path = tmp_path / "o.sqlite"
    raised: list[Event] = []

    async def emit(event: Event) -> Event:
        raised.append(event)
        return event

    def faults(state: str) -> list[Event]:
        return [e for e in raised if e.type == "fault.storage" and e.data["state"] == state]

    with contextlib.ExitStack() as holder:
        holder.enter_context(wal_file_held_open(path))
        async with Outbox(path) as outbox, StateStore(tmp_path / "s.sqlite") as state:
            assert outbox.not_durable is not None and "wal" in outbox.not_durable
            assert state.not_durable is None
            keeper = Housekeeping(outbox, FACTORY, OutboxConfig(), "gw1", emit=emit, state=state)
            care = asyncio.create_task(keeper.run())
            try:
                await eventually(lambda: bool(faults("active")), 5)
                holder.close()  # the other process is gone

                async def switched() -> bool:  # the switch is tried at a commit
                    await outbox.append(
                        FACTORY.make("alarm.panic", device="io", subject="P1", state="active")
                    )
                    return outbox.not_durable is None

                await wait_until(switched, 5, "the outbox switched to the durable journal")
                await eventually(lambda: bool(faults("cleared")), 5)
            finally:
                await cancel_and_wait([care])
    [fault] = faults("active")
    assert fault.data["path"] == str(path)
    assert str(path) in fault.data["reason"] and "journal_mode is wal" in fault.data["reason"]
    not_wal(path)


async def test_on_a_quiet_site_both_files_switch_once_free_without_waiting_for_a_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The switch is tried on a fresh connection, at a commit. On a quiet site nothing
    is written for hours (an alarm, an arming), and the heartbeat's next read opened
    the outbox's metrics reader again before that commit came, so the file stayed in
    WAL and the fault stayed up: each retry now commits at once (an empty commit if
    nothing waits), for the outbox and the state store alike."""
    monkeypatch.setattr(housekeeping, "DURABLE_RETRY_S", 0.2)
    path, state_path = tmp_path / "o.sqlite", tmp_path / "s.sqlite"
    raised: list[Event] = []

    async def emit(event: Event) -> Event:  # kept in memory: nothing is committed
        raised.append(event)
        return event

    def faults(state: str) -> list[Event]:
        return [e for e in raised if e.type == "fault.storage" and e.data["state"] == state]

    def why() -> str:
        return str(faults("active")[0].data["reason"])

    with contextlib.ExitStack() as holder:
        holder.enter_context(wal_file_held_open(path))
        holder.enter_context(wal_file_held_open(state_path))
        async with Outbox(path) as outbox, StateStore(state_path) as state:
            assert outbox.not_durable is not None and state.not_durable is not None
            keeper = Housekeeping(outbox, FACTORY, OutboxConfig(), "gw1", emit=emit, state=state)
            care = asyncio.create_task(keeper.run())
            try:
                await eventually(lambda: bool(faults("active")), 5)
                assert str(path) in why() and str(state_path) in why()
                holder.close()  # the other processes are gone; nothing is written
                await eventually(
                    lambda: outbox.not_durable is None and state.not_durable is None, 10
                )
                # every report raised is cleared (one superseded when one file switched first)
                await eventually(lambda: len(faults("cleared")) == len(faults("active")), 5)
            finally:
                await cancel_and_wait([care])
    not_wal(path)
    not_wal(state_path)
