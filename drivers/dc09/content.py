"""What follows the ``[`` of a frame: pad (encrypted only), data, x-data, timestamp.

Plain (ANSI/SIA DC-09-2013 §5.5.1.7-5.5.1.9)::

    [#acct|data] [X…]… _HH:MM:SS,MM-DD-YYYY        (timestamp optional, UTC)

Encrypted, after AES-CBC decryption (§5.4.6)::

    pad | #acct|data ] [X…]… _HH:MM:SS,MM-DD-YYYY  (timestamp required)
    pad ] _HH:MM:SS,MM-DD-YYYY                     (an encrypted NULL)

The pad is 1-16 bytes bringing the plaintext to whole blocks. Ajax and Hikvision AX
hubs fill it with random *binary* bytes, which may by chance contain ``|`` or ``]``
(``realdata/dc09``: ``ajax_and_other_panels.txt`` line 5), so the data is found by
its grammar, not by the first ``|`` (:func:`parse_decrypted`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

TIMESTAMP_FORMAT = "%H:%M:%S,%m-%d-%Y"
_TAIL = re.compile(r"\](?P<xdata>(?:\[[^\[\]]*\])*)(?:_(?P<ts>[^\[\]_]*))?")
_XDATA = re.compile(r"\[([^\[\]]*)\]")
_TS = re.compile(r"^\d\d:\d\d:\d\d,\d\d-\d\d-\d{4}$")
_MAX_PAD = 16
_ACCOUNT = re.compile(r"[0-9A-Fa-f]{3,16}")


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


def parse_decrypted(
    plain: bytes,
    account: str | None,
    *,
    has_data: bool = True,
    readable: Callable[[str], bool] | None = None,
) -> Content:
    """The content of a decrypted frame: the pad removed, the rest read.

    The pad is random and comes first, and a ``|`` ends it; the data may hold more
    ``|`` (after its account, between SIA blocks). So the split is a ``|`` within the
    pad's reach (or a ``]``: no data) after which everything is text, the data
    ASCII, and the rest reads as DC-09 content; of those, the first that starts with
    ``#<the frame's account>|``, else the first with data that ``readable`` accepts
    (its event grammar) with no account or the frame's, else the first with data,
    else one without (a message sent with ``[]``).
    Random pad bytes after a ``|`` of the pad read as text often enough that the
    first split alone misread 2.5 % of panics
    sent without ``#acct|``, one in 40 of those as no data at all, ACKed and lost (a
    review of 2026-12-06). A message without data takes the last split: nothing
    after its ``]`` holds a separator.

    Args:
        plain: the decrypted bytes.
        account: the frame's account (header ``#acct``), or None.
        has_data: the frame's token carries data (every message but ``NULL``, and
            none of the receiver's answers); for one that does not, the last split
            that reads is taken, whatever dummy data it holds (Ajax and Hikvision
            send ``#0000|0000 00 000`` in a NULL: realdata notes).
        readable: whether a payload (the data after its account) reads as the
            frame's event data (Contact ID, SIA DC-03).

    Raises:
        ContentError: no split of pad and text reads as DC-09 content (a wrong key
            gives random bytes).
    """
    reach = range(1, min(_MAX_PAD, len(plain) - 1) + 1)
    splits = [i for i in reach if plain[i] in b"|]"]
    marker = None if account is None else b"|#" + account.upper().encode("latin-1") + b"|"
    found: list[Content] = []
    for i in splits if has_data else reversed(splits):
        content = _split_at(plain[i:])
        if content is None:
            continue
        if not has_data or (marker is not None and plain[i:].upper().startswith(marker)):
            return content  # a NULL's dummy data (``#0000|0000 00 000``) is never read
        found.append(content)
    with_data = [c for c in found if c.data]
    best = next((c for c in with_data if _plausible(c, account, readable)), None)
    # else the first with data; else ``[]``, a message sent with no data (a test vector)
    for choice in (best, *with_data, *found):
        if choice is not None:
            return choice
    raise ContentError("no pad/data split reads as DC-09 content (wrong key?)")


def _plausible(
    content: Content, account: str | None, readable: Callable[[str], bool] | None
) -> bool:
    """Its payload reads as event data, and the account inside it (if any) is the
    frame's, or a DC-09 account (3-16 hex digits) when the header names none."""
    if readable is None or not readable(content.payload):
        return False
    inner = content.account
    if inner is None:
        return True
    if account is not None:
        return inner.upper() == account.upper()
    return _ACCOUNT.fullmatch(inner) is not None


def _split_at(rest: bytes) -> Content | None:
    """``rest`` (from a candidate separator on) read as content, or None."""
    if not _is_text(rest):
        return None
    text = rest.decode("latin-1")
    end = text.find("]")
    if end < 0:
        return None
    data, tail = (text[1:end], text[end:]) if text[0] == "|" else ("", text)
    if not data.isascii():
        return None
    try:
        return _content(data, tail)
    except ContentError:
        return None


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
