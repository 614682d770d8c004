"""``[patrol]``: guard-tour plans and patrol readers (issue 6), validated strictly.

GB/T 29315-2022 asks that key areas of a school be patrolled at least five times a
day; a route marked ``key_area`` with fewer rounds a day is refused.

A route is an ordered list of stops (a checkpoint with its timing); its schedule
makes rounds. For a round starting at ``S`` (site local time), stop ``k`` is due
in ``[S + offset, S + offset + window]`` (on time); a hit up to ``tolerance``
before that counts as on time, up to ``tolerance`` after it as late; when
``S + offset + window + tolerance`` passes without a hit the stop is missed.

Example::

    [[patrol.checkpoints]]
    id = "CP1"
    tag = "04A1B2C3D4"
    name = "南门"
    location = "南门岗亭外"

    [[patrol.routes]]
    id = "night"
    name = "夜间巡更"
    key_area = true
    schedule = { start = "20:00", end = "06:00", every_min = 120 }
    stops = [{ checkpoint = "CP1", offset_min = 0, window_min = 10, tolerance_min = 5 }]

    [[patrol.guards]]
    id = "G1"
    name = "王师傅"
    card = "A1B2C3D4E5"

    [[patrol.readers]]
    type = "station"            # or "network" / "handheld" with listen = {host, port}
    id = "cp1-station"
    checkpoint = "CP1"
    transport = { type = "tcp", host = "10.0.0.21", port = 502 }

The station transport is a Modbus transport of :mod:`gateway.config.transports`.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field

from gateway.config.base import FilePath, Ident, Strict
from gateway.config.keys import read_key
from gateway.config.transports import Transport
from gateway.events.patrol_observation import normalize_tag

HhMm = Annotated[str, Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")]
MIN_KEY_AREA_ROUNDS = 5
"""GB/T 29315-2022: key areas of a school are patrolled at least five times a day."""


class CheckpointConfig(Strict):
    """``[[patrol.checkpoints]]``: a place a guard must visit, marked by a tag."""

    id: Ident
    tag: str = Field(min_length=1, max_length=64)
    name: str
    location: str = ""


class StopConfig(Strict):
    """One checkpoint of a route and its timing (minutes after the round's start)."""

    checkpoint: Ident
    offset_min: float = Field(default=0.0, ge=0, le=24 * 60)
    window_min: float = Field(default=15.0, gt=0, le=24 * 60)
    tolerance_min: float = Field(default=5.0, ge=0, le=24 * 60)


class ScheduleConfig(Strict):
    """When rounds start, site local time (``[site] timezone``).

    ``start`` alone: one round a day. With ``end`` and ``every_min``: rounds at
    ``start``, ``start + every``, … while before ``end`` (``end`` at or before
    ``start`` is the next morning: 20:00–06:00 every 120 min is 20, 22, 0, 2, 4 h).
    ``days``: ISO weekdays (1 = Monday) on which the period *starts*.
    """

    start: HhMm
    end: HhMm | None = None
    every_min: int | None = Field(default=None, ge=1, le=24 * 60)
    days: list[Annotated[int, Field(ge=1, le=7)]] = Field(
        default_factory=lambda: [1, 2, 3, 4, 5, 6, 7], min_length=1
    )

    def offsets(self) -> list[dt.timedelta]:
        """Round starts of one period, as offsets from local midnight of its first day."""
        first = _minutes(self.start)
        if self.end is None or self.every_min is None:
            return [dt.timedelta(minutes=first)]
        last = _minutes(self.end)
        if last <= first:
            last += 24 * 60
        return [dt.timedelta(minutes=m) for m in range(first, last, self.every_min)]


class RouteConfig(Strict):
    """``[[patrol.routes]]``: checkpoints walked in rounds on a schedule.

    ``ordered``: the stops must be visited in the listed order (a hit on a stop
    before one listed earlier that is still due is ``patrol.out_of_order``).
    ``key_area``: the route covers a key area: at least five rounds a day.
    """

    id: Ident
    name: str
    ordered: bool = True
    key_area: bool = False
    schedule: ScheduleConfig
    stops: list[StopConfig] = Field(min_length=1)


class GuardConfig(Strict):
    """``[[patrol.guards]]``: a guard and the card (tag) that identifies them."""

    id: Ident
    name: str
    card: str = Field(min_length=1, max_length=64)


class ListenConfig(Strict):
    """Where the gateway listens for a reader's TCP connections."""

    host: str = "0.0.0.0"
    port: int = Field(ge=1, le=65535)


class _ReaderBase(Strict):
    """Fields every reader has.

    ``clock_skew_s``: how far the reader's clock may be off (seconds). A hit is
    judged by the reader's timestamp with windows widened by this much; a
    timestamp further than this in the gateway's future is not believed.
    ``low_battery_v``: below this voltage the battery is low (volts).
    """

    id: Ident
    name: str = ""
    location: str = ""
    clock_skew_s: float = Field(default=120.0, ge=0, le=24 * 3600)
    low_battery_v: float = Field(default=3.5, ge=0, le=60)


class StationReaderConfig(_ReaderBase):
    """A checkpoint station fixed at ``checkpoint``, polled over Modbus (RallyLog map).

    ``station_id``: the id the station reports (register 0x1); when set, a
    different one is a protocol error (a wrongly addressed unit).
    ``poll_interval_ms``/``timeout_ms`` in milliseconds; ``offline_after`` failed
    polls before ``fault.device_offline``.
    """

    type: Literal["station"]
    checkpoint: Ident
    transport: Transport
    unit: int = Field(default=1, ge=0, le=247)
    station_id: int | None = Field(default=None, ge=0, le=127)
    poll_interval_ms: int = Field(default=1000, ge=10, le=600_000)
    timeout_ms: int = Field(default=500, ge=20, le=30_000)
    offline_after: int = Field(default=3, ge=1, le=1000)


class _ListeningReaderBase(_ReaderBase):
    """Fields of the readers that connect to the gateway (network and handheld).

    ``key_file``: the reader's key, hex (``openssl rand -hex 32``: at least 32
    bytes, as ``[commands] hmac_key_file``). With one, every connection must
    answer the gateway's challenge first
    (:mod:`drivers.patrol_reader.auth`); without one, anyone who reaches the port
    can send reads (check-config warns when it listens beyond the loopback).
    """

    listen: ListenConfig
    key_file: FilePath | None = None

    def key(self) -> bytes | None:
        """The key in ``key_file`` (None without one).

        Raises:
            ConfigError: the file cannot be read, is not hex, or holds fewer than
                32 bytes (names the file, never the key;
                :func:`gateway.config.files.reader_keys` adds the config's line).
        """
        if self.key_file is None:
            return None
        return read_key(self.key_file, "hex", "key_file")


class NetworkReaderConfig(_ListeningReaderBase):
    """A networked reader or phone-app bridge sending JSON lines over TCP (live).

    ``offline_after_s``: no line (hit or heartbeat) for this long → offline.
    """

    type: Literal["network"]
    offline_after_s: float = Field(default=300.0, gt=0, le=7 * 24 * 3600)


class HandheldReaderConfig(_ListeningReaderBase):
    """An offline handheld reader whose records arrive in batch uploads over TCP.

    ``device_number``: the reader's own number in its records (column 1); when
    set, a record with another one is refused. ``guard``: who carries it, for
    records before any guard card was read in the upload.
    """

    type: Literal["handheld"]
    device_number: int | None = Field(default=None, ge=0, le=127)
    guard: Ident | None = None
    clock_skew_s: float = Field(default=300.0, ge=0, le=24 * 3600)


ReaderConfig = Annotated[
    StationReaderConfig | NetworkReaderConfig | HandheldReaderConfig,
    Field(discriminator="type"),
]


class PatrolConfig(Strict):
    """``[patrol]``: tour plans, guards and readers.

    ``keep_rounds_h``: how long after its last stop closed a round still accepts
    hits from late batch uploads (hours); dedup remembers reads as long.
    """

    checkpoints: list[CheckpointConfig] = Field(default_factory=list)
    routes: list[RouteConfig] = Field(default_factory=list)
    guards: list[GuardConfig] = Field(default_factory=list)
    readers: list[ReaderConfig] = Field(default_factory=list)
    keep_rounds_h: float = Field(default=24.0, gt=0, le=24 * 31)


def check_patrol(
    patrol: PatrolConfig, *, device_ids: set[str], timezone: str
) -> list[tuple[str, str]]:
    """Cross-checks of ``[patrol]``, called by the root model's cross-check.

    Checks: the site timezone exists; unique ids (readers also against other
    devices' ids, ``device_ids``: they share the event ``source``); checkpoint tags
    and guard cards unique together; stops name known checkpoints once per route,
    with non-decreasing offsets on ordered routes; schedules with ``end`` have
    ``every_min``; ``key_area`` routes have at least five rounds every day
    (GB/T 29315-2022); stations stand at known checkpoints; listen ports unique;
    handheld guards known.

    Returns:
        Every problem as ``(dotted field from the root, message)``; empty when fine.
    """
    problems: list[tuple[str, str]] = []
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        problems.append(("site.timezone", f"timezone {timezone!r} is unknown to this system"))
    for section, ids in (
        ("checkpoints", [c.id for c in patrol.checkpoints]),
        ("routes", [r.id for r in patrol.routes]),
        ("guards", [g.id for g in patrol.guards]),
        ("readers", [r.id for r in patrol.readers]),
    ):
        seen: set[str] = set()
        for i, ident in enumerate(ids):
            if ident in seen:
                problems.append((f"{section}.{i}.id", f"duplicate id {ident!r}"))
            elif section == "readers" and ident in device_ids:
                problems.append((f"{section}.{i}.id", f"id {ident!r} is already a device id"))
            seen.add(ident)
    problems += _tag_problems(patrol)
    problems += _route_problems(patrol)
    problems += _reader_problems(patrol)
    return [(f"patrol.{field}" if field != "site.timezone" else field, m) for field, m in problems]


def _tag_problems(patrol: PatrolConfig) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    owners: dict[str, str] = {}
    tagged = [
        (f"checkpoints.{i}.tag", c.tag, f"checkpoint {c.id!r}")
        for i, c in enumerate(patrol.checkpoints)
    ]
    tagged += [(f"guards.{i}.card", g.card, f"guard {g.id!r}") for i, g in enumerate(patrol.guards)]
    for field, tag, owner in tagged:
        key = normalize_tag(tag)
        if key in owners:
            problems.append((field, f"tag {tag!r} is already used by {owners[key]}"))
        owners.setdefault(key, owner)
    return problems


def _route_problems(patrol: PatrolConfig) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    known = {c.id for c in patrol.checkpoints}
    for i, route in enumerate(patrol.routes):
        schedule = route.schedule
        if (schedule.end is None) != (schedule.every_min is None):
            problems.append((f"routes.{i}.schedule", "give both end and every_min, or neither"))
        rounds = len(schedule.offsets())
        if route.key_area and (rounds < MIN_KEY_AREA_ROUNDS or len(set(schedule.days)) < 7):
            problems.append(
                (
                    f"routes.{i}.schedule",
                    f"key area route {route.id!r} has {rounds} rounds a day on "
                    f"{len(set(schedule.days))} days a week; GB/T 29315-2022 asks for at "
                    f"least {MIN_KEY_AREA_ROUNDS} every day",
                )
            )
        used: set[str] = set()
        for j, stop in enumerate(route.stops):
            where = f"routes.{i}.stops.{j}"
            if stop.checkpoint not in known:
                problems.append((f"{where}.checkpoint", f"no checkpoint {stop.checkpoint!r}"))
            if stop.checkpoint in used:
                problems.append((f"{where}.checkpoint", f"{stop.checkpoint!r} is twice here"))
            used.add(stop.checkpoint)
            if route.ordered and j and stop.offset_min < route.stops[j - 1].offset_min:
                problems.append((f"{where}.offset_min", "ordered route: offsets must not drop"))
    return problems


def _reader_problems(patrol: PatrolConfig) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    known = {c.id for c in patrol.checkpoints}
    guards = {g.id for g in patrol.guards}
    ports: dict[int, str] = {}
    for i, reader in enumerate(patrol.readers):
        if isinstance(reader, StationReaderConfig):
            if reader.checkpoint not in known:
                problems.append((f"readers.{i}.checkpoint", f"no checkpoint {reader.checkpoint!r}"))
            continue
        port = reader.listen.port
        if port in ports:
            problems.append(
                (f"readers.{i}.listen", f"port {port} is already used by {ports[port]!r}")
            )
        ports.setdefault(port, reader.id)
        if isinstance(reader, HandheldReaderConfig) and reader.guard not in (None, *guards):
            problems.append((f"readers.{i}.guard", f"no guard with id {reader.guard!r}"))
    return problems


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)
