"""What a panel's Contact ID or SIA code means on our side: the event type and state.

The project's own table (the daemon never reads ``../shared``); ``tests/panels/
test_panel_codes.py`` checks it against ``realdata/dc09/contact_id_event_codes.csv``
and ``sia_event_codes.csv``: every code of those tables is here, no other, and the
Contact ID → SIA pairs are the table's.

Contact ID (SIA DC-05): the qualifier gives the state — 1 new event (``active``),
3 restore (``cleared``), 6 still present (``active``); for open/close codes 1 is an
opening (``area.disarmed``) and 3 a closing (``area.armed``). ZZZ is a user number
for the 4xx codes (open/close, remote access, access control), a zone otherwise.
SIA (DC-03): the code itself says alarm, restore, trouble, bypass (``BA`` burglary
alarm, ``BH`` its restore, ``BT`` trouble, ``BB`` bypass); what its number means is
the table's "concerns" column (zone, user, area, other).

Link tests (Contact ID 602 periodic test, SIA ``RP`` automatic test) restart the
panel's supervision and make no event. A code in neither table is reported as
``alarm.panel_unknown`` (priority 2) with the code as received, never refused; it is
``instant``: nothing can restore a code nobody knows, so it opens no incident (one
kept open stayed "in alarm" for ever: a review of 2026-12-06).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from gateway.events.model import State

NumberKind = Literal["zone", "user", "area", "other"]
AREA_TYPES = ("area.armed", "area.disarmed")
OPEN_CLOSE = "open/close"
"""Pseudo type of a Contact ID open/close code: the qualifier picks armed or disarmed."""
LINK_TEST = "link_test"
"""Pseudo type of a periodic test report: supervision only, no event."""
UNKNOWN = "alarm.panel_unknown"


@dataclass(frozen=True, slots=True)
class Meaning:
    """What a code means here.

    Attributes:
        type: our event type (``alarm.panic``), :data:`LINK_TEST`, or :data:`UNKNOWN`.
        state: ``active``/``cleared``/``instant``.
        number: what the number sent with the code is (zone, user, area, other).
        sia: the SIA code to report beside a Contact ID code (the table's pair),
            or the Contact ID code beside a SIA code (in ``cid``).
        cid: the Contact ID code (as received, or the table's pair of a SIA code).
    """

    type: str
    state: State
    number: NumberKind
    sia: str | None
    cid: str | None


def _words(text: str) -> list[str]:
    return text.split()


def _codes(spec: str) -> dict[str, str]:
    """``"type: c1 c2 …; type: …"`` → code → type."""
    out: dict[str, str] = {}
    for part in spec.split(";"):
        type_, _, codes = part.partition(":")
        for code in codes.split():
            out[code] = type_.strip()
    return out


# Contact ID event codes by our type (categories of the Ademco Contact ID list).
CID_TYPES = _codes(
    """
    alarm.medical: 100 101 102;
    alarm.fire: 110 111 112 113 114 115 116 117 118;
    alarm.panic: 120 121 122 123 124 125;
    alarm.intrusion: 130 132 133 134 135 136 138 139 140 146 374;
    alarm.perimeter: 131;
    alarm.tamper: 137 144 145 316 341 383;
    alarm.gas: 151 162;
    alarm.technical: 150 152 153 154 155 156 157 158 159 161 163 168 169;
    fault.panel: 141 142 143 147 200 201 202 203 204 205 206 300 301 303 304 305 306 307
        308 310 312 313 314 320 321 322 323 324 325 326 327 330 331 332 333 334 335 336
        337 339 342 343 344 345 350 351 352 353 354 355 356 357 373 375 376 608 926 954 961;
    fault.low_battery: 302 309 311 338 384;
    fault.line: 370 371 372 377 378 380 381 382 385 386 387 388 389 391 392 393;
    open/close: 400 401 402 403 407 408 409 441 442 456;
    zone.bypassed: 570 571 572 573 574 575 576 577 578 579;
    link_test: 602;
    panel.event: 404 405 406 411 412 413 414 415 416 421 422 423 424 425 426 427 428 429
        430 431 432 433 434 435 436 450 451 452 453 454 455 457 458 459 461 462 463 464 465
        466 501 520 521 522 523 524 525 526 527 531 532 551 552 553 601 603 604 605 606 607
        609 611 612 613 614 615 616 621 622 623 624 625 626 627 628 630 631 632 641 642 651
        654 900 901 902 910 911 912 913 914 915 916 917 918 919 920 921 922 923 924 925 927
        928 929 962 999
    """
)

# Contact ID code → (SIA code of Q1, SIA code of Q3), as the Contact ID table pairs them.
CID_SIA: dict[str, tuple[str, str]] = {
    item[:3]: (item[4:6], item[7:9])
    for item in _words(
        """
    100:MA/MH 101:QA/QH 110:FA/FH 111:FA/FH 112:FA/FH 113:WA/WH 114:KA/KH 117:FA/FH
    120:PA/PH 121:HA/HH 122:HA/HH 124:HA/HH 125:HA/HH 130:BA/BH 131:BA/BH 132:BA/BH
    133:BA/BH 134:BA/BH 135:BA/BH 136:BA/BH 137:TA/TR 138:BA/BH 139:BA/BH 140:BA/BH
    143:ET/ER 144:TA/TR 146:HA/HH 150:UA/UH 151:GA/GH 158:KA/KH 159:ZA/ZH 162:GA/GH
    300:YX/YZ 301:AT/AR 302:YT/YR 303:YX/YZ 304:YX/YZ 305:YW/YZ 306:YX/YZ 307:YX/YZ
    308:YX/YZ 309:YT/YR 310:YX/YZ 311:YM/YR 312:YP/YQ 320:RC/RO 321:YX/YZ 322:YX/YZ
    323:RC/RO 324:RC/RO 325:RC/RO 330:YX/YZ 331:YX/YZ 332:YX/YZ 333:ET/ER 334:YX/YZ
    335:VO/VI 336:VT/VR 337:ET/ER 338:ET/ER 339:ET/ER 341:ET/ER 342:ET/ER 343:ET/ER
    344:YC/YK 350:YC/YK 351:LT/LR 352:LT/LR 353:YC/YK 354:YC/YK 355:YC/YK 356:YC/YK
    357:YC/YK 373:FT/FJ 374:EA/BH 375:PT/PJ 376:HT/HR 380:YX/YZ 381:YC/YK 382:YC/YK
    393:YX/YZ 400:OP/CL 401:OP/CL 402:OB/CB 403:OA/CA 406:OC/OC 407:OQ/CQ 408:OP/CL
    409:OS/CS 441:CG/CG 453:OI/OI 454:CI/CI 456:CG/OG 457:EE/EE 461:DD/DD 462:DO/DO
    463:YY/YY 412:RB/RB 414:YT/YT 421:DD/DD 423:DF/DF 570:BB/BU 601:RX/RX 602:RP/RP
    604:FX/FK 608:TX/TX 622:JL/JL 623:JL/JL 624:JO/JO 625:JT/JT 626:JD/JD 627:LB/LB
    628:LX/LX 632:JS/JS 654:NA/NA 900:RR/RR
    """
    )
}

# SIA codes by (our type, state). Families of alarm codes follow DC-03's scheme:
# xA alarm, xH/xR restore, xB/xU bypass/unbypass, xT/xS trouble/supervisory, xJ
# trouble restore, xX test (B burglary, F fire, G gas, H hold-up, K heat, M medical,
# P panic, Q emergency, S sprinkler, T tamper, U untyped, W water, Z freeze).
_SIA_SPEC: tuple[tuple[str, State, str], ...] = (
    ("alarm.intrusion", "active", "BA BG BM BV CM DF DL EA EZ XM"),
    ("alarm.intrusion", "cleared", "BH BR DH DR"),
    ("alarm.fire", "active", "FA FG FM KA SA"),
    ("alarm.fire", "cleared", "FH FR KH KR SH SR"),
    ("alarm.gas", "active", "GA"),
    ("alarm.gas", "cleared", "GH GR"),
    ("alarm.panic", "active", "HA PA ND"),
    ("alarm.panic", "cleared", "HH HR PH PR"),
    ("alarm.medical", "active", "MA QA"),
    ("alarm.medical", "cleared", "MH MR QH QR"),
    ("alarm.tamper", "active", "AA ES JA TA TT XS"),
    ("alarm.tamper", "cleared", "EJ JC TH TJ TR XJ"),
    ("alarm.technical", "active", "UA UG WA ZA"),
    ("alarm.technical", "cleared", "UH UR WH WR ZH ZR"),
    ("alarm.panel_unknown", "instant", "UX"),
    (
        "fault.line",
        "active",
        "AS BD BS BT BZ FS FT FW FY FZ GS GT HS HT KS KT MS MT PS PT QS QT "
        "SS ST US UT UY UZ WS WT ZS ZT",
    ),
    ("fault.line", "cleared", "AN BE BJ FJ FQ FV GJ HJ KJ MJ PJ QJ SJ UJ WJ ZJ"),
    (
        "fault.panel",
        "active",
        "AT DT EM ET IA LT NC NT OU PF RA RT RY SM VO VT XL XQ XX YA YC YD YF YI YN YO YP YS YU YX",
    ),
    ("fault.panel", "cleared", "AR EN ER IR LR NR OV PO VI VR XC XH YE YH YJ YK YQ YZ"),
    ("fault.low_battery", "active", "XT YM YT"),
    ("fault.low_battery", "cleared", "XR YR"),
    ("zone.bypassed", "active", "BB FB GB HB KB MB PB QB SB TB UB WB ZB"),
    ("zone.bypassed", "cleared", "BU FU GU HU KU MU PU QU SU TU UU WU ZU"),
    ("area.armed", "instant", "CA CF CG CJ CK CL CP CQ CS NF NL NM"),
    ("area.disarmed", "instant", "CB OA OB OG OH OJ OK OL OP OQ OR OS"),
    (LINK_TEST, "instant", "RP"),
    (
        "panel.event",
        "instant",
        "AB AF BC BX CC CD CE CI CO CR CT CW CX CZ DA DB DC DD DE DG DI "
        "DJ DK DM DN DO DP DQ DS DU DV DW DX DY DZ EE EX FC FI FK FL FX GX JD JH JK JL JO JP "
        "JR JS JT JV JX JY JZ LB LD LE LF LS LU LX MI NA NB NE NO NP NS OC OI OT OZ PC PD PE "
        "PG RB RC RD RN RO RR RS RU RX SC TC TE TP TS TW TX TZ VX VY VZ XA XE XF XI XW "
        "YB YG YW YY ZY ZZ",
    ),
)
SIA_MEANING: dict[str, tuple[str, State]] = {
    code: (type_, state) for type_, state, codes in _SIA_SPEC for code in _words(codes)
}

# What the number after a SIA code is ("concerns" column of the SIA table).
SIA_ZONE = frozenset(
    _words(
        """
    AB AF AN AS BA BB BD BE BG BH BJ BM BR BS BT BU BX BZ CM CS CZ EA EZ FA FB FC FG FH FJ
    FL FM FQ FR FS FT FU FV FW FX FY FZ GA GB GH GJ GR GS GT GU GX HA HB HH HJ HR HS HT HU
    IA IR KA KB KH KJ KR KS KT KU MA MB MH MJ MR MS MT MU NA NP NS OS OZ PA PB PF PH PJ PR
    PS PT PU QA QB QH QJ QR QS QT QU RY SA SB SH SJ SM SR SS ST SU TA TB TP TR TT TU UA UB
    UG UH UJ UR US UT UU UY UZ WA WB WH WJ WR WS WT WU XE XF XI XM XR XT XW ZA ZB ZH ZJ ZR
    ZS ZT ZU
    """
    )
)
SIA_USER = frozenset(
    _words(
        """
    BC CE CF CJ CK CL CP CQ CR DA DB EE JD JH JK JP JS JT JV JX JY JZ OC OH OJ OK OL OP OQ
    OR OT PC PD RX
    """
    )
)
SIA_AREA = frozenset(
    _words("BV CA CB CC CD CG CI CT CW FI FK JA JC JR NB ND NE NF NL NM NO OA OB OG OI")
)
# SIA code → the Contact ID code the Contact ID table pairs with it (the first such row).
SIA_CID: dict[str, str] = {}
for _cid, (_new, _restore) in sorted(CID_SIA.items()):
    SIA_CID.setdefault(_new, _cid)
    SIA_CID.setdefault(_restore, _cid)


def cid_meaning(code: str, qualifier: str | None) -> Meaning:
    """The meaning of Contact ID ``code`` with ``qualifier`` (``new``/``restore``/``status``)."""
    number: NumberKind = "user" if code.startswith("4") else "zone"
    type_ = CID_TYPES.get(code)
    pair = CID_SIA.get(code)
    restore = qualifier == "restore"
    sia = (pair[1] if restore else pair[0]) if pair else None
    if type_ is None:
        return Meaning(UNKNOWN, "instant", number, sia, code)
    if type_ == OPEN_CLOSE:
        return Meaning("area.armed" if restore else "area.disarmed", "instant", "user", sia, code)
    if type_ in ("panel.event", LINK_TEST):
        state: State = "instant"
    else:
        state = "cleared" if restore else "active"
    return Meaning(type_, state, number, sia, code)


def sia_meaning(code: str) -> Meaning:
    """The meaning of SIA ``code``."""
    number: NumberKind = (
        "zone"
        if code in SIA_ZONE
        else "user"
        if code in SIA_USER
        else "area"
        if code in SIA_AREA
        else "other"
    )
    found = SIA_MEANING.get(code)
    if found is None:  # most codes concern a zone: put it on the map as one
        return Meaning(UNKNOWN, "instant", "zone", code, None)
    return Meaning(found[0], found[1], number, code, SIA_CID.get(code))
