"""Held rows survive the end of the process that held them (``gateway/delivery/outbox/spill.py``).

Real faults: another process holds the outbox's SQLite lock through a stop, or the
holding process is SIGKILLed while commits fail; the next start takes the rows back.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
import sys
from pathlib import Path

from gateway.delivery.outbox import Outbox, spill
from gateway.events.model import EventFactory
from gateway.runtime.state import ALARM, AlarmRecord
from tests.fault_support import wait_until
from tests.helpers import REPO_ROOT, lock_held

FACTORY = EventFactory("campus/s1/gw1", lambda: True)


def _panic(n: int):  # type: ignore[no-untyped-def]
    return FACTORY.make("alarm.panic", device="io", subject=f"P{n}", state="active")


def _rows(path: Path) -> list[tuple[str, str, int, bool]]:
    """(id, stream, seq, sent) of every event row in the file, in ``n`` order."""
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        rows = db.execute(
            "SELECT id, stream, seq, sent_at IS NOT NULL FROM messages"
            " WHERE seq IS NOT NULL ORDER BY n"
        ).fetchall()
    return [(str(i), str(st), int(q), bool(s)) for i, st, q, s in rows]


async def test_a_stop_that_cannot_store_spills_and_the_next_start_takes_them_back(
    tmp_path: Path,
) -> None:
    path = tmp_path / "o.sqlite"
    outbox = Outbox(path)
    await outbox.__aenter__()
    async with lock_held(path):
        first = outbox.hold(_panic(1))
        await wait_until(lambda: spill.found(path), 5, "a failed commit spilled it")
        second = outbox.hold(_panic(2))  # after that spill: the stop writes it
        await outbox.__aexit__(None, None, None)  # its 2 s pass with the lock held
        [spilled] = spill.found(path)
        assert spilled == spill.path_for(path, outbox.stream)
        assert [r[2] for r, _ in spill.read(spilled)[0]] == [first.id, second.id]
    assert _rows(path) == []
    async with Outbox(path) as again:
        assert again.stream_change == (outbox.stream, "unclean stop")
        assert _rows(path) == [
            (first.id, outbox.stream, 1, False),
            (second.id, outbox.stream, 2, False),
        ]
        assert [r.id for r in await again.pending(10)] == [first.id, second.id]
        assert await again.pending_count() == 2
        assert spill.found(path) == []


_HOLDER = """
import asyncio, sys
from pathlib import Path
from gateway.delivery.outbox import Outbox, spill
from gateway.events.model import EventFactory
from gateway.runtime.state import ALARM, AlarmRecord

async def main() -> None:
    path = Path(sys.argv[1])
    outbox = await Outbox(path).__aenter__()
    print("open", flush=True)  # its log goes to stdout too: lines are read by their word
    await asyncio.to_thread(sys.stdin.readline)  # the lock is taken
    event = EventFactory("campus/s1/gw1", lambda: True).make(
        "alarm.panic", device="io", subject="P1", state="active")
    held = outbox.hold(event)
    while not spill.path_for(path, outbox.stream).exists():
        await asyncio.sleep(0.02)
    print("held", held.id, outbox.stream, flush=True)
    await asyncio.sleep(3600)  # killed here, the row still held

