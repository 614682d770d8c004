"""What follows the ``[`` of a frame: pad (encrypted only), data, x-data, timestamp.

Plain (ANSI/SIA DC-09-2013 §5.5.1.7-5.5.1.9)::

    [#acct|data] [X…]… _HH:MM:SS,MM-DD-YYYY        (timestamp optional, UTC)

Encrypted, after AES-CBC decryption (§5.4.6)::

    pad | #acct|data ] [X…]… _HH:MM:SS,MM-DD-YYYY  (timestamp required)
    pad ] _HH:MM:SS,MM-DD-YYYY                     (an encrypted NULL)

The pad is 1-16 bytes bringing the plaintext to whole blocks. Ajax and Hikvision AX
hubs fill it with random *binary* bytes, which may by chance contain ``|`` or ``]``
(``realdata/dc09``: ``ajax_and_other_panels.txt`` line 5), so the data is found by
its grammar, not by the first ``|``: the first split after which everything is text
and reads as DC-09 content, preferring the one that starts with the frame's account.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

TIMESTAMP_FORMAT = "%H:%M:%S,%m-%d-%Y"
_TAIL = re.compile(r"\](?P<xdata>(?:\[[^\[\]]*\])*)(?:_(?P<ts>[^\[\]_]*))?")
_XDATA = re.compile(r"\[([^\[\]]*)\]")
_TS = re.compile(r"^\d\d:\d\d:\d\d,\d\d-\d\d-\d{4}$")
_MAX_PAD = 16


class ContentError(ValueError):
    """The part after ``[`` has no ``]`` where DC-09 puts it, or undecryptable content."""


class TimestampError(ValueError):
    """A timestamp that is not ``HH:MM:SS,MM-DD-YYYY`` or not a real time."""


@dataclass(frozen=True, slots=True)
class Content:
    """The parts of a frame's content.

    Attributes:
        account: the account inside the data (``#acct|``), or None.
        payload: the event data after the account (SIA DC-03 or Contact ID text).
        data: the data as sent (account included), the message's record.
        xdata: extended data blocks ``[X…]`` as (identifier, value).
        timestamp: the text after ``_``, or None when there was none.
    """

    account: str | None
    payload: str
    data: str
    xdata: tuple[tuple[str, str], ...]
    timestamp: str | None

    def devicetime(self) -> datetime | None:
        """The timestamp as an aware UTC datetime, or None when none was sent.

        Raises:
            TimestampError: malformed (``_14:12:04,09-25-201``) or impossible.
        """
        if self.timestamp is None:
            return None
        if not _TS.match(self.timestamp):
            raise TimestampError(f"timestamp {self.timestamp!r} is not HH:MM:SS,MM-DD-YYYY")
        try:
            return datetime.strptime(self.timestamp, TIMESTAMP_FORMAT).replace(tzinfo=UTC)
        except ValueError as exc:
            raise TimestampError(f"timestamp {self.timestamp!r}: {exc}") from exc


def parse_plain(body: str) -> Content:
    """The content of an unencrypted frame (``body``: all after ``[``).

    Raises:
        ContentError: no ``]`` closing the data, or junk after it.
    """
    end = body.find("]")
    if end < 0:
        raise ContentError("no ']' closing the data")
    return _content(body[:end], body[end:])


def parse_decrypted(plain: bytes, account: str | None) -> Content:
    """The content of a decrypted frame: the pad removed, the rest read.

    Raises:
        ContentError: no split of pad and text reads as DC-09 content (a wrong key
            gives random bytes).
    """
    candidates = [i for i in range(1, min(_MAX_PAD, len(plain) - 1) + 1) if plain[i] in b"|]"]
    if account is not None:
        marker = b"|#" + account.upper().encode("latin-1") + b"|"
        candidates.sort(key=lambda i: not plain[i:].upper().startswith(marker))
    for i in candidates:
        rest = plain[i:]
        if not _is_text(rest):
            continue
        text = rest.decode("latin-1")
        data, tail = (
            (text[1 : text.find("]")], text[text.find("]") :]) if text[0] == "|" else ("", text)
        )
        if text[0] == "|" and "]" not in text:
            continue
        try:
            return _content(data, tail)
        except ContentError:
            continue
    raise ContentError("no pad/data split reads as DC-09 content (wrong key?)")


def _content(data: str, tail: str) -> Content:
    match = _TAIL.fullmatch(tail)
    if match is None:
        raise ContentError(f"after the data: {tail[:60]!r} is not [x-data]… _timestamp")
    xdata = tuple((block[:1], block[1:]) for block in _XDATA.findall(match["xdata"]) if block)
    account: str | None = None
    payload = data
    if data.startswith("#"):
        account, sep, payload = data[1:].partition("|")
        if not sep:
            account, payload = None, data
    elif data.startswith("|"):
        payload = data[1:]
    return Content(account, payload, data, xdata, match["ts"])


def _is_text(data: bytes) -> bool:
    """No control bytes (text of DC-09 is ASCII, Windows-1252 in x-data)."""
    return all(b >= 0x20 and b != 0x7F for b in data)
