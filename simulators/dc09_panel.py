"""A simulated intrusion panel reporting over SIA DC-09, as a real one behaves.

It sends Contact ID (``ADM-CID``) and SIA (``SIA-DCS``) messages and ``NULL`` link
tests, plain or AES-encrypted, one frame per packet or several in one (as an Ajax
hub does), with the CRC by the book or with the ``<CR>`` included (Eldes), and it
obeys the receiver's answers (DC-09 §5.5.3):

* ``ACK`` — done; the echo is checked (sequence, receiver, line, account, CRC; an
  ``*ACK`` must decrypt with the panel's key): a malformed one is counted in
  :attr:`SimulatedPanel.malformed` and the message is sent again, as a Pyronix
  panel would;
* ``NAK`` — the panel sets its clock to the receiver's time in the NAK and sends
  the message again (same sequence number);
* no answer within ``ack_timeout_s`` — sent again, up to ``retries`` times;
* ``DUH`` — the receiver cannot process it: given up.

Faults are inputs: ``clock_offset_s`` (a panel clock that is off), ``binary_pad``
(Ajax's random binary pad), ``crc_with_cr``/``decimal_length`` (Eldes dialects).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from drivers.dc09 import writer
from drivers.dc09.content import ContentError, parse_decrypted
from drivers.dc09.crypto import decrypt
from drivers.dc09.frame import Frame, FrameError, parse_frame
from gateway.config.root import GatewayConfig
from gateway.events.observation import utcnow
from simulators.dc09_link import PanelLink, Transport

Message = tuple[str, str | None]
"""(token, payload): ``("ADM-CID", "1120 01 003")``, ``("NULL", None)``."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one message ended.

    Attributes:
        answer: the last answer's token (``ACK``, ``NAK``, ``DUH``) or None (none came).
        seq: the message's sequence number.
        attempts: how often it was sent.
        frames: every answer frame received for it, as received.
    """

    answer: str | None
    seq: str
    attempts: int
    frames: tuple[bytes, ...] = ()

    @property
    def acked(self) -> bool:
        return self.answer == "ACK"


@dataclass(slots=True)
class SimulatedPanel:
    """One panel account. ``async with SimulatedPanel(...) as panel:`` closes its link.

    Args:
        host, port: the receiver.
        account: the panel's account.
        key: AES key (its bytes); None sends plain text.
        transport: ``tcp`` or ``udp``.
        receiver, line: the ``R`` and ``L`` numbers it sends.
        clock_offset_s: how far the panel's clock is off the true time.
        ack_timeout_s: how long it waits for an answer.
        retries: how often it sends a message again (no answer, NAK, bad ACK).
        binary_pad, crc_with_cr, decimal_length: dialects (see module docstring).
        timestamps: send ``_timestamp`` on plain messages too (encrypted always do).

    Attributes:
        outcomes: every message's outcome, in order.
        malformed: answers that failed the echo checks.
        sent: every frame sent.
    """

    host: str
    port: int
    account: str
    key: bytes | None = None
    transport: Transport = "tcp"
    receiver: str | None = None
    line: str = "0"
    clock_offset_s: float = 0.0
    ack_timeout_s: float = 3.0
    retries: int = 3
    binary_pad: bool = False
    crc_with_cr: bool = False
    decimal_length: bool = False
    timestamps: bool = True
    outcomes: list[Outcome] = field(default_factory=list)
    malformed: int = 0
    sent: list[bytes] = field(default_factory=list)
    _seq: int = 0
    _link: PanelLink | None = None
    _busy: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def __aenter__(self) -> SimulatedPanel:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def link(self) -> PanelLink:
        if self._link is None:
            self._link = PanelLink(self.host, self.port, self.transport)
        return self._link

    async def close(self) -> None:
        if self._link is not None:
            await self._link.close()

    def now(self) -> datetime:
        """The panel's own clock."""
        return utcnow() + timedelta(seconds=self.clock_offset_s)

    async def cid(self, event: str, partition: int = 0, zone: int = 0) -> Outcome:
        """Send Contact ID ``event`` (``1120``: qualifier 1, code 120) for a partition and zone."""
        return await self.send("ADM-CID", f"{event[0]}{event[1:]} {partition:02d} {zone:03d}")

    async def sia(
        self, code: str, number: int | None = None, *, area: int | None = None, text: str = ""
    ) -> Outcome:
        """Send SIA ``code`` (``BA``) with its number (zone, user …) in area ``area``."""
        return await self.send("SIA-DCS", sia_payload(code, number, area=area, text=text))

    async def link_test(self) -> Outcome:
        """Send a NULL link test."""
        return await self.send("NULL", None)

    async def send(self, token: str, payload: str | None) -> Outcome:
        """Send one message and obey the answers until it is done."""
        (outcome,) = await self.send_packet([(token, payload)])
        return outcome

    async def send_packet(self, messages: list[Message]) -> list[Outcome]:
        """Send ``messages`` as consecutive frames in one packet; each is then followed
        up on its own (answers are read in order; a missing one is sent again)."""
        async with self._busy:  # one exchange at a time, as a panel's transmitter does
            return await self._exchange(messages)

    async def _exchange(self, messages: list[Message]) -> list[Outcome]:
        seqs = [self._next_seq() for _ in messages]
        frames = [
            self.frame(token, payload, seq)
            for (token, payload), seq in zip(messages, seqs, strict=True)
        ]
        self.sent.extend(frames)
        await self.link.send(b"".join(frames))
        outcomes = []
        for (token, payload), seq in zip(messages, seqs, strict=True):
            outcomes.append(await self._follow(token, payload, seq, attempts=1))
        self.outcomes.extend(outcomes)
        return outcomes

    def frame(self, token: str, payload: str | None, seq: int) -> bytes:
        """The frame of one message, as this panel writes it now."""
        now = self.now() if (self.key is not None or self.timestamps) else None
        return writer.message(
            token, seq, self.account, payload, key=self.key, now=now, receiver=self.receiver,
            line=self.line, binary_pad=self.binary_pad, crc_with_cr=self.crc_with_cr,
            decimal_length=self.decimal_length,
        )  # fmt: skip

    async def _follow(self, token: str, payload: str | None, seq: int, attempts: int) -> Outcome:
        frames: list[bytes] = []
        while True:
            raw = await self.link.next_answer(self.ack_timeout_s)
            answer = self._check(raw, seq) if raw is not None else None
            if raw is not None:
                frames.append(raw)
            if answer == "ACK" or answer == "DUH" or attempts > self.retries:
                return Outcome(answer, f"{seq:04d}", attempts, tuple(frames))
            if answer == "NAK" and raw is not None:
                self._set_clock(raw)
            frame = self.frame(token, payload, seq)
            self.sent.append(frame)
            await self.link.send(frame)
            attempts += 1

    def _check(self, raw: bytes, seq: int) -> str | None:
        """The answer's token, or None (counted as malformed) when its echo is wrong."""
        try:
            frame = parse_frame(raw)
        except FrameError:
            self.malformed += 1
            return None
        if frame.token == "NAK":
            return "NAK"
        good = (
            frame.seq == f"{seq:04d}"
            and frame.line == self.line
            and frame.receiver == self.receiver
            and (frame.account or "").upper() == self.account.upper()
            and frame.token in ("ACK", "DUH")
            and self._ack_decrypts(frame)
        )
        if not good:
            self.malformed += 1
            return None
        return frame.token

    def _ack_decrypts(self, frame: Frame) -> bool:
        if frame.token != "ACK" or self.key is None:
            return not frame.encrypted
        if not frame.encrypted:
            return False
        try:
            parse_decrypted(decrypt(self.key, frame.body), None, has_data=False).devicetime()
        except (ValueError, ContentError):
            return False
        return True

    def _set_clock(self, raw: bytes) -> None:
        """Take the receiver's time from a NAK (§5.5.3.2)."""
        text = raw.decode("latin-1")
        stamp = text[text.rindex("_") + 1 :]
        theirs = datetime.strptime(stamp, "%H:%M:%S,%m-%d-%Y").replace(tzinfo=utcnow().tzinfo)
        self.clock_offset_s = (theirs - utcnow()).total_seconds()

    def _next_seq(self) -> int:
        self._seq = self._seq % 9999 + 1
        return self._seq


