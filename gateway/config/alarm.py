"""Configuration of the intrusion alarm system: zones, areas, schedules, outputs, commands.

``[[zones]]``, ``[zone_types.<type>]``, ``[[areas]]``, ``[[schedules]]``,
``[[outputs]]`` and ``[commands]`` of the gateway's TOML file. The root model in
:mod:`gateway.config.root` holds them and runs the cross-checks of
:mod:`gateway.config.alarm_checks`. Units are in the field names (``_s``
seconds, ``_ms`` milliseconds); times of day are local (``[site] timezone``).
Nothing here is silently adjusted (STYLE.md rule 10).

Rules that are not configurable (GB 50394):

* ``panic`` zones are 24 h, always latch, and can be neither disarmed nor
  bypassed (§5.2.3);
* ``tamper`` and ``technical`` zones are 24 h (§5.2.4): they alarm whatever the
  arming state of their area;
* a zone without ``area`` counts as always armed.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import Field, model_validator

from gateway.config.base import FilePath, Ident, Strict
from gateway.config.keys import KeyEncoding, read_key

ZoneType = Literal["panic", "intrusion", "perimeter", "tamper", "technical"]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
TWENTY_FOUR_HOUR: frozenset[str] = frozenset({"panic", "tamper", "technical"})
"""Zone types that alarm in every arming state (GB 50394 §5.2.3, §5.2.4)."""

_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$|^24:00$")


Band = tuple[int, int]


class EolLine(Strict):
    """``line = {type = "eol", …}``: the zone is an analog input read as loop resistance.

    An end-of-line (double EOL) loop makes four states tell apart by the raw value
    the module reports (0..65535 over its configured range, e.g. ioLogik E1240 "AI
    raw value"): ``short`` (loop shorted), ``normal``, ``alarm`` (contact open, the
    second resistor in series), ``cut`` (loop open). Each band is ``[low, high]``
    inclusive; bands must not overlap. A value in a gap between bands keeps the
    previous state (hysteresis), so a value that wanders on a band edge does not
    flap. ``input`` of the zone is then the analog channel (``AI0`` = 0).
    """

    type: Literal["eol"]
    short: Band
    normal: Band
    alarm: Band
    cut: Band

    @model_validator(mode="after")
    def _bands(self) -> EolLine:
        named = [("short", self.short), ("normal", self.normal)]
        named += [("alarm", self.alarm), ("cut", self.cut)]
        bands = sorted(named, key=lambda b: b[1][0])
        for name, (low, high) in bands:
            if not 0 <= low <= high <= 65535:
                raise ValueError(f"band {name} [{low}, {high}] must be 0 <= low <= high <= 65535")
        for (name_a, (_, high_a)), (name_b, (low_b, _)) in itertools.pairwise(bands):
            if low_b <= high_a:
                raise ValueError(f"bands {name_a} and {name_b} overlap")
        return self

    def classify(self, raw: int) -> Literal["short", "normal", "alarm", "cut"] | None:
        """The band ``raw`` falls in, or None for a value between bands."""
        for name in ("short", "normal", "alarm", "cut"):
            low, high = getattr(self, name)
            if low <= raw <= high:
                return name
        return None


class PairedLine(Strict):
    """``line = {type = "paired", tamper_input = N}``: alarm and tamper loops on two inputs.

    The detector's alarm contact (``NC``) is on the zone's ``input``, its tamper
    contact on ``tamper_input`` of the same module, in the same cable. Tamper loop
    open alone: the detector's cover is open (``alarm.tamper``, 24 h). Both loops
    open at once: the cable is cut (``fault.line`` ``cut``). A short cannot be seen
    on digital inputs.
    """

    type: Literal["paired"]
    tamper_input: int = Field(ge=0)
    tamper_contact: Literal["NO", "NC"] = "NC"


LineSupervision = Annotated[EolLine | PairedLine, Field(discriminator="type")]


class ZoneConfig(Strict):
    """``[[zones]]``: one alarm point wired to a module input.

    ``input`` is the channel as labelled on the module (see the module's profile):
    a digital input, or for an ``eol`` line an analog input. ``contact`` says which
    contact state is the alarm: ``NO`` (normally open) alarms when closed, ``NC``
    alarms when open. ``area`` puts the zone in an area that is armed and disarmed
    as one. ``latch``: the alarm stays active after the input restores, until a
    ``reset`` (always for panic zones). ``hold_ms``: an alarm stays active at least
    this long even when the input restores sooner. ``debounce_ms``/``latch``/
    ``hold_ms`` left out take ``[zone_types.<type>]``, then the built-in default.
    """

    id: Ident
    name: str
    location: str = ""
    type: ZoneType
    module: Ident
    input: int = Field(ge=0)
    contact: Literal["NO", "NC"] = "NO"
    debounce_ms: int | None = Field(default=None, ge=0, le=10_000)
    area: Ident | None = None
    latch: bool | None = None
    hold_ms: int | None = Field(default=None, ge=0, le=600_000)
    line: LineSupervision | None = None

    def event_fields(self) -> dict[str, str | int | None]:
        """What every event about this zone carries in ``data``: names, place, wiring."""
        return {
            "name": self.name,
            "location": self.location,
            "zone_type": self.type,
            "module": self.module,
            "input": self.input,
            "area": self.area,
        }

    @model_validator(mode="after")
    def _rules(self) -> ZoneConfig:
        if self.type == "panic" and self.latch is False:
            raise ValueError("panic zones always latch until reset (GB 50394 §5.2.3)")
        if isinstance(self.line, PairedLine) and self.contact != "NC":
            raise ValueError("a paired line needs an NC alarm contact (a cut must open it)")
        return self


class ZoneTypeDefaults(Strict):
    """``[zone_types.<type>]``: defaults for every zone of one type."""

    debounce_ms: int | None = Field(default=None, ge=0, le=10_000)
    hold_ms: int = Field(default=0, ge=0, le=600_000)
    latch: bool = False


@dataclass(frozen=True, slots=True)
class ZoneRule:
    """What a zone does, with the type defaults applied (see :func:`zone_rule`).

    Attributes:
        latch: the alarm stays active until ``reset``.
        hold_ms: minimum time an alarm stays active (milliseconds).
        debounce_ms: input debounce in milliseconds, or None for the module's.
        twenty_four_hour: alarms whatever the area's arming state.
        bypassable: a ``bypass`` command may suspend it.
    """

    latch: bool
    hold_ms: int
    debounce_ms: int | None
    twenty_four_hour: bool
    bypassable: bool


def zone_rule(zone: ZoneConfig, defaults: Mapping[ZoneType, ZoneTypeDefaults]) -> ZoneRule:
    """The effective rule of ``zone``: its own fields, then ``defaults[type]``, then built-ins."""
    typed = defaults.get(zone.type, ZoneTypeDefaults())
    return ZoneRule(
        latch=zone.type == "panic" or (zone.latch if zone.latch is not None else typed.latch),
        hold_ms=zone.hold_ms if zone.hold_ms is not None else typed.hold_ms,
        debounce_ms=zone.debounce_ms if zone.debounce_ms is not None else typed.debounce_ms,
        twenty_four_hour=zone.type in TWENTY_FOUR_HOUR,
        bypassable=zone.type != "panic",
    )


class AreaConfig(Strict):
    """``[[areas]]``: zones armed and disarmed together (a partition).

    ``schedule`` names a ``[[schedules]]`` entry that arms and disarms the area at
    its boundaries. ``initial`` is the state on the very first start, before any
    state was persisted; after that the persisted state is restored.
    """

    id: Ident
    name: str
    location: str = ""
    schedule: Ident | None = None
    initial: Literal["armed", "disarmed"] = "armed"


class ArmWindow(Strict):
    """One armed period of a timetable: from ``start`` on each of ``days`` to ``end``.

    ``start``/``end`` are local ``HH:MM``; ``end`` may be ``24:00``. An ``end`` not
    after ``start`` ends on the next day (``22:00``-``06:00`` is a night).
    """

    days: tuple[Weekday, ...] = Field(min_length=1)
    start: str
    end: str

    @model_validator(mode="after")
    def _times(self) -> ArmWindow:
        for text in (self.start, self.end):
            if not _HHMM.match(text):
                raise ValueError(f"time {text!r} is not HH:MM (00:00..23:59, or 24:00 as end)")
        if self.start == "24:00":
            raise ValueError("start 24:00: use 00:00 of the next day")
        return self


class ScheduleConfig(Strict):
    """``[[schedules]]``: the school timetable of an area (local time, ``[site] timezone``).

    The area is armed inside any ``armed`` window and disarmed outside them; on a
    date in ``holidays`` it is ``on_holidays`` all day. The schedule acts at its
    boundaries only: a command between two boundaries holds until the next one.
    """

    id: Ident
    name: str = ""
    armed: tuple[ArmWindow, ...] = Field(min_length=1)
    holidays: tuple[dt.date, ...] = ()
    on_holidays: Literal["armed", "disarmed"] = "armed"


class OutputConfig(Strict):
    """``[[outputs]]``: a siren, strobe or other relay on a module's coil, and what drives it.

    The output switches on for ``duration_s`` seconds when an alarm becomes active
    in any of ``zones``, any zone of ``areas``, or any zone of ``zone_types``; a
    later alarm restarts the time. It is driven locally, uplink or not; ``ack``
    and ``disarm`` silence it early; the ``output`` command drives it by hand.
    """

    id: Ident
    name: str
    location: str = ""
    kind: Literal["siren", "strobe", "relay"] = "siren"
    module: Ident
    channel: int = Field(ge=0)
    zones: tuple[Ident, ...] = ()
    areas: tuple[Ident, ...] = ()
    zone_types: tuple[ZoneType, ...] = ()
    duration_s: float = Field(default=180.0, gt=0, le=3600)


class WalkTestConfig(Strict):
    """``[walk_test]``: limits of a walk test (maintenance mode, :mod:`gateway.alarm.walk_test`).

    ``max_duration_s``: the longest walk test a technician may start.
    ``panic_max_s``: the longest a panic zone may stay out of service in one; it
    is only ever in a walk test when a signed command names it, with its own
    ``panic_duration_s`` no longer than this (GB 50394 §5.2.3: a panic zone is
    24 h, so its time out of service is kept short).
    """

    max_duration_s: float = Field(default=14_400.0, gt=0, le=86_400)
    panic_max_s: float = Field(default=300.0, gt=0, le=3600)


class CommandsConfig(Strict):
    """``[commands]``: what the center may send on ``<prefix>/cmd/<name>`` and ``<prefix>/ack``.

    ``hmac_key_file``: the per-site key. Every command and every ack must carry a
    valid HMAC-SHA256 ``signature`` under it (:mod:`gateway.commands.signing`).
    Relative paths are resolved against the config file; the key never reaches a log.
    A config without it is refused (field ``commands.hmac_key_file``) unless
    ``allow_unsigned = true`` is written.
    ``hmac_key_encoding``: how the file holds the key: ``"hex"`` (default),
    ``"base64"`` or ``"raw"`` (rules in :mod:`gateway.config.keys`; nothing is
    stripped silently).
    ``allow_unsigned``: bench only. Commands and acks are taken unsigned; the
    gateway warns at start and says ``"insecure"`` in ``gateway.started`` and
    every heartbeat. Refused together with a key file (one or the other).
    ``max_ttl_s``: longest ``expires_at - issued_at`` accepted. ``clock_skew_s``:
    how far in the future ``issued_at`` may be.
    """

    hmac_key_file: FilePath | None = None
    hmac_key_encoding: KeyEncoding = "hex"
    allow_unsigned: bool = False
    max_ttl_s: float = Field(default=600.0, gt=0, le=86_400)
    clock_skew_s: float = Field(default=30.0, ge=0, le=3600)

    def problem(self) -> tuple[str, str] | None:
        """(field, message) when the signing settings are not usable, else None."""
        if self.hmac_key_file is None and not self.allow_unsigned:
            return (
                "commands.hmac_key_file",
                "required: the center's commands and acks must be signed; make a key with "
                "'openssl rand -hex 32 > center.key' and set [commands] hmac_key_file, or "
                "write allow_unsigned = true (a bench only: anyone on the broker can disarm)",
            )
        if self.hmac_key_file is not None and self.allow_unsigned:
            return (
                "commands.allow_unsigned",
                "allow_unsigned = true with an hmac_key_file: choose one "
                "(remove allow_unsigned to sign, or the key file for a bench)",
            )
        return None

    @property
    def insecure(self) -> list[str]:
        """What this config leaves unauthenticated (``gateway.started`` and the heartbeat
        say so): ``["unsigned_commands", "unsigned_acks"]`` or ``[]``."""
        return ["unsigned_commands", "unsigned_acks"] if self.allow_unsigned else []

    def key(self) -> bytes | None:
        """The HMAC key, decoded as ``hmac_key_encoding`` says; None with ``allow_unsigned``.

        Raises:
            ConfigError: the file cannot be read, is not in its encoding, or the key is
                under 32 bytes (the key is never shown).
        """
        if self.hmac_key_file is None:
            return None
        return read_key(self.hmac_key_file, self.hmac_key_encoding, "commands.hmac_key_file")
