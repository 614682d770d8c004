"""An open alarm kept with its event in the outbox survives a cut the state store missed."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from gateway.delivery.outbox import Outbox, spill
from gateway.delivery.outbox.spill import UNCHECKED
from gateway.delivery.reports import restore_alarms
from gateway.events.model import Event, EventFactory
from gateway.runtime.state import ALARM, AREA, AlarmRecord, AreaRecord
from gateway.runtime.state_store import StateStore
from tests.helpers import eventually

FACTORY = EventFactory("campus/s1/gw1", lambda: True)


async def test_an_alarm_the_state_store_lost_is_put_back_and_a_cleared_one_stays_away(
    tmp_path: Path,
) -> None:
    panic = FACTORY.make("alarm.panic", device="io", subject="P10", state="active")
    tamper = FACTORY.make("alarm.tamper", device="io", subject="Z09", state="active")
    async with Outbox(tmp_path / "o.sqlite") as outbox:
        # the panic's event and record committed; the write-behind state commit never came
        record = AlarmRecord(panic.type, panic.id, panic.time)
        await outbox.append(panic, keep=[ALARM.write("P10/alarm", record)])
        # a tamper raised and ended: its record went with its cleared event
        gone = AlarmRecord(tamper.type, tamper.id, tamper.time)
        await outbox.append(tamper, keep=[ALARM.write("Z09/tamper", gone)])
        await outbox.keep([ALARM.write("Z09/tamper", None)])
    assert await restored(tmp_path, changes=1) == {"P10/alarm": ALARM.decode(ALARM.encode(record))}


async def test_a_state_store_that_could_not_read_its_file_still_holds_the_open_alarms(
    tmp_path: Path,
) -> None:
    """On a disk that refuses the state file the latch comes from the outbox, in memory:
    a panic still latched before the cut stays latched (nothing is written)."""
    panic = FACTORY.make("alarm.panic", device="io", subject="P10", state="active")
    record = AlarmRecord(panic.type, panic.id, panic.time)
    async with Outbox(tmp_path / "o.sqlite") as outbox:
        await outbox.append(panic, keep=[ALARM.write("P10/alarm", record)])
    (tmp_path / "file").write_text("not a directory", encoding="utf-8")
    async with (
        Outbox(tmp_path / "o.sqlite") as outbox,
        StateStore(tmp_path / "file" / "s.sqlite") as store,
    ):
        assert store.unread is not None
        assert await restore_alarms(store, outbox) == 1
        assert store.alarms["P10/alarm"].incident == panic.id


async def restored(tmp_path: Path, changes: int) -> dict[str, AlarmRecord]:
    """Run :func:`restore_alarms` on ``o.sqlite`` and ``s.sqlite`` (it must make
    ``changes``, then none: idempotent); the state store's alarms read back after."""
    async with (
        Outbox(tmp_path / "o.sqlite") as outbox,
        StateStore(tmp_path / "s.sqlite") as store,
    ):
        assert await restore_alarms(store, outbox) == changes
        assert await restore_alarms(store, outbox) == 0
    async with StateStore(tmp_path / "s.sqlite") as store:
        return dict(store.alarms)


async def test_a_report_is_forgotten_only_once_the_outbox_has_committed_its_event(
    tmp_path: Path,
) -> None:
    """``StateStore.report`` through ``Outbox.hold``: while another process holds the
    outbox's write lock the event is only held, so the report stays in the state
    store (a cut now must not lose it); once the outbox commits, it is forgotten."""
    armed = FACTORY.make("area.armed", device="gateway", subject="PERIM", state="instant")
    async with (
        Outbox(tmp_path / "o.sqlite") as outbox,
        StateStore(tmp_path / "s.sqlite") as store,
    ):
        outbox.on_stored.append(store.stored)

        async def hold(event: Event) -> Event:
            return outbox.hold(event)

        with contextlib.closing(sqlite3.connect(tmp_path / "o.sqlite", isolation_level=None)) as db:
            db.execute("BEGIN IMMEDIATE")  # the outbox cannot commit now
            await store.report(
                [AREA.write("PERIM", AreaRecord(True, armed.time, "t"))], [armed], hold
            )
            await eventually(lambda: outbox.last_error is not None)  # a commit was tried
            assert [e.id for e in store.unreported()] == [armed.id]
            db.execute("ROLLBACK")
        await eventually(lambda: store.unreported() == [])
        await eventually(lambda: store.commits >= 2)  # the forgetting is on disk too
    async with StateStore(tmp_path / "s.sqlite") as store:
        assert store.unreported() == []
        assert store.areas["PERIM"].armed is True


