"""The frames we write: a receiver's answers (§5.5.3) and, for test benches, a panel's messages.

Answers echo the message's sequence number, receiver, line and account exactly as
received: a malformed echo makes Pyronix panels report a communication failure.

* ``ACK`` — ``"ACK"<seq>[R<rcvr>]L<line>#<acct>[]``; for an encrypted message
  ``"*ACK"`` with the pad and the receiver's timestamp encrypted under the
  account's key (§5.5.3.1);
* ``NAK`` — never encrypted, with the receiver's time so the panel can correct its
  clock: ``"NAK"0000R0L0A0[]_HH:MM:SS,MM-DD-YYYY`` (§5.5.3.2; the form ioBroker.sia
  and fioletoven/dc09 send, ``realdata/dc09/ajax_and_other_panels.txt`` line 9);
* ``DUH`` — unable to process an otherwise correct message (§5.5.3.3).
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Iterable
from datetime import UTC, datetime

from drivers.dc09.content import TIMESTAMP_FORMAT
from drivers.dc09.crc import crc16_arc
from drivers.dc09.crypto import BLOCK, encrypt
from drivers.dc09.frame import Frame

_PAD_ALPHABET = string.ascii_letters + string.digits  # never '|', '[' or ']'


def build(
    token: str,
    seq: str,
    *,
    line: str,
    account: str | None,
    body: str,
    receiver: str | None = None,
    bare_account: bool = False,
    crc_with_cr: bool = False,
    decimal_length: bool = False,
) -> bytes:
    """One frame ``<LF>CRC 0LLL "token" seq [R] L [#acct] [ body <CR>``.

    ``crc_with_cr`` and ``decimal_length`` write the Eldes deviations (for test
    benches); a receiver never uses them.
    """
    header = f'"{token}"{seq}' + (f"R{receiver}" if receiver is not None else "") + f"L{line}"
    if account is not None:
        header += account if bare_account else f"#{account}"
    span = (header + "[" + body).encode("latin-1")
    size = len(span) + (1 if crc_with_cr else 0)
    crc = crc16_arc(span + b"\r" if crc_with_cr else span)
    length = f"{size:04d}" if decimal_length else f"{size:04X}"
    return b"\n" + f"{crc:04X}{length}".encode("ascii") + span + b"\r"


def timestamp(t: datetime) -> str:
    """``_HH:MM:SS,MM-DD-YYYY`` in UTC."""
    return "_" + t.astimezone(UTC).strftime(TIMESTAMP_FORMAT)


def encrypted_body(key: bytes, content: str, *, binary_pad: bool = False) -> str:
    """``content`` (``|#acct|data]…_ts`` or ``]_ts``) after a pad, encrypted, as hex.

    The pad fills the last block (1-16 bytes): random letters and digits, or random
    bytes with ``binary_pad`` (as Ajax hubs send; a test bench's choice).
    """
    raw = content.encode("latin-1")
    size = BLOCK - len(raw) % BLOCK
    if binary_pad:
        pad = secrets.token_bytes(size)
    else:
        pad = "".join(secrets.choice(_PAD_ALPHABET) for _ in range(size)).encode("ascii")
    return encrypt(key, pad + raw)


def ack(frame: Frame, key: bytes | None, now: datetime) -> bytes:
    """The ACK of ``frame``: encrypted (with our timestamp) when ``frame`` was."""
    if frame.encrypted and key is not None:
        token, body = "*ACK", encrypted_body(key, "]" + timestamp(now))
    else:
        token, body = "ACK", "]"
    return build(
        token, frame.seq, receiver=frame.receiver, line=frame.line, account=frame.account, body=body
    )


def nak(frame: Frame, now: datetime) -> bytes:
    """The NAK of ``frame``: sequence 0000, account ``A0``, the gateway's time."""
    return build(
        "NAK",
        "0000",
        receiver=frame.receiver or "0",
        line=frame.line,
        account="A0",
        bare_account=True,
        body="]" + timestamp(now),
    )


def duh(frame: Frame) -> bytes:
    """The DUH of ``frame`` (never encrypted)."""
    return build(
        "DUH", frame.seq, receiver=frame.receiver, line=frame.line, account=frame.account, body="]"
    )


def message(
    token: str,
    seq: int,
    account: str,
    payload: str | None,
    *,
    key: bytes | None = None,
    now: datetime | None = None,
    receiver: str | None = None,
    line: str = "0",
    xdata: Iterable[tuple[str, str]] = (),
    binary_pad: bool = False,
    crc_with_cr: bool = False,
    decimal_length: bool = False,
) -> bytes:
    """A panel's message (what ``campus-sim panel`` sends).

    Args:
        token: ``SIA-DCS``, ``ADM-CID`` or ``NULL`` (``*`` is added when ``key``).
        seq: sequence number 0..9999.
        account: the panel's account.
        payload: the event data (``Nri1/BA3``, ``1120 01 003``); None for a NULL.
        key: encrypt with this AES key; a timestamp is then required.
        now: the panel's clock for ``_timestamp``; None sends none (plain only).
        receiver, line: ``R``/``L`` numbers.
        xdata: extended data blocks (identifier, value).
        binary_pad: pad an encrypted message with random bytes, not letters.
        crc_with_cr, decimal_length: Eldes's deviations.

    Raises:
        ValueError: encryption without a timestamp.
    """
    data = "" if payload is None else f"#{account}|{payload}"
    tail = "]" + "".join(f"[{k}{v}]" for k, v in xdata) + (timestamp(now) if now else "")
    if key is not None:
        if now is None:
            raise ValueError("an encrypted message needs a timestamp (DC-09 §5.5.1.9)")
        body = encrypted_body(key, ("|" + data if data else "") + tail, binary_pad=binary_pad)
        token = "*" + token
    else:
        body = data + tail
    return build(
        token,
        f"{seq % 10000:04d}",
        receiver=receiver,
        line=line,
        account=account,
        body=body,
        crc_with_cr=crc_with_cr,
        decimal_length=decimal_length,
    )
