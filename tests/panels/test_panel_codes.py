"""The panel code table (``gateway/panels/codes.py``) agrees with the real Contact ID
and SIA tables (``realdata/dc09/*.csv``), and maps the codes that matter the way a
duty officer expects."""

from __future__ import annotations

import csv
from pathlib import Path

from gateway.events.codes import KINDS
from gateway.panels import codes
from gateway.panels.codes import LINK_TEST, UNKNOWN, cid_meaning, sia_meaning


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def test_every_contact_id_code_of_the_table_and_no_other_is_known(realdata: Path) -> None:
    rows = _rows(realdata / "dc09" / "contact_id_event_codes.csv")
    assert set(codes.CID_TYPES) == {r["code"] for r in rows}
    pairs = {
        r["code"]: (r["sia_code_if_Q1_new_event"], r["sia_code_if_Q3_restore"])
        for r in rows
        if r["sia_code_if_Q1_new_event"] or r["sia_code_if_Q3_restore"]
    }
    assert pairs == codes.CID_SIA


def test_every_sia_code_of_the_table_and_no_other_is_known(realdata: Path) -> None:
    rows = _rows(realdata / "dc09" / "sia_event_codes.csv")
    assert set(codes.SIA_MEANING) == {r["code"] for r in rows}
    concerns = {r["code"]: r["concerns"] for r in rows}
    zone = {
        c
        for c, what in concerns.items()
        if what in ("Zone or point", "Point number", "Zone number")
    }
    assert zone == codes.SIA_ZONE
    assert {c for c, what in concerns.items() if what in ("User number", "User")} == codes.SIA_USER
    assert {c for c, what in concerns.items() if what == "Area number"} == codes.SIA_AREA


def test_every_type_the_table_names_is_an_event_type_we_define() -> None:
    types = {t for t in codes.CID_TYPES.values()} | {t for t, _ in codes.SIA_MEANING.values()}
    types -= {LINK_TEST, codes.OPEN_CLOSE}
    assert types <= set(KINDS), types - set(KINDS)


def test_contact_id_qualifiers_give_the_state() -> None:
    panic = cid_meaning("120", "new")
    assert (panic.type, panic.state, panic.sia, panic.cid) == ("alarm.panic", "active", "PA", "120")
    restore = cid_meaning("130", "restore")
    assert (restore.type, restore.state, restore.sia) == ("alarm.intrusion", "cleared", "BH")
    assert cid_meaning("131", "new").type == "alarm.perimeter"
    assert cid_meaning("130", "status").state == "active"  # still present
    closing, opening = cid_meaning("401", "restore"), cid_meaning("401", "new")
    assert (closing.type, closing.sia, closing.number) == ("area.armed", "CL", "user")
    assert (opening.type, opening.sia) == ("area.disarmed", "OP")
    assert cid_meaning("602", "new").type == LINK_TEST
    bypass = cid_meaning("570", "restore")
    assert (bypass.type, bypass.state, bypass.sia) == ("zone.bypassed", "cleared", "BU")
    unknown = cid_meaning("777", "new")
    assert (unknown.type, unknown.cid, unknown.sia) == (UNKNOWN, "777", None)


def test_sia_codes_say_alarm_restore_trouble_bypass() -> None:
    assert sia_meaning("PA").cid == "120" and sia_meaning("PA").type == "alarm.panic"
    assert sia_meaning("HA").type == "alarm.panic"  # hold-up / duress
    assert (sia_meaning("BH").type, sia_meaning("BH").state) == ("alarm.intrusion", "cleared")
    assert (sia_meaning("BT").type, sia_meaning("BT").state) == ("fault.line", "active")
    assert (sia_meaning("FA").type, sia_meaning("FA").cid) == ("alarm.fire", "110")
    assert sia_meaning("CL").type == "area.armed" and sia_meaning("CL").number == "user"
    assert sia_meaning("RP").type == LINK_TEST
    assert sia_meaning("QZ").type == UNKNOWN and sia_meaning("QZ").sia == "QZ"
    assert sia_meaning("UX").type == UNKNOWN  # SIA's own "undefined alarm"


def test_life_safety_codes_are_priority_one() -> None:
    for code in ("100", "110", "120", "121", "151", "162"):
        assert KINDS[cid_meaning(code, "new").type].priority == 1, code
    for code in ("MA", "FA", "PA", "HA", "GA", "KA", "ND"):
        assert KINDS[sia_meaning(code).type].priority == 1, code
