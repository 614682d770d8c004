"""Challenge and answer that open a keyed reader's connection (network and handheld).

A reader configured with ``key_file`` shares a key of at least 32 bytes with the
gateway. Before anything else on a connection::

    gateway → reader:  CHALLENGE <32 hex digits: 16 random bytes, new for each connection>
    reader → gateway:  AUTH <64 hex digits>
    gateway → reader:  OK                  the reader's protocol starts
                       DENIED <reason>     and the gateway closes the connection

where the ``AUTH`` digits are HMAC-SHA256 (RFC 2104) under the key of the bytes
``campus-gateway patrol reader v1`` LF ``<reader id>`` LF ``<challenge digits>``
(UTF-8, the challenge's digits as sent, no final LF), in lower- or upper-case hex:
the line is exactly ``AUTH``, one space and the 64 digits (a CR before its LF is
allowed, nothing else).
The answer must come within :data:`AUTH_TIMEOUT_S`. Because the challenge is new
for each connection, an answer seen on the network does not open another one; the
reader id in the proof keeps one reader's answer from opening another's port when
a site gives two readers one key.

What it does not do: the lines after ``OK`` are not signed, so someone who can
take over a TCP connection on the path (not merely reach the port) could still
inject into it; put readers on the security VLAN as well.

Refusals (``reason``): ``no_answer`` (closed or silent before answering),
``malformed`` (a first line that is not ``AUTH`` and 64 hex digits), ``bad_proof``
(the digits do not verify: a wrong key, or another reader's id).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from typing import Literal

AUTH_TIMEOUT_S = 10.0
"""Seconds a connection has to answer the challenge."""
CONTEXT = b"campus-gateway patrol reader v1"
"""The first line of what the proof signs: a proof made for anything else never fits."""

RejectReason = Literal["no_answer", "malformed", "bad_proof"]

_AUTH = re.compile(r"AUTH ([0-9A-Fa-f]{64})")


def new_challenge() -> str:
    """16 random bytes as 32 lower-case hex digits (:mod:`secrets`)."""
    return secrets.token_hex(16)


def proof(key: bytes, reader_id: str, challenge: str) -> str:
    """The 64 lower-case hex digits a reader answers ``challenge`` with."""
    message = b"\n".join((CONTEXT, reader_id.encode(), challenge.encode()))
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def check_answer(
    key: bytes, reader_id: str, challenge: str, line: str | None
) -> RejectReason | None:
    """None when ``line`` (the reader's first line, without its end; None: it sent
    none) answers ``challenge``, else why not. Compared in constant time."""
    if line is None:
        return "no_answer"
    match = _AUTH.fullmatch(line)
    if match is None:
        return "malformed"
    expected = proof(key, reader_id, challenge)
    return None if hmac.compare_digest(match[1].lower(), expected) else "bad_proof"