asyncio.run(main())
"""


async def _line(stream: asyncio.StreamReader, word: str) -> list[str]:
    """The words after ``word`` on the first line that starts with it."""
    while True:
        line = (await asyncio.wait_for(stream.readline(), 30)).decode()
        assert line, f"no line starting {word!r}"
        if line.split()[:1] == [word]:
            return line.split()[1:]


async def test_rows_held_while_commits_fail_survive_a_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    holder = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _HOLDER, str(path),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=REPO_ROOT,
    )  # fmt: skip
    assert holder.stdin is not None and holder.stdout is not None
    try:
        await _line(holder.stdout, "open")
        async with lock_held(path):
            holder.stdin.write(b"go\n")
            await holder.stdin.drain()
            event_id, stream = await _line(holder.stdout, "held")
            holder.send_signal(signal.SIGKILL)
            await holder.wait()
    finally:
        if holder.returncode is None:
            holder.kill()
            await holder.wait()
    async with Outbox(path) as again:
        assert _rows(path) == [(event_id, stream, 1, False)]
        assert [r.id for r in await again.pending(10)] == [event_id]
    assert spill.found(path) == []


async def test_a_spilled_row_the_file_has_is_not_stored_twice(tmp_path: Path) -> None:
    """Commits came back after the spill was written and the process died before it
    deleted the file: the row the file has stays as it is, the one it lacks goes in."""
    path = tmp_path / "o.sqlite"
    async with Outbox(path) as outbox:
        stored = await outbox.append(_panic(1))
        stream = outbox.stream
    inserts = [
        (1, stored.seq, stream, stored.id, stored.type, 1, "events/alarm/panic", b"{}", 2, True,
         1.0),
        (2, 99, "older", "01JXOLDERSTREAMROW00000000", "alarm.panic", 1, "events/alarm/panic",
         b'{"x":1}', 7, True, 2.0),
    ]  # fmt: skip
    spill.write(spill.path_for(path, "older"), [(r, ()) for r in inserts])
    async with Outbox(path) as again:
        assert _rows(path) == [(stored.id, stream, 1, False), (inserts[1][3], "older", 99, False)]
        assert await again.pending_count() == 2
    assert spill.found(path) == []


async def test_a_bad_line_costs_only_itself_and_its_file_is_kept_aside(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    async with Outbox(path):
        pass
    kept = spill.path_for(path, "older")
    good = (1, 7, "older", "01JXOLDERSTREAMROW00000000", "alarm.panic", 1,
            "events/alarm/panic", b'{"x":1}', 7, True, 2.0)  # fmt: skip
    spill.write(kept, [(good, ())])
    with kept.open("a", encoding="utf-8") as f:
        f.write('{"seq": 8, "stream": "older", "id": "cut sh\n')  # a line cut short
    async with Outbox(path) as again:
        assert _rows(path) == [(good[3], "older", 7, False)]
        assert again.stats.spill_failures == 1
    assert spill.found(path) == []
    assert kept.with_name(kept.name + ".unreadable").exists()


async def test_a_spill_that_cannot_be_deleted_does_not_stop_the_commits(tmp_path: Path) -> None:
    """The spill file turned into a directory that cannot be removed: the commit that
    should have deleted it stands, and the next ones go on (a review of 2026-12-05: the
    writer retried that commit for good)."""
    path = tmp_path / "o.sqlite"
    async with Outbox(path) as outbox:
        async with lock_held(path):
            first = outbox.hold(_panic(1))
            await wait_until(lambda: spill.found(path), 5, "a failed commit spilled it")
            [spilled] = spill.found(path)
            spilled.unlink()
            spilled.mkdir()
            (spilled / "in the way").write_text("x")
        await wait_until(lambda: not outbox.held, 10, "stored once the lock went")
        second = await asyncio.wait_for(outbox.append(_panic(2)), 5)
        assert [r[0] for r in _rows(path)] == [first.id, second.id]
        assert outbox.stats.spill_failures == 1 and outbox.last_error is None


async def test_two_outboxes_of_one_name_never_take_each_others_spill(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    ours, theirs = tmp_path / "a" / "outbox.sqlite", tmp_path / "b" / "outbox.sqlite"
    assert spill.path_for(ours, "s") != spill.path_for(theirs, "s")
    assert spill.path_for(ours, "s").name != spill.path_for(theirs, "s").name


async def test_the_spill_goes_at_the_first_commit_after_the_fault(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    async with Outbox(path) as outbox:
        async with lock_held(path):
            held = outbox.hold(_panic(1))
            await wait_until(lambda: spill.found(path), 5, "a failed commit spilled it")
        await wait_until(lambda: not outbox.held, 10, "stored once the lock went")
        assert spill.found(path) == []
        assert [r[0] for r in _rows(path)] == [held.id]


async def test_a_spilled_event_comes_back_with_the_state_kept_with_it(tmp_path: Path) -> None:
    """A held panic's open-alarm record goes to the spill with it and into the file with
    it when taken back, as its commit would have; a row the file had already does not
    apply its state again (a later commit may have changed it)."""
    path = tmp_path / "o.sqlite"
    panic = _panic(10)
    record = AlarmRecord(panic.type, panic.id, panic.time)
    outbox = Outbox(path)
    await outbox.__aenter__()
    async with lock_held(path):
        outbox.hold(panic, keep=[ALARM.write("P10/alarm", record)])
        await wait_until(lambda: spill.found(path), 5, "a failed commit spilled it")
        await outbox.__aexit__(None, None, None)
    [(_, keep)] = spill.read(spill.found(path)[0])[0]
    assert keep == (ALARM.write("P10/alarm", record),)
    async with Outbox(path) as again:
        assert again.spilled_back == 1
        kept = again.kept(ALARM)
        assert list(kept) == ["P10/alarm"] and kept["P10/alarm"].incident == panic.id
