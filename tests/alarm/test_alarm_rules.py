"""The zone rules of GB 50394 and the rest of the alarm system, driven through
observations with a manual clock and a real SQLite state file."""

from __future__ import annotations

import contextlib
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from gateway.errors import CommandRefused
from gateway.runtime.state import META, AreaRecord
from gateway.runtime.state_store import StateStore
from simulators.center_commands import command_payload
from tests.alarm_support import Rig, local, rig


async def _disarm(r: Rig, area: str = "A") -> None:
    await r.system.disarm(area, by="duty-1")
    assert not r.system.areas.armed(area)


async def test_disarmed_panic_zone_still_alarms(tmp_path: Path) -> None:
    """GB 50394 §5.2.3: a panic zone is 24 h; disarming its area changes nothing."""
    async with rig(tmp_path) as r:
        await r.at_rest()
        await _disarm(r)
        await r.contact("io", 0, True)
    (panic,) = r.of("alarm.panic", "P1")
    assert (panic.state, panic.priority, panic.siacode, panic.cidcode) == ("active", 1, "PA", "120")
    assert panic.data["latched"] is True and panic.data["area"] == "A"


async def test_panic_stays_active_after_release_until_reset(tmp_path: Path) -> None:
    """GB 50394 §5.2.3: self-latching, no auto-reset; a held button cannot be reset."""
    async with rig(tmp_path) as r:
        await r.at_rest()
        await r.contact("io", 0, True)
        assert not await r.system.zones.reset("P1")  # still held
        await r.contact("io", 0, False)
        await r.advance(3600)
        assert r.states("alarm.panic", "P1") == ["active"]
        assert await r.system.zones.reset("P1")
    active, cleared = r.of("alarm.panic", "P1")
    assert cleared.state == "cleared" and cleared.siacode == "PH"
    assert cleared.data["incident"] == active.id and cleared.data["reset"] is True


async def test_an_alarm_is_kept_with_its_event_and_forgotten_with_its_end(tmp_path: Path) -> None:
    """The outbox holds an open alarm's record in the event's own transaction, so a cut
    right after the event cannot unlatch it (``gateway/delivery/reports.py``)."""
    async with rig(tmp_path) as r:
        await r.at_rest()
        await r.contact("io", 0, True)
        await r.contact("io", 0, False)
        assert await r.system.zones.reset("P1")
    active, cleared = r.of("alarm.panic", "P1")
    assert [(i, w.kind, w.key, w.data is None) for i, w in r.kept] == [
        (active.id, "alarm", "P1/alarm", False),
        (cleared.id, "alarm", "P1/alarm", True),
    ]
    assert r.kept[0][1].data["incident"] == active.id


