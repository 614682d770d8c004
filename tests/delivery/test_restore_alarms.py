"""An open alarm kept with its event in the outbox survives a cut the state store missed."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from gateway.delivery.outbox import Outbox
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
    async with (
        Outbox(tmp_path / "o.sqlite") as outbox,
        StateStore(tmp_path / "s.sqlite") as store,
    ):
        assert await restore_alarms(store, outbox) == 1
        assert await restore_alarms(store, outbox) == 0  # idempotent
    async with StateStore(tmp_path / "s.sqlite") as store:
        assert dict(store.alarms) == {"P10/alarm": ALARM.decode(ALARM.encode(record))}


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
