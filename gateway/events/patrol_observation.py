"""What patrol reader drivers hand to the tour engine: typed hits, battery readings
and refused connections.

Kept beside, not inside, :mod:`gateway.events.observation`: the zone rules never see these.
A reader's health transitions reuse :class:`gateway.events.observation.DeviceHealth`.

Who carries which tag (``realdata/patrol/patrol_record_models_observed.json``):

* a fixed **checkpoint station** (RallyLog-like, polled over Modbus) stands at one
  checkpoint and reads the **guard's card**: ``tag`` is the card;
* a **handheld reader** (offline wand) or a **phone app** is carried by the guard and
  reads the **checkpoint's tag**: ``tag`` is the checkpoint tag; a guard signs in by
  reading their own card first, or the phone app names the guard (``guard``).

The engine tells the two apart by the configured tags, not the driver.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from gateway.events.observation import DeviceHealth, utcnow

ReaderKind = Literal["station", "network", "handheld"]


def normalize_tag(tag: str) -> str:
    """The form every tag is compared in: surrounding blanks removed, upper case.

    RFID serials are printed in hex by some tools in lower case, by others in upper
    case; QR codes are case-insensitive here on purpose (a tag is an identifier,
    not a secret).
    """
    return tag.strip().upper()


@dataclass(frozen=True, slots=True)
class PatrolHit:
    """One tag read by a patrol reader, as the reader recorded it.

    Attributes:
        reader_id: configured reader id (``gate-station``).
        kind: how it arrived (``station`` polled, ``network`` live line,
            ``handheld`` batch upload).
        tag: the tag read, normalized (:func:`normalize_tag`): a guard's card at a
            station, a checkpoint tag (or a guard card signing in) otherwise.
        devicetime: when the reader says the tag was read, timezone-aware. Readers
            keep local time without a zone; drivers attach the site's zone.
        received_at: gateway UTC time the record reached the gateway (a batch
            upload arrives hours after ``devicetime``).
        guard: guard id or card named by the record itself (phone app), or None.
        battery_v: reader battery voltage stored with the record (volts), or None.
        record: the reader's own record number (station ring index, line ``seq``),
            for the log and the event; None when the format has none.
        raw: the record as received (a text line, or registers as hex), for a test.
    """

    reader_id: str
    kind: ReaderKind
    tag: str
    devicetime: datetime
    received_at: datetime = field(default_factory=utcnow)
    guard: str | None = None
    battery_v: float | None = None
    record: int | None = None
    raw: str = ""

    @property
    def key(self) -> tuple[str, str, str]:
        """Identity of the physical read, for dedup: reader, tag, device time to the second.

        The same read seen twice (re-uploaded batch, re-read station record,
        retransmitted line) has the same key; two reads of one tag by one reader
        within the same second are one read.
        """
        stamp = self.devicetime.replace(microsecond=0).isoformat()
        return (self.reader_id, self.tag, stamp)


@dataclass(frozen=True, slots=True)
class ReaderBattery:
    """A reader's battery as it reported it.

    Attributes:
        reader_id: configured reader id.
        volts: measured voltage (volts), or None when only a flag is known.
        flagged_low: the reader itself says its battery is low (RallyLog status
            bit 1 ``BAT_LOW``); the engine also compares ``volts`` with the
            reader's configured ``low_battery_v``.
        received_at: gateway UTC time of the reading.
    """

    reader_id: str
    volts: float | None
    flagged_low: bool = False
    received_at: datetime = field(default_factory=utcnow)


@dataclass(frozen=True, slots=True)
class ReaderRejected:
    """A connection to a keyed reader's port that did not answer the challenge
    (:mod:`drivers.patrol_reader.auth`).

    Attributes:
        reader_id: configured reader id (whose port it was).
        reason: ``no_answer``, ``malformed`` or ``bad_proof``.
        peer: the connection's address, ``host:port``.
        received_at: gateway UTC time of the refusal.
        refused_since: refusals of this reader and reason since the last one handed
            on (the driver hands on at most one a minute per reason).
    """

    reader_id: str
    reason: str
    peer: str
    received_at: datetime = field(default_factory=utcnow)
    refused_since: int = 0


PatrolObservation = PatrolHit | ReaderBattery | ReaderRejected | DeviceHealth
PatrolSink = Callable[[PatrolObservation], Awaitable[None]]
"""Where patrol drivers put observations; awaiting it means the engine has handled
(and the outbox stored) everything it made of them."""