async def test_panic_zone_can_be_neither_bypassed_nor_unlatched_by_config(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        with pytest.raises(CommandRefused, match="cannot be bypassed"):
            await r.system.zones.bypasses.bypass("P1", until=None, by="x", reason="test")
    assert r.system.zones.rules["P1"].latch and not r.system.zones.rules["P1"].bypassable


async def test_tamper_and_line_faults_alarm_while_disarmed(tmp_path: Path) -> None:
    """GB 50394 §5.2.4: tamper, line cut and line short raise alarms in every state."""
    async with rig(tmp_path) as r:
        await r.at_rest()
        await _disarm(r)
        await r.contact("io", 2, False)  # an intrusion detector while disarmed: nothing
        await r.contact("io", 1, False)  # the module's tamper switch
        await r.analog("ai", 0, 100)  # EOL loop shorted
        await r.analog("ai", 0, 65000)  # ... then cut
        await r.contact("io", 6, False)  # paired detector: cover opened
        await r.contact("io", 5, False)  # ... and the alarm loop too: the cable is cut
    assert r.of("alarm.intrusion") == []
    assert r.states("alarm.tamper", "T1") == ["active"]
    line_e1 = [(e.state, e.data["condition"]) for e in r.of("fault.line", "E1")]
    assert line_e1 == [("active", "short"), ("cleared", "ok"), ("active", "cut")]
    assert r.of("fault.line", "E1")[0].data["value"] == 100
    assert [(e.state, e.data["condition"]) for e in r.of("alarm.tamper", "D1")] == [
        ("active", "tamper"),
        ("cleared", "tamper"),
    ]
    assert [(e.state, e.data["condition"]) for e in r.of("fault.line", "D1")] == [("active", "cut")]
    fault = r.of("fault.line", "E1")[0]
    assert (fault.priority, fault.cidcode, fault.siacode) == (3, "380", "YX")


async def test_a_cut_line_on_an_armed_zone_is_its_alarm_too(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        await r.at_rest()
        await r.analog("ai", 0, 65535)
    assert r.states("fault.line", "E1") == ["active"]
    (alarm,) = r.of("alarm.intrusion", "E1")
    assert alarm.data["line"] == "cut"


async def test_eol_bands_report_alarm_and_a_value_between_bands_keeps_the_state(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path) as r:
        await r.at_rest()
        await r.analog("ai", 0, 30000)  # alarm band
        await r.analog("ai", 0, 23000)  # between normal and alarm: still alarm
        assert r.system.zones.zones["E1"].violated
        await r.analog("ai", 0, 12000)  # normal again
        await r.advance(5)  # the intrusion hold time
    assert r.states("alarm.intrusion", "E1") == ["active", "cleared"]
    assert r.of("fault.line") == []


async def test_intrusion_is_held_for_its_minimum_time_then_cleared(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        await r.at_rest()
        await r.contact("io", 2, False)
        await r.advance(1)
        await r.contact("io", 2, True)  # restored after 1 s of a 5 s hold
        assert r.states("alarm.intrusion", "I1") == ["active"]
        await r.advance(3)
        assert r.states("alarm.intrusion", "I1") == ["active"]
        await r.advance(1.5)
        await r.wait_for(lambda: len(r.of("alarm.intrusion", "I1")) == 2)
    active, cleared = r.of("alarm.intrusion", "I1")
    assert cleared.data["restored"] is True and cleared.data["incident"] == active.id
    assert (cleared.time - active.time).total_seconds() == pytest.approx(5.5)


async def test_latched_intrusion_zone_waits_for_reset(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        await r.at_rest()
        await r.contact("io", 7, False)
        await r.contact("io", 7, True)
        await r.advance(60)
        assert r.states("alarm.intrusion", "L1") == ["active"]
        assert await r.system.zones.reset("L1")
    assert r.states("alarm.intrusion", "L1") == ["active", "cleared"]


async def test_technical_zone_alarms_in_every_state(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        await r.at_rest()
        await _disarm(r)
        await r.contact("io", 4, True)
    (leak,) = r.of("alarm.technical", "X1")
    assert (leak.priority, leak.cidcode, leak.siacode) == (3, "150", "UA")


async def test_arming_with_an_open_zone_is_refused_unless_forced(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        await r.at_rest()
        await _disarm(r)
        await r.contact("io", 2, False)  # a window left open in the classroom block
        with pytest.raises(CommandRefused, match="open zones: I1"):
            await r.system.arm("A", by="duty-1")
        assert await r.system.arm("A", by="duty-1", force=True) == ["I1"]
        assert r.of("alarm.intrusion") == []  # bypassed, not alarmed
        await r.contact("io", 7, False)  # another zone of the area does alarm
        await _disarm(r)  # ends the until-disarm bypass
    armed = r.of("area.armed", "A")[-1]
    assert armed.data["bypassed"] == ["I1"] and armed.siacode == "CL"
    assert r.states("zone.bypassed", "I1") == ["active", "cleared"]
    bypass, unbypass = r.of("zone.bypassed", "I1")
    assert (bypass.siacode, unbypass.siacode, bypass.cidcode) == ("BB", "BU", "570")
    assert unbypass.data["reason"] == "disarmed"
    assert r.states("alarm.intrusion", "L1") == ["active"]


async def test_bypass_expires_and_a_zone_still_open_then_alarms(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        await r.at_rest()
        until = r.clock.now().replace(microsecond=0)
        await r.system.zones.bypasses.bypass(
            "I1", until=until.replace(hour=until.hour + 1), by="duty-1", reason="cleaning"
        )
        await r.contact("io", 2, False)
        await r.advance(3599)
        assert r.of("alarm.intrusion") == []
        await r.advance(2)
        await r.wait_for(lambda: bool(r.of("alarm.intrusion", "I1")))
    assert r.states("zone.bypassed", "I1") == ["active", "cleared"]
    assert r.of("zone.bypassed", "I1")[1].data["reason"] == "expired"


async def test_arming_state_bypasses_and_latches_survive_a_restart(tmp_path: Path) -> None:
    """GB 50394 commentary: after power returns the previous arming state is restored."""
    async with rig(tmp_path) as first:
        await first.at_rest()
        await _disarm(first)
        await first.system.arm("PERIM", by="duty-1")
        await first.system.zones.bypasses.bypass("L1", until=None, by="duty-1", reason="repair")
        await first.contact("io", 0, True)  # a panic, latched
        await first.contact("io", 0, False)
    panic = first.of("alarm.panic", "P1")[0]
    async with rig(tmp_path, clock=first.clock) as second:
        assert not second.system.areas.armed("A") and second.system.areas.armed("PERIM")
        assert second.system.zones.bypasses.describe("L1") == "disarm"
        await second.at_rest()
        assert second.of("alarm.panic") == []  # not raised again
        assert await second.system.zones.reset("P1")
    (cleared,) = second.of("alarm.panic", "P1")
    assert cleared.data["incident"] == panic.id
    assert second.of("area.armed") == second.of("area.disarmed") == []


async def test_alarm_of_a_linked_zone_sounds_the_siren_for_its_duration(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        await r.at_rest()
        await r.contact("io", 2, False)
        await r.wait_for(lambda: r.writes == [("io", 0, True)])  # from the timers' task
        await r.advance(30)
        await r.contact("io", 2, True)
        await r.advance(31)
        await r.wait_for(lambda: len(r.writes) == 2)
    assert r.writes == [("io", 0, True), ("io", 0, False)]
    on, off = r.of("output.switched", "S1")
    assert (on.state, off.state) == ("active", "cleared")
    assert off.data["incident"] == on.id and on.data["reason"] == "alarm I1"


async def test_a_siren_write_that_fails_is_retried_and_reasserted_after_power_cycle(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path) as r:
        await r.at_rest()
        r.failing_modules.add("io")
        await r.contact("io", 2, False)
        await r.advance(3)
        assert r.writes == [] and r.of("output.switched") == []
        r.failing_modules.clear()
        await r.advance(1)
        await r.wait_for(lambda: r.writes == [("io", 0, True)])
        await r.online("io")  # the module was power cycled: its relays came back off
        await r.wait_for(lambda: r.writes == [("io", 0, True), ("io", 0, True)])
    assert r.states("output.switched", "S1") == ["active"]


async def test_disarming_silences_the_area_siren(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        await r.at_rest()
        await r.system.arm("PERIM", by="duty-1")
        await r.contact("io", 3, False)
        await r.wait_for(lambda: r.writes == [("io", 0, True)])
        silenced = await r.system.disarm("PERIM", by="duty-1")
    assert silenced == ["S1"]
    assert r.writes == [("io", 0, True), ("io", 0, False)]
    assert r.of("output.switched", "S1")[1].data["reason"] == "area PERIM disarmed"


async def test_an_unusable_state_file_opens_unread_and_keeps_changes_in_memory_only(
    tmp_path: Path,
) -> None:
    """The start goes on (the alarm path must run), changes act in memory and are
    counted, and nothing is written to the file."""
    (tmp_path / "file").write_text("not a directory", encoding="utf-8")
    async with StateStore(tmp_path / "file" / "state.sqlite") as store:
        assert store.unread is not None and "file/state.sqlite" in store.unread
        assert store.areas == {}
        await store.put_area("PERIM", AreaRecord(True, datetime.now(UTC), "duty-1"))
        assert store.areas["PERIM"].armed
        await store.put(META, "behind", 1, wait=False)
        assert store.meta("behind") == 1
        assert store.unsaved == 2 and store.commits == 0
    assert (tmp_path / "file").read_text(encoding="utf-8") == "not a directory"


async def test_a_line_fault_still_present_after_a_restart_is_not_reported_again(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path) as first:
        await first.at_rest()
        await _disarm(first)
        await first.analog("ai", 0, 100)  # shorted
    async with rig(tmp_path, clock=first.clock) as second:
        await second.at_rest()  # the loop reads normal: the repair happened while off
    async with rig(tmp_path, clock=first.clock) as third:
        await third.analog("ai", 0, 100)
        await third.analog("ai", 0, 110)
    assert first.states("fault.line", "E1") == ["active"]
    (cleared,) = second.of("fault.line", "E1")
    assert cleared.state == "cleared"
    assert cleared.data["incident"] == first.of("fault.line", "E1")[0].id
    assert third.states("fault.line", "E1") == ["active"]
    async with rig(tmp_path, clock=first.clock) as fourth:
        await fourth.analog("ai", 0, 120)  # still shorted after another restart
    assert fourth.of("fault.line") == []


async def test_with_the_state_file_unread_a_command_issued_before_the_start_is_refused(
    tmp_path: Path,
) -> None:
    """The replay guard of the runs before is in the file that could not be read: a
    command issued before this start may already have been carried out. One issued
    after it is obeyed (its guard is kept in memory)."""
    (tmp_path / "state.sqlite").mkdir()  # a state file SQLite cannot open
    async with rig(tmp_path) as r:
        before = r.clock.now() - timedelta(seconds=r.system.cfg.commands.clock_skew_s + 1)
        _, old = command_payload(
            f"{r.system.cfg.topic_prefix}/cmd/ping",
            None,
            key=None,
            issued_at=before,
            expires_at=r.clock.now() + timedelta(seconds=30),  # not expired
        )
        refused = await r.commands.handle("ping", old, False)
        assert refused["data"]["reason"] == "guard_unknown", refused
        _, fresh = command_payload(
            f"{r.system.cfg.topic_prefix}/cmd/ping", None, key=None, issued_at=r.clock.now()
        )
        assert (await r.commands.handle("ping", fresh, False))["status"] == "ok"
        assert (await r.commands.handle("ping", fresh, False))["data"]["reason"] == "duplicate"


async def test_a_record_its_kind_cannot_decode_is_left_out_and_counted(tmp_path: Path) -> None:
    """One bad record (written by hand, or by another version) stopped the start, and
    systemd restarted the daemon into the same error; now it is left out and logged,
    and the area starts as configured."""
    path = tmp_path / "state.sqlite"
    async with StateStore(path) as store:
        await store.put_area("A", AreaRecord(True, datetime.now(UTC), "duty-1"))
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("""INSERT INTO state VALUES ('area', 'PERIM', '{"armed": true}')""")
        db.execute("""INSERT INTO state VALUES ('meta', 'torn', '{"not json')""")
        db.commit()
    with capture_logs() as logs:
        async with StateStore(path) as store:
            assert store.unread is None
            assert set(store.areas) == {"A"} and store.bad_values == 2
            assert store.meta("torn") is None
    # what was stored is kept in the log: the next write of its key replaces it
    kept = {log["stored"] for log in logs if log["event"] == "state.value_unreadable"}
    assert kept == {'{"armed": true}', '{"not json'}
    async with rig(tmp_path) as r:  # the alarm system starts on it
        assert not r.system.areas.armed("PERIM")  # its configured initial state


async def test_with_a_torn_replay_guard_a_command_issued_before_the_start_is_refused(
    tmp_path: Path,
) -> None:
    """The guard's value left out (not JSON) is as unknown as an unread file: a command
    accepted before the restart cannot be replayed after it (review of 2026-12-03)."""
    async with rig(tmp_path) as r:
        issued = r.clock.now()
        _, ping = command_payload(
            f"{r.system.cfg.topic_prefix}/cmd/ping",
            None,
            key=None,
            issued_at=issued,
            expires_at=issued + timedelta(seconds=120),
        )
        assert (await r.commands.handle("ping", ping, False))["status"] == "ok"
        await r.advance(60)  # the restart comes a minute later, the command not expired
    with contextlib.closing(sqlite3.connect(tmp_path / "state.sqlite")) as db:
        db.execute("UPDATE state SET value = '{\"torn' WHERE key = 'commands_seen'")
        db.commit()
    async with rig(tmp_path, clock=r.clock) as again:
        replayed = await again.commands.handle("ping", ping, False)
        assert replayed["data"]["reason"] == "guard_unknown", replayed


async def test_a_wall_clock_stepped_back_does_not_refuse_fresh_commands_while_unread(
    tmp_path: Path,
) -> None:
    """The start is kept on the monotonic clock: booted an hour ahead, then corrected
    by NTP, the gateway still obeys a command issued now (review of 2026-12-03: the
    center could not reset a panic for an hour)."""
    (tmp_path / "state.sqlite").mkdir()  # a state file SQLite cannot open
    async with rig(tmp_path, start=local("2026-11-30 11:00")) as r:
        await r.clock.step(-3600)  # the correction
        _, reset = command_payload(
            f"{r.system.cfg.topic_prefix}/cmd/ping", None, key=None, issued_at=r.clock.now()
        )
        assert (await r.commands.handle("ping", reset, False))["status"] == "ok"
