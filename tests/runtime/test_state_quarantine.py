"""A corrupt state file is moved aside and a new one kept; a locked one is not touched.

Before, a state file that was not a database (or was damaged) left the store
*unread* at every start: the box saved no arming, bypass or patrol progress for
the rest of its life, restart after restart. Now it is quarantined like a
corrupt outbox (``gateway.runtime.durable.quarantine``), a new file is begun, and
``fault.storage`` names both. A file that is merely locked or unreadable is an
``OperationalError`` and is never moved.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from gateway.runtime.state import AreaRecord
from gateway.runtime.state_store import StateStore, state_path
from simulators.broker import MosquittoBroker
from tests.power_cut_support import module_site, module_toml

SINCE = datetime(2026, 12, 4, 7, 0, tzinfo=UTC)
ARMED = AreaRecord(True, SINCE, "duty-1")


def moved_aside(path: Path) -> list[Path]:
    """The files moved aside (their journals, moved with them, left out)."""
    return sorted(p for p in path.parent.glob(f"{path.name}.corrupt-*") if "journal" not in p.name)


@pytest.mark.parametrize("damage", ["not a database", "a damaged page"])
async def test_a_corrupt_state_file_is_moved_aside_and_a_new_one_kept(
    tmp_path: Path, damage: str
) -> None:
    path = tmp_path / "outbox-state.sqlite"
    if damage == "not a database":
        path.write_bytes(b"PK\x03\x04 a zip archive copied over the state file " * 200)
    else:
        async with StateStore(path) as store:
            for n in range(200):
                await store.put_area(f"A{n:03d}", ARMED)
            await store.put_area("PERIM", ARMED)
        data = bytearray(path.read_bytes())
        page = 4096
        assert len(data) > 3 * page
        data[2 * page : 3 * page] = b"\xa5" * page  # a sector the disk returned wrong
        path.write_bytes(bytes(data))
    corrupt = path.read_bytes()
    async with StateStore(path) as store:
        assert store.unread is None
        assert store.quarantined is not None and store.quarantined.read_bytes() == corrupt
        assert moved_aside(path) == [store.quarantined]
        assert dict(store.areas) == {}
        await store.put_area("PERIM", ARMED)
    async with StateStore(path) as store:  # the new file is kept
        assert store.quarantined is None and store.unread is None
        assert dict(store.areas) == {"PERIM": ARMED}


async def test_two_quarantines_in_one_second_never_overwrite_the_first(tmp_path: Path) -> None:
    path = tmp_path / "outbox-state.sqlite"
    moved = []
    for text in (b"first garbage " * 100, b"second garbage " * 100):
        path.write_bytes(text)
        async with StateStore(path) as store:
            moved.append(store.quarantined)
    assert len(set(moved)) == 2 and all(p is not None for p in moved)
    assert [p.read_bytes()[:6] for p in moved if p] == [b"first ", b"second"]


async def test_a_locked_state_file_is_read_later_and_never_moved(tmp_path: Path) -> None:
    """A lock is not corruption: the store runs unread and the file stays where it is."""
    path = tmp_path / "outbox-state.sqlite"
    async with StateStore(path) as store:
        await store.put_area("PERIM", ARMED)
    before = path.read_bytes()
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")
        async with StateStore(path) as store:
            assert store.unread is not None and "locked" in store.unread
            assert store.quarantined is None
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert moved_aside(path) == [] and path.read_bytes() == before
    async with StateStore(path) as store:
        assert store.areas["PERIM"] == ARMED


@pytest.mark.parametrize("copy", ["slow", "quick"])
async def test_a_state_file_being_copied_in_at_start_is_never_moved_aside(
    tmp_path: Path, copy: str
) -> None:
    """A technician restoring the file with a plain copy as the daemon starts: the half
    written file looks damaged (a review found the finished copy quarantined and the
    arming lost). A copy that ends within the second look is read then ("quick"); one
    still going changes the file meanwhile, so the store runs unread for this start
    and leaves it in place ("slow", a chunk every 0.1 s); the next start reads it."""
    path = tmp_path / "outbox-state.sqlite"
    backup = tmp_path / "backup.sqlite"
    async with StateStore(backup) as store:
        for n in range(80):  # about 200 KiB: a copy that takes a while
            await store.put_area(f"A{n:03d}", AreaRecord(True, SINCE, "duty-1 " * 400))
        await store.put_area("PERIM", ARMED)
    data = backup.read_bytes()
    chunk = 16 * 1024 if copy == "slow" else len(data)
    assert len(data) > 12 * 16 * 1024
    path.write_bytes(data[: 2 * 16 * 1024])
    copied = asyncio.Event()

    async def copy_on() -> None:
        with path.open("ab") as fh:
            for at in range(2 * 16 * 1024, len(data), chunk):
                await asyncio.sleep(0.1 if copy == "slow" else 0.2)
                fh.write(data[at : at + chunk])
                fh.flush()
        copied.set()

    async with asyncio.TaskGroup() as tg:
        tg.create_task(copy_on())
        async with StateStore(path) as store:
            assert store.quarantined is None
            if copy == "quick":
                assert store.unread is None and store.areas["PERIM"] == ARMED
    assert copied.is_set() and moved_aside(path) == []
    async with StateStore(path) as store:
        assert store.unread is None and store.areas["PERIM"] == ARMED


async def test_a_value_that_is_not_utf8_is_left_out_alone(tmp_path: Path) -> None:
    """One bit flipped in one stored value made sqlite3's decoding fail the whole
    read: unread at every start, arming included (a review). Now that value alone is
    left out and logged; the file reads and is written as before."""
    path = tmp_path / "outbox-state.sqlite"
    async with StateStore(path) as store:
        await store.put_area("PERIM", ARMED)
        await store.put_area("GATE", ARMED)
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute(
            "UPDATE state SET value = CAST(? AS TEXT) WHERE key = 'GATE'",
            (b'{"armed": tr\xf5e}',),
        )
        db.commit()
    with capture_logs() as logs:
        async with StateStore(path) as store:
            assert store.unread is None and store.quarantined is None
            assert dict(store.areas) == {"PERIM": ARMED}
            assert store.left_out == {("area", "GATE")}
    [line] = [log for log in logs if log["event"] == "state.value_unreadable"]
    assert line["stored"] == '{"armed": tr\ufffde}'


@pytest.mark.timeout(120)
async def test_a_daemon_on_a_corrupt_state_file_says_so_and_keeps_arming_from_then_on(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    """The real daemon: ``fault.storage`` names the file and where it went; an arming
    after it survives a SIGKILL (it was written to the new file)."""
    async with module_site(
        mosquitto, tmp_path, functools.partial(module_toml, perim="disarmed")
    ) as site:
        state = state_path(site.outbox)
        state.write_bytes(b"\x00garbage, not SQLite\x00" * 300)
        await site.daemon.start()

        def quarantined() -> list[dict[str, object]]:
            return [
                e["data"]
                for e in site.center.events
                if e["type"] == "fault.storage" and "moved_to" in e["data"]
            ]

        await site.center.wait_for(lambda: bool(quarantined()), 15)
        [fault] = quarantined()
        assert fault["path"] == str(state) and "quarantined" in str(fault["reason"])
        assert Path(str(fault["moved_to"])).read_bytes()[:9] == b"\x00garbage,"
        assert (await site.ok("get_state"))["areas"]["PERIM"]["armed"] is False
        await site.ok("arm", {"area": "PERIM"})
        after = await site.restart_after_sigkill()
        assert after["areas"]["PERIM"]["armed"] is True
        assert len(quarantined()) == 1  # the new file read fine at the second start


async def test_a_copy_that_stalls_past_the_second_look_is_never_moved_aside(
    tmp_path: Path,
) -> None:
    """An ``scp`` restoring the file that stalls (a network hiccup) longer than the
    second look: nothing changes meanwhile, but the file is shorter than its header
    says, which is what a copy in progress looks like (a review: quarantined, and
    the copy then finished into the moved file)."""
    path = tmp_path / "outbox-state.sqlite"
    backup = tmp_path / "backup.sqlite"
    async with StateStore(backup) as store:
        for n in range(40):
            await store.put_area(f"A{n:03d}", AreaRecord(True, SINCE, "duty-1 " * 400))
        await store.put_area("PERIM", ARMED)
    data = backup.read_bytes()
    path.write_bytes(data[: 64 * 1024])
    async with StateStore(path) as store:
        assert (store.unread is not None, store.quarantined) == (True, None)
    assert moved_aside(path) == []
    path.write_bytes(data)  # the copy goes on
    async with StateStore(path) as store:
        assert store.unread is None and store.areas["PERIM"] == ARMED


async def test_a_utf16_state_file_reads_as_before(tmp_path: Path) -> None:
    """Reading values as bytes must not read a UTF-16 file's raw bytes (a review:
    every value left out at each start)."""
    path = tmp_path / "outbox-state.sqlite"
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA encoding = 'UTF-16le'")
        db.execute(
            "CREATE TABLE state (kind TEXT NOT NULL, key TEXT NOT NULL, "
            "value TEXT NOT NULL, PRIMARY KEY (kind, key))"
        )
        db.commit()
    async with StateStore(path) as store:
        await store.put_area("周界", ARMED)
    async with StateStore(path) as store:
        assert store.left_out == set() and dict(store.areas) == {"周界": ARMED}


async def test_a_key_that_is_not_utf8_is_left_out_and_said(tmp_path: Path) -> None:
    path = tmp_path / "outbox-state.sqlite"
    async with StateStore(path) as store:
        await store.put_area("PERIM", ARMED)
        await store.put_area("GATE", ARMED)
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("UPDATE state SET key = CAST(? AS TEXT) WHERE key = 'GATE'", (b"GAT\xc5",))
        db.commit()
    with capture_logs() as logs:
        async with StateStore(path) as store:
            assert dict(store.areas) == {"PERIM": ARMED} and store.bad_values == 1
    assert any("not UTF-8" in str(log.get("error")) for log in logs)
