"""The event data inside a DC-09 message: SIA DC-03 (``SIA-DCS``) and Contact ID (``ADM-CID``).

SIA DC-03 data, as panels send it inside DC-09 (``realdata/dc09/*.txt``)::

    Nri1/BA501/BA502          N block: modifiers (ri area, id user, pi, da, ti …) and codes
    Nri0000pi0006da10-25-18ti14:37:53UT0000^$PR,SCOMPARSA ,Centrale^    (Italian panels)
    NRR|Atest                 an A block: ASCII text for the message (fioletoven/dc09)
    Nri04/OP001NM             text right after a code's number belongs to it (pysiaalarm)

A modifier applies to every code after it in its block. Contact ID inside DC-09 is
``Q EEE GG ZZZ`` (``1120 01 003``: new event 120, partition 01, zone 003) without the
account's MT and checksum digits (``realdata/dc09/contact_id_message_examples.json``).
"""

from __future__ import annotations

import re
from dataclasses import replace

from gateway.events.panel_observation import PanelReport, Qualifier

_CID = re.compile(r"^([136])(\d{3}) (\d{2}) (\d{3})$")
_QUALIFIERS: dict[str, Qualifier] = {"1": "new", "3": "restore", "6": "status"}
_TOKEN = re.compile(
    r"(?P<sep>/)"
    r"|\^(?P<text>[^^]*)\^"
    r"|(?P<mod>[a-z]{2})(?P<value>\d\d-\d\d-\d\d|\d\d:\d\d(?::\d\d)?|[0-9]*)"
    r"|(?P<code>[A-Z]{2})(?P<number>[0-9]*)(?P<extra>[^/^|]*)"
)


class DataError(ValueError):
    """Event data that is neither SIA DC-03 nor Contact ID as DC-09 carries them."""


def readable_payload(token: str, payload: str) -> bool:
    """Does ``payload`` read as the event data of a ``token`` message (``ADM-CID``:
    Contact ID; ``SIA-DCS``: SIA DC-03 with at least one code)? Used to find where a
    random pad ends (:func:`drivers.dc09.content.parse_decrypted`)."""
    try:
        if token == "ADM-CID":
            parse_cid(payload)
            return True
        if token == "SIA-DCS":
            return bool(parse_sia(payload))
    except DataError:
        return False
    return False


def parse_cid(payload: str) -> PanelReport:
    """One Contact ID event (``Q EEE GG ZZZ``).

    Raises:
        DataError: not four fields of 1, 3, 2 and 3 digits with Q in 1, 3, 6.
    """
    match = _CID.match(payload.strip())
    if match is None:
        raise DataError(f"Contact ID {payload!r} is not 'Q EEE GG ZZZ'")
    qualifier, code, partition, number = match.groups()
    return PanelReport(
        protocol="ADM-CID",
        code=code,
        qualifier=_QUALIFIERS[qualifier],
        partition=int(partition),
        number=int(number),
    )


def parse_sia(payload: str) -> tuple[PanelReport, ...]:
    """The SIA codes of a DC-03 data payload, in the order sent (empty payload: none).

    Raises:
        DataError: a block that is neither N, O nor A; a block without a code; bytes
            that are no modifier, code, text or separator.
    """
    if not payload:
        return ()
    reports: list[PanelReport] = []
    for block in payload.split("|"):
        kind, body = block[:1], block[1:]
        if kind == "A":
            _attach_text(reports, body)
        elif kind in ("N", "O"):
            reports.extend(_block(body))
        else:
            raise DataError(f"SIA block {block[:30]!r} is not N, O or A")
    if not reports:
        raise DataError(f"no SIA code in {payload[:60]!r}")
    return tuple(reports)


def _block(body: str) -> list[PanelReport]:
    modifiers: dict[str, str] = {}
    reports: list[PanelReport] = []
    pos = 0
    while pos < len(body):
        match = _TOKEN.match(body, pos)
        if match is None or match.end() == pos:
            raise DataError(f"SIA data {body[pos : pos + 30]!r} is no modifier, code or text")
        pos = match.end()
        if match["text"] is not None:
            _attach_text(reports, match["text"])
        elif match["mod"] is not None:
            modifiers[match["mod"]] = match["value"]
        elif match["code"] is not None:
            reports.append(_report(match["code"], match["number"], match["extra"], modifiers))
    if not reports:
        raise DataError(f"SIA block {body[:30]!r} has no event code")
    return reports


def _report(code: str, number: str, extra: str, modifiers: dict[str, str]) -> PanelReport:
    rest = tuple((k, v) for k, v in modifiers.items() if k not in ("ri", "id"))
    return PanelReport(
        protocol="SIA-DCS",
        code=code,
        partition=_int(modifiers.get("ri")),
        number=_int(number),
        user=_int(modifiers.get("id")),
        text=extra.strip() or None,
        modifiers=rest,
    )


def _attach_text(reports: list[PanelReport], text: str) -> None:
    """Text goes with the code before it (an A block: with the last code of the message)."""
    if not reports:
        raise DataError(f"text {text[:30]!r} before any SIA code")
    last = reports[-1]
    joined = " ".join(t for t in (last.text, text.strip()) if t)
    reports[-1] = replace(last, text=joined or None)


def _int(text: str | None) -> int | None:
    return int(text) if text else None