def sia_payload(
    code: str, number: int | None = None, *, area: int | None = None, text: str = ""
) -> str:
    """SIA DC-03 data for one code: ``Nri1/BA003^text^``."""
    area_part = f"ri{area}/" if area is not None else ""
    number_part = f"{number:03d}" if number is not None else ""
    return f"N{area_part}{code}{number_part}" + (f"^{text}^" if text else "")


async def heartbeat(panel: SimulatedPanel, every_s: float, retry_s: float = 1.0) -> None:
    """NULL link tests every ``every_s`` seconds until cancelled; while the receiver
    cannot be reached or does not acknowledge, every ``retry_s`` seconds."""
    while True:
        try:
            acked = (await panel.link_test()).acked
        except OSError:
            acked = False
        await asyncio.sleep(every_s if acked else retry_s)


@contextlib.asynccontextmanager
async def simulated_panels(
    cfg: GatewayConfig, *, every_s: float = 30.0
) -> AsyncIterator[dict[str, SimulatedPanel]]:
    """A simulated panel for every ``[[panels]]`` of ``cfg`` (its account and key),
    sending NULL link tests to the config's first TCP ``[dc09] listen`` address every
    ``every_s`` seconds; stopped and closed on exit. None without a TCP listener."""
    listen = next((a for a in cfg.dc09.listen if a.protocol == "tcp"), None)
    panels: dict[str, SimulatedPanel] = {}
    if listen is not None:
        host = "127.0.0.1" if listen.host in ("0.0.0.0", "::", "") else listen.host
        panels = {
            p.id: SimulatedPanel(host, listen.port, p.account, key=p.key()) for p in cfg.panels
        }
    tasks = [
        asyncio.create_task(heartbeat(p, every_s), name=f"panel[{i}]") for i, p in panels.items()
    ]
    try:
        yield panels
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for panel in panels.values():
            await panel.close()
