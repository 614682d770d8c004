"""One frame in, at most one answer out: the receiver's rules (ANSI/SIA DC-09-2013 §5.5).

For each frame, in this order:

1. Not DC-09 framing, or a CRC or length no known dialect explains
   (:mod:`drivers.dc09.frame`): no answer (§5.5.3.1 acknowledges only messages
   received without errors; the panel sends again).
2. An answer token (``ACK``, ``NAK``, ``DUH``, ``RSP``): ignored (a receiver never
   answers an answer).
3. A token other than ``SIA-DCS``, ``ADM-CID``, ``NULL``; an account no
   ``[[panels]]`` has; plain text from a panel that has a key (it could be forged):
   ``DUH`` — "unable to process an otherwise correctly received message" (§5.5.3.3).
4. Encrypted without a key for the account, or not decryptable with it: ``NAK``.
5. A timestamp outside the panel's window, or malformed, or missing from an
   encrypted message: ``NAK`` carrying the gateway's time (§5.5.3.2), so the panel
   corrects its clock and sends again.
6. Accepted: the panel's supervision timer restarts. ``NULL`` is acknowledged at
   once (never an event). A message is handed to the sink as a
   :class:`~gateway.events.panel_observation.PanelMessage` — data that reads as
   neither SIA nor Contact ID is handed on too, as ``unparsed`` — and ``ACK``ed
   once the sink returned (its events are committed); a copy of a message already
   taken is ``ACK``ed again without being handed on. If the sink fails, no answer:
   the panel sends again.

An unknown event code is the gateway's business: it is stored and reported, and
the message ``ACK``ed — a ``DUH`` would make the panel retry for ever and hang
its link (Home Assistant #88675). Every refusal is counted, logged once per
sender and reason with the raw frame, and handed on as a
:class:`~gateway.events.panel_observation.PanelRejected`.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from structlog.typing import FilteringBoundLogger

from drivers.dc09 import writer
from drivers.dc09.content import Content, ContentError, TimestampError, parse_decrypted, parse_plain
from drivers.dc09.crypto import decrypt
from drivers.dc09.dc03 import DataError, parse_cid, parse_sia, readable_payload
from drivers.dc09.frame import ANSWER_TOKENS, Frame, FrameError, parse_frame, printable
from drivers.dc09.retransmit import Retransmissions
from drivers.dc09.supervision import Supervision
from gateway.config.panels import Dc09Config, PanelConfig
from gateway.events.observation import utcnow
from gateway.events.panel_observation import (
    PanelMessage,
    PanelRejected,
    PanelReport,
    PanelSink,
    Protocol,
)

MESSAGE_TOKENS = frozenset({"SIA-DCS", "ADM-CID"})


@dataclass(frozen=True, slots=True)
class Account:
    """What the receiver needs of one panel.

    Attributes:
        panel_id: the configured panel id.
        key: its AES key, or None (then only plain messages).
        past_s, future_s: its timestamp window.
    """

    panel_id: str
    key: bytes | None
    past_s: float
    future_s: float


class Refused(Exception):
    """A frame the receiver will not take (internal: becomes a PanelRejected)."""

    def __init__(self, reason: str, detail: str, answer: bytes | None, frame: Frame) -> None:
        self.reason = reason
        self.detail = detail
        self.answer = answer
        self.frame = frame
        super().__init__(detail)


class Receiver:
    """The DC-09 receiver's rules for every configured panel. Transport-agnostic:
    the listeners call :meth:`handle` for each frame and send what it returns.

    Args:
        cfg: ``[dc09]``.
        panels: the ``[[panels]]``, with their keys read (:meth:`PanelConfig.key`).
        sink: where messages, refusals and health transitions go (awaited).
        now: the gateway's clock (aware UTC): receive times, the timestamp window,
            the time in NAKs and encrypted ACKs.
        logger: a structlog logger.

    Attributes:
        supervision: the panels' link supervision (run :meth:`Supervision.run`).
        counts: frames by outcome: ``frames``, ``accepted``, ``null``,
            ``duplicates``, ``ack``, ``nak``, ``duh``, ``unanswered``, ``answers_ignored``,
            ``junk``, ``sink_failed``, and ``refused.<reason>``.
    """

    def __init__(
        self,
        cfg: Dc09Config,
        panels: Sequence[tuple[PanelConfig, bytes | None]],
        sink: PanelSink,
        *,
        now: Callable[[], datetime] = utcnow,
        clock: Callable[[], float] = time.monotonic,
        logger: FilteringBoundLogger | None = None,
    ) -> None:
        self.cfg = cfg
        self._accounts: dict[str, Account] = {
            p.account.upper(): Account(
                p.id, key, p.timestamp_window.past_s, p.timestamp_window.future_s
            )
            for p, key in panels
        }
        self._sink = sink
        self._now = now
        self.log = logger or structlog.get_logger(__name__)
        self.supervision = Supervision(
            {p.id: p.supervision_s for p, _ in panels}, sink, now=now, clock=clock, logger=self.log
        )
        self.retransmissions = Retransmissions(cfg.retransmit_window_s, clock=clock)
        self.counts: collections.Counter[str] = collections.Counter()
        self._order = {p.id: asyncio.Lock() for p, _ in panels}
        self._logged: set[tuple[str, str]] = set()

    @property
    def accounts(self) -> Mapping[str, Account]:
        """Account (upper case) → its panel."""
        return self._accounts

    async def handle(self, raw: bytes, peer: str) -> bytes | None:
        """Take one frame (without ``<LF>``/``<CR>``) from ``peer``; the answer, or None."""
        self.counts["frames"] += 1
        try:
            answer = await self._take(raw, peer)
        except Refused as refused:
            answer = refused.answer
            await self._refuse(refused.reason, refused.detail, answer, refused.frame.raw, peer,
                               refused.frame.account)  # fmt: skip
        except FrameError as exc:
            answer = None
            await self._refuse(exc.reason, str(exc), None, exc.raw, peer, None)
        self.counts[(_token(answer) or "unanswered").lower()] += 1
        return answer

    async def junk(self, data: bytes, peer: str) -> None:
        """Bytes outside any frame: refused as ``framing`` (counted, logged once, handed on)."""
        self.counts["junk"] += 1
        await self._refuse("framing", "bytes outside a frame", None, data, peer, None)

    async def lost(self, peer: str, detail: str) -> None:
        """Datagrams lost before they were read (counted by the listener): reported as
        a refusal of reason ``dropped`` (logged once per listener, handed on)."""
        self._log_once(peer, "dropped", detail, "")
        await self._sink(
            PanelRejected(
                reason="dropped", detail=detail, answer=None, raw="", peer=peer,
                received_at=self._now(),
            )
        )  # fmt: skip

    async def _take(self, raw: bytes, peer: str) -> bytes | None:
        frame = parse_frame(raw)
        if frame.token in ANSWER_TOKENS:
            self.counts["answers_ignored"] += 1
            self._log_once(peer, "answer", f"a {frame.token} sent to the receiver", printable(raw))
            return None
        if frame.token not in MESSAGE_TOKENS and frame.token != "NULL":
            raise Refused(
                "token", f"message type {frame.token!r} is not taken", writer.duh(frame), frame
            )
        content = None if frame.encrypted else self._plain(frame)
        account = self._account(frame, content)
        if frame.encrypted:
            content = self._decrypt(frame, account)
        assert content is not None
        self._check_time(frame, content, account)
        async with self._order[account.panel_id]:  # a panel's events keep its order
            await self.supervision.heard(account.panel_id)
            if frame.token == "NULL":
                self.counts["null"] += 1
                return writer.ack(frame, account.key, self._now())
            return await self._message(frame, content, account, peer)

    def _plain(self, frame: Frame) -> Content:
        try:
            return parse_plain(frame.body)
        except ContentError:
            # Unreadable data with a good CRC: kept whole, reported (never dropped).
            return Content(None, frame.body, frame.body, (), None)

    def _account(self, frame: Frame, content: Content | None) -> Account:
        name = frame.account or (content.account if content is not None else None)
        account = self._accounts.get((name or "").upper())
        if account is None:
            raise Refused(
                "unknown_account", f"no [[panels]] has account {name!r}", writer.duh(frame), frame
            )
        if account.key is not None and not frame.encrypted:
            raise Refused(
                "not_encrypted",
                f"panel {account.panel_id!r} has a key: plain messages are refused",
                writer.duh(frame),
                frame,
            )
        return account

    def _decrypt(self, frame: Frame, account: Account) -> Content:
        if account.key is None:
            raise Refused("no_key", f"encrypted, but panel {account.panel_id!r} has no key_file",
                          writer.nak(frame, self._now()), frame)  # fmt: skip
        try:
            return parse_decrypted(
                decrypt(account.key, frame.body),
                frame.account,
                has_data=frame.token != "NULL",
                readable=functools.partial(readable_payload, frame.token),
            )
        except (ValueError, ContentError) as exc:
            detail = f"cannot decrypt with the key of panel {account.panel_id!r}: {exc}"
            raise Refused("decrypt", detail, writer.nak(frame, self._now()), frame) from exc

    def _check_time(self, frame: Frame, content: Content, account: Account) -> None:
        now = self._now()
        try:
            devicetime = content.devicetime()
        except TimestampError as exc:
            raise Refused("timestamp", str(exc), writer.nak(frame, now), frame) from exc
        if devicetime is None:
            if frame.encrypted:
                raise Refused("timestamp", "an encrypted message without timestamp",
                              writer.nak(frame, now), frame)  # fmt: skip
            return
        early = now - timedelta(seconds=account.past_s)
        late = now + timedelta(seconds=account.future_s)
        if not early <= devicetime <= late:
            offset = (devicetime - now).total_seconds()
            raise Refused(
                "timestamp",
                f"timestamp {content.timestamp} is {offset:+.0f} s from the gateway clock "
                f"(window -{account.past_s:g}/+{account.future_s:g} s)",
                writer.nak(frame, now),
                frame,
            )

    async def _message(
        self, frame: Frame, content: Content, account: Account, peer: str
    ) -> bytes | None:
        key = (account_name(frame, content).upper(), frame.token, frame.seq, content.payload)
        earlier = self.retransmissions.claim(key)
        if earlier is not None:
            self.counts["duplicates"] += 1
            try:
                await earlier
            except Exception:
                return None
            return writer.ack(frame, account.key, self._now())
        message = self._parsed(frame, content, account, peer)
        try:
            await self._sink(message)
        except Exception as exc:
            self.retransmissions.failed(key, exc)
            self.counts["sink_failed"] += 1
            self.log.exception("dc09.not_stored", panel=account.panel_id, seq=frame.seq)
            return None
        self.retransmissions.stored(key)
        self.counts["accepted"] += 1
        return writer.ack(frame, account.key, self._now())

    def _parsed(self, frame: Frame, content: Content, account: Account, peer: str) -> PanelMessage:
        protocol: Protocol = "ADM-CID" if frame.token == "ADM-CID" else "SIA-DCS"
        reports: tuple[PanelReport, ...] = ()
        unparsed = None
        try:
            reports = (
                (parse_cid(content.payload),)
                if protocol == "ADM-CID"
                else parse_sia(content.payload)
            )
        except DataError as exc:
            unparsed = content.payload
            self._log_once(account.panel_id, "unparsed", str(exc), content.data)
        return PanelMessage(
            panel_id=account.panel_id,
            account=account_name(frame, content),
            protocol=protocol,
            seq=frame.seq,
            encrypted=frame.encrypted,
            reports=reports,
            unparsed=unparsed,
            xdata=content.xdata,
            devicetime=content.devicetime(),
            data=content.data,
            peer=peer,
            received_at=self._now(),
        )

    async def _refuse(
        self,
        reason: str,
        detail: str,
        answer: bytes | None,
        raw: bytes,
        peer: str,
        account: str | None,
    ) -> None:
        self.counts[f"refused.{reason}"] += 1
        found = self._accounts.get((account or "").upper())
        self._log_once(peer, reason, detail, printable(raw))
        await self._sink(
            PanelRejected(
                reason=reason,
                detail=detail,
                answer=_token(answer),
                raw=printable(raw)[:400],
                peer=peer,
                panel_id=found.panel_id if found else None,
                account=account,
                received_at=self._now(),
            )
        )

    def _log_once(self, who: str, reason: str, detail: str, raw: str) -> None:
        host = who.rsplit(":", 1)[0]
        if (host, reason) in self._logged:
            return
        self._logged.add((host, reason))
        self.log.warning("dc09.refused", sender=who, reason=reason, detail=detail, raw=raw)


def account_name(frame: Frame, content: Content) -> str:
    """The account a message is of: the header's, else the one inside the data."""
    return frame.account or content.account or ""


def _token(answer: bytes | None) -> str | None:
    if answer is None:
        return None
    start = answer.index(b'"') + 1
    return answer[start : answer.index(b'"', start)].decode("ascii").lstrip("*")
