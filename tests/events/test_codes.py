"""The project's own code table agrees with the real Contact ID / SIA tables."""

from __future__ import annotations

import csv
from pathlib import Path

from gateway.events.codes import KINDS


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def test_codes_match_realdata_tables(realdata: Path) -> None:
    cid = {r["code"]: r for r in _rows(realdata / "dc09" / "contact_id_event_codes.csv")}
    sia = {r["code"] for r in _rows(realdata / "dc09" / "sia_event_codes.csv")}
    checked = 0
    armed = [k.when_armed for k in KINDS.values() if k.when_armed is not None]
    assert len(armed) == 2
    for kind in [*KINDS.values(), *armed]:
        if kind.cid is not None:
            row = cid[kind.cid]
            mapped = row["sia_code_if_Q1_new_event"] or None  # some Contact ID codes have none
            assert kind.sia == mapped or kind.type == "device.online", kind.type
            if kind.sia_restore is not None:
                assert kind.sia_restore == row["sia_code_if_Q3_restore"], kind.type
            checked += 1
        for code in (kind.sia, kind.sia_restore):
            if code is not None:
                assert code in sia, (kind.type, code)
    assert checked >= 6


def test_panic_is_life_safety_with_pa_and_120() -> None:
    panic = KINDS["alarm.panic"]
    assert (panic.priority, panic.sia, panic.cid) == (1, "PA", "120")
    assert panic.alarm_class
    assert all(k.priority in range(1, 6) for k in KINDS.values())


def test_camera_analytics_alarm_only_when_armed_and_the_command_audit_is_never_shed() -> None:
    for type_ in ("camera.line_crossing", "camera.field_intrusion"):
        kind = KINDS[type_]
        assert kind.in_area(False).priority == 4 and not kind.in_area(False).alarm_class
        assert kind.in_area(True).priority == 2 and kind.in_area(True).type == type_
    assert KINDS["camera.tamper"].in_area(False).priority == 2
    assert KINDS["command.result"].priority == 3
