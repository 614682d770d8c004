"""Line supervision: what a zone's wiring says, from its raw inputs (GB 50394 §5.2.4).

Pure functions over the last readings of a zone's inputs; :mod:`gateway.alarm.zones`
turns the result into events. Three wirings:

* plain contact on a digital input: ``NO`` alarms when closed, ``NC`` when open;
  the line itself cannot be supervised;
* ``eol``: an analog input read as loop resistance, four bands (short, normal,
  alarm, cut; see :class:`gateway.config.alarm.EolLine`); a value between bands
  keeps the previous band;
* ``paired``: the alarm contact (NC) and the tamper contact in one cable on two
  digital inputs: tamper open alone = cover opened, both open = cable cut.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from gateway.config.alarm import EolLine, PairedLine, ZoneConfig

LineCondition = Literal["ok", "cut", "short"]


@dataclass(frozen=True, slots=True)
class ZoneReading:
    """What a zone's wiring reports now.

    Attributes:
        violated: the detector reports its alarm condition.
        line: ``ok``, or the line fault (``cut``/``short``) that hides the detector.
        tamper: the detector's own tamper loop is open (paired wiring only).
        raw: the analog value behind an ``eol`` reading, else None.
    """

    violated: bool
    line: LineCondition = "ok"
    tamper: bool = False
    raw: int | None = None


@dataclass(slots=True)
class ZoneInputs:
    """The last readings of one zone's inputs.

    Attributes:
        closed: digital input channel → contact closed.
        raw: the analog value (``eol`` zones), None until read.
        band: the last band the analog value fell in, None until one was seen.
    """

    closed: dict[int, bool] = field(default_factory=dict)
    raw: int | None = None
    band: Literal["short", "normal", "alarm", "cut"] | None = None


def alarm_contact(contact: str, closed: bool) -> bool:
    """True when a contact of this kind is in its alarm state (NO closed, NC open)."""
    return closed if contact == "NO" else not closed


def read_zone(zone: ZoneConfig, inputs: ZoneInputs) -> ZoneReading | None:
    """Classify ``zone`` from its inputs; None while some input has not been read yet."""
    line = zone.line
    if isinstance(line, EolLine):
        if inputs.band is None:
            return None
        if inputs.band == "cut" or inputs.band == "short":
            return ZoneReading(violated=False, line=inputs.band, raw=inputs.raw)
        return ZoneReading(violated=inputs.band == "alarm", raw=inputs.raw)
    main = inputs.closed.get(zone.input)
    if main is None:
        return None
    violated = alarm_contact(zone.contact, main)
    if not isinstance(line, PairedLine):
        return ZoneReading(violated=violated)
    tamper_closed = inputs.closed.get(line.tamper_input)
    if tamper_closed is None:
        return None
    tamper_open = alarm_contact(line.tamper_contact, tamper_closed)
    if violated and tamper_open:
        return ZoneReading(violated=False, line="cut")
    return ZoneReading(violated=violated, tamper=tamper_open)


def update_analog(zone: ZoneConfig, inputs: ZoneInputs, raw: int) -> None:
    """Record an analog reading of an ``eol`` zone; a value between bands keeps the band."""
    assert isinstance(zone.line, EolLine)
    inputs.raw = raw
    band = zone.line.classify(raw)
    if band is not None:
        inputs.band = band