async def test_the_state_store_is_brought_up_to_the_records_the_outbox_kept(
    tmp_path: Path,
) -> None:
    """The state store's file lags the outbox: at start a record for a condition the
    outbox has since re-raised is replaced, one whose ``cleared`` event the outbox
    committed is removed, and one the outbox knows nothing of stays (an outbox that
    was quarantined, or written before alarms were kept in it)."""
    first = FACTORY.make("alarm.intrusion", device="io", subject="Z03", state="active")
    second = FACTORY.make("alarm.intrusion", device="io", subject="Z03", state="active")
    panic = FACTORY.make("alarm.panic", device="io", subject="P10", state="active")
    end = FACTORY.make(
        "alarm.panic", device="io", subject="P10", state="cleared", incident=panic.id
    )
    unknown = FACTORY.make("alarm.panic", device="io", subject="P11", state="active")
    records = {e.id: AlarmRecord(e.type, e.id, e.time) for e in (first, second, panic, unknown)}
    async with StateStore(tmp_path / "s.sqlite") as store:  # as the outbox's lagging copy
        await store.apply(
            [
                ALARM.write("Z03/alarm", records[first.id]),
                ALARM.write("P10/alarm", records[panic.id]),
                ALARM.write("P11/alarm", records[unknown.id]),
            ]
        )
    async with Outbox(tmp_path / "o.sqlite") as outbox:
        await outbox.append(first, keep=[ALARM.write("Z03/alarm", records[first.id])])
        await outbox.append(second, keep=[ALARM.write("Z03/alarm", records[second.id])])
        await outbox.append(panic, keep=[ALARM.write("P10/alarm", records[panic.id])])
        await outbox.append(end, keep=[ALARM.write("P10/alarm", None)])
    alarms = await restored(tmp_path, changes=2)
    assert {k: r.incident for k, r in alarms.items()} == {
        "Z03/alarm": second.id,
        "P11/alarm": unknown.id,
    }


async def test_the_state_store_never_holds_an_alarm_the_outbox_has_not_committed(
    tmp_path: Path,
) -> None:
    """Another process holds the outbox's write lock: the panic is held in memory, its
    record in the state store's memory, but not in the state store's file (a cut now
    must not leave a latched panic whose event was never stored: after the restart a
    button still pressed would raise nothing). Once the outbox commits, the file
    follows."""
    panic = FACTORY.make("alarm.panic", device="io", subject="P10", state="active")
    record = AlarmRecord(panic.type, panic.id, panic.time)
    async with (
        Outbox(tmp_path / "o.sqlite") as outbox,
        StateStore(tmp_path / "s.sqlite") as store,
    ):
        outbox.on_kept.append(store.outbox_kept)
        with contextlib.closing(sqlite3.connect(tmp_path / "o.sqlite", isolation_level=None)) as db:
            db.execute("BEGIN IMMEDIATE")  # the outbox cannot commit now
            outbox.hold(panic, keep=[ALARM.write("P10/alarm", record)])
            await store.put_alarm("P10/alarm", record)
            await eventually(lambda: outbox.last_error is not None)  # a commit was tried
            await store.put_meta("probe", 1)  # a state-store commit after the alarm
            assert "P10/alarm" in store.alarms
            assert stored_alarms(tmp_path / "s.sqlite") == []
            db.execute("ROLLBACK")
        await eventually(lambda: stored_alarms(tmp_path / "s.sqlite") == ["P10/alarm"])


def stored_alarms(path: Path) -> list[str]:
    """Keys of kind ``alarm`` in a state store file."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        return [str(r[0]) for r in db.execute("SELECT key FROM state WHERE kind = 'alarm'")]


async def test_a_reset_taken_back_from_a_spill_ends_its_kept_alarm_even_a_start_later(
    tmp_path: Path,
) -> None:
    """The spill gives back a panic's ``cleared`` without the kept state its commit
    carried. A start that took it back but died before deleting the panic's record
    must not leave the next start to latch the panic again (a fresh review of the fix
    of 2026-12-05): the marker committed with the rows keeps the check due."""
    path = tmp_path / "o.sqlite"
    panic = FACTORY.make("alarm.panic", device="io", subject="P10", state="active")
    async with Outbox(path) as outbox:
        record = AlarmRecord(panic.type, panic.id, panic.time)
        await outbox.append(panic, keep=[ALARM.write("P10/alarm", record)])
        stream = outbox.stream
    cleared = FACTORY.make(
        "alarm.panic", device="io", subject="P10", state="cleared", incident=panic.id
    )
    payload = cleared.stored(2, stream).to_json()
    row = (2, 2, stream, cleared.id, cleared.type, 1, cleared.topic_suffix, payload,
           len(payload), True, 2.0)  # fmt: skip
    spill.write(spill.path_for(path, stream), [(row, ())])  # without its kept state
    async with Outbox(path) as outbox:  # takes the row back, then "dies": no check
        assert outbox.spilled_back == 1 and outbox.kept(UNCHECKED)
    async with Outbox(path) as outbox, StateStore(tmp_path / "s.sqlite") as store:
        assert outbox.spilled_back == 0
        await restore_alarms(store, outbox)
        assert "P10/alarm" not in store.alarms
        assert "P10/alarm" not in outbox.kept(ALARM)
    async with Outbox(path) as outbox:  # the delete and the marker went in one commit
        assert not outbox.kept(ALARM) and not outbox.kept(UNCHECKED)
