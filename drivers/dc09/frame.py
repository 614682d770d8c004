"""One DC-09 frame: its header, and the CRC and length checks with the vendors' deviations.

Layout (ANSI/SIA DC-09-2013 §5.5.1; ``realdata/dc09/dc09_crc_framing_encryption_notes.md``)::

    <LF> CRC(4 hex) 0LLL(4 hex) "TOKEN" SEQ(4 digits) [Rrcvr] Lline [#acct] [ … <CR>

The CRC and the length cover the bytes from the opening ``"`` of the token to the
last byte before ``<CR>``. A token with a leading ``*`` (``"*SIA-DCS"``) is encrypted.

Deviations accepted, each seen in real traffic (``realdata/dc09/*.index.json``):

* CRC **and** length computed with the trailing ``<CR>`` included (Eldes,
  ``eldes_adm_cid.txt``, all 9 samples of 3 users);
* the length written in decimal (``pysiaalarm_test_vectors.txt`` line 5, Eldes style);
* an account that is not hex (FOCUS FC-7688 ``#foc7688``), or none before ``[``
  (then the one inside the data is used);
* in answers only: ``A0`` without ``#`` after the line (the NAK of ioBroker.sia and
  fioletoven/dc09).

Anything else with a wrong CRC or length is not a DC-09 frame: :class:`FrameError`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from drivers.dc09.crc import crc16_arc

MAX_FRAME = 4200
"""Longest frame taken, in bytes: the length field counts at most 0x0FFF bytes."""

ANSWER_TOKENS = frozenset({"ACK", "NAK", "DUH", "RSP"})
"""Tokens a receiver sends (§5.5.3); a receiver never answers them."""

_HEADER = re.compile(
    r'(?P<crc>[0-9A-Fa-f]{4})(?P<length>[0-9A-Fa-f]{4})"(?P<star>\*)?(?P<token>[A-Z][A-Z0-9-]{0,15})"'
    r"(?P<seq>[0-9]{4})(?:R(?P<receiver>[0-9A-Fa-f]{1,6}))?L(?P<line>[0-9A-Fa-f]{1,6})"
    r"(?:#(?P<account>[0-9A-Za-z]{1,16}))?\["
)
# Answers of ioBroker.sia and fioletoven/dc09: ``L0A0[`` is line 0, account ``A0``.
_ANSWER_HEADER = re.compile(
    r'(?P<crc>[0-9A-Fa-f]{4})(?P<length>[0-9A-Fa-f]{4})"(?P<star>\*)?(?P<token>[A-Z]{3})"'
    r"(?P<seq>[0-9]{4})(?:R(?P<receiver>[0-9A-Fa-f]{1,6}))?L(?P<line>[0-9A-Fa-f]{1,6}?)"
    r"(?:#(?P<account>[0-9A-Za-z]{1,16})|(?P<bare>A[0-9A-Fa-f]{1,15}))?\["
)
_CRC_START = 8  # the CRC and length fields come before the span they cover


class FrameError(ValueError):
    """Not a DC-09 frame we can take: bad framing, CRC or length.

    Attributes:
        reason: ``framing``, ``crc`` or ``length``.
        raw: the frame as received (without ``<LF>``/``<CR>``).
    """

    def __init__(self, reason: str, message: str, raw: bytes) -> None:
        self.reason = reason
        self.raw = raw
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class Frame:
    """A frame whose CRC and length passed.

    Attributes:
        token: ``SIA-DCS``, ``ADM-CID``, ``NULL``, ``ACK``… without the ``*``.
        encrypted: the token had a ``*``: the body is hex ciphertext.
        seq: the sequence number as sent (4 digits), echoed in the answer.
        receiver: the receiver number after ``R`` (hex), or None when absent.
        line: the line number after ``L`` (hex).
        account: the account after ``#`` (or a bare ``A…`` in an answer), or None.
        body: everything after ``[``, as text (Latin-1, byte for byte).
        raw: the frame as received, without ``<LF>`` and ``<CR>``.
        deviations: the vendor deviations this frame needed (``crc_with_cr``,
            ``decimal_length``); empty for a frame by the book.
    """

    token: str
    encrypted: bool
    seq: str
    receiver: str | None
    line: str
    account: str | None
    body: str
    raw: bytes
    deviations: tuple[str, ...] = ()


def parse_frame(raw: bytes) -> Frame:
    """Parse one frame (the bytes between ``<LF>`` and ``<CR>``, both excluded).

    Raises:
        FrameError: not DC-09 framing, or a CRC or length that no known dialect explains.
    """
    if len(raw) > MAX_FRAME:
        raise FrameError("framing", f"frame of {len(raw)} bytes", raw[:200])
    text = raw.decode("latin-1")
    match = _HEADER.match(text)
    answer = _ANSWER_HEADER.match(text)
    if answer is not None and answer["token"] in ANSWER_TOKENS:
        match = answer
    if match is None:
        raise FrameError("framing", "no DC-09 header (CRC, length, token, sequence, line)", raw)
    deviations = _check(raw, match["crc"], match["length"])
    account = match["account"] or (match["bare"] if "bare" in match.groupdict() else None)
    return Frame(
        token=match["token"],
        encrypted=match["star"] is not None,
        seq=match["seq"],
        receiver=match["receiver"],
        line=match["line"],
        account=account,
        body=text[match.end() :],
        raw=raw,
        deviations=deviations,
    )


def _check(raw: bytes, crc_text: str, length_text: str) -> tuple[str, ...]:
    span = raw[_CRC_START:]
    sent = int(crc_text, 16)
    if crc16_arc(span) == sent:
        with_cr = False
    elif crc16_arc(span + b"\r") == sent:
        with_cr = True  # Eldes
    else:
        raise FrameError("crc", f"CRC {crc_text} is not {crc16_arc(span):04X} (nor with <CR>)", raw)
    lengths = {len(span) + 1} if with_cr else {len(span)}
    deviations = ("crc_with_cr",) if with_cr else ()
    if int(length_text, 16) in lengths:
        return deviations
    if length_text.isdigit() and int(length_text) in lengths:
        return (*deviations, "decimal_length")
    expected = max(lengths)
    raise FrameError("length", f"length {length_text} is not {expected:04X}", raw)


def printable(raw: bytes) -> str:
    """``raw`` as text for a log line or a test: control bytes as ``\\xNN``."""
    return "".join(chr(b) if 0x20 <= b < 0x7F else f"\\x{b:02x}" for b in raw)
