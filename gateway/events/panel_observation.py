"""What the DC-09 receiver hands to the gateway: typed panel reports, no wire format.

:class:`PanelMessage` is one accepted frame (its reports in the order sent);
:class:`PanelRejected` a frame that was refused, and why; link supervision arrives
as :class:`~gateway.events.observation.DeviceHealth` transitions of the panel.
The receiver awaits the sink and acknowledges a message only once the sink has
returned (``gateway.panels`` has then committed its events).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from gateway.events.observation import DeviceHealth, utcnow

Protocol = Literal["SIA-DCS", "ADM-CID"]
Qualifier = Literal["new", "restore", "status"]


@dataclass(frozen=True, slots=True)
class PanelReport:
    """One event code of a message, as the panel sent it.

    Attributes:
        protocol: ``SIA-DCS`` (a SIA DC-03 code) or ``ADM-CID`` (Contact ID, SIA DC-05).
        code: the SIA code (two letters) or the Contact ID event code (three digits).
        qualifier: Contact ID's Q: ``new`` (1), ``restore`` (3), ``status`` (6,
            previously reported); None for SIA, whose code says it.
        partition: Contact ID's GG, SIA's ``ri`` (area), or None.
        number: Contact ID's ZZZ, the number after a SIA code (zone, user, area…
            as the code defines it), or None.
        user: SIA's ``id`` modifier (user number), or None.
        text: ASCII text sent with it (SIA ``^…^`` or an ``A`` block), or None.
        modifiers: other SIA modifiers as sent (``pi``, ``da``, ``ti`` …).
    """

    protocol: Protocol
    code: str
    qualifier: Qualifier | None = None
    partition: int | None = None
    number: int | None = None
    user: int | None = None
    text: str | None = None
    modifiers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class PanelMessage:
    """One accepted SIA-DCS or ADM-CID message of a configured panel.

    Attributes:
        panel_id: the configured panel id.
        account: the account as sent.
        protocol: ``SIA-DCS`` or ``ADM-CID``.
        seq: the sequence number as sent.
        encrypted: it arrived encrypted (and decrypted with the panel's key).
        reports: its event codes, in the order sent; empty when ``unparsed``.
        unparsed: data that could not be read as SIA or Contact ID (reported, not
            dropped), or None.
        xdata: DC-09 extended data blocks (identifier, value) as sent.
        devicetime: the panel's timestamp (UTC), or None when it sent none.
        data: the message data as sent (decrypted, pad removed), for the record.
        peer: ``host:port`` it came from, and over which transport (``tcp``/``udp``).
        received_at: gateway UTC receive time.
    """

    panel_id: str
    account: str
    protocol: Protocol
    seq: str
    encrypted: bool
    reports: tuple[PanelReport, ...]
    unparsed: str | None
    xdata: tuple[tuple[str, str], ...]
    devicetime: datetime | None
    data: str
    peer: str
    received_at: datetime = field(default_factory=utcnow)


@dataclass(frozen=True, slots=True)
class PanelRejected:
    """A frame the receiver refused.

    Attributes:
        reason: ``framing``, ``crc``, ``length``, ``unknown_account``,
            ``not_encrypted`` (a panel with a key sent plain text), ``no_key``,
            ``decrypt``, ``timestamp``, ``token`` (a message type we do not take),
            ``dropped`` (UDP datagrams lost before they were read: ``peer`` is the
            listener, ``raw`` empty).
        detail: what exactly was wrong, for a technician.
        answer: what the panel was told: ``NAK``, ``DUH`` or None (no answer).
        raw: the frame as received, control bytes escaped.
        peer: where it came from (``tcp 10.0.0.5:40112``).
        panel_id: the configured panel whose account it named, or None.
        account: the account it named, or None.
        received_at: gateway UTC receive time.
    """

    reason: str
    detail: str
    answer: str | None
    raw: str
    peer: str
    panel_id: str | None = None
    account: str | None = None
    received_at: datetime = field(default_factory=utcnow)


PanelObservation = PanelMessage | PanelRejected | DeviceHealth
PanelSink = Callable[[PanelObservation], Awaitable[None]]
"""Where the receiver hands observations; a message is acknowledged once this returns."""
