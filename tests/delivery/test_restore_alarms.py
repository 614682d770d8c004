"""An open alarm kept with its event in the outbox survives a cut the state store missed."""

from __future__ import annotations

from pathlib import Path

from gateway.delivery.outbox import Outbox
from gateway.delivery.reports import restore_alarms
from gateway.events.model import EventFactory
from gateway.runtime.state import ALARM, AlarmRecord
from gateway.runtime.state_store import StateStore

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
