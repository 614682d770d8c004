"""HMAC-SHA256 signatures of the center's commands (RFC 2104, FIPS 180-4 SHA-256).

The signed bytes bind the command to its topic — so a signed ``disarm`` for one
gateway is worthless as an ``arm`` or on another gateway — and to every field of
its payload except ``signature`` itself::

    signing input = UTF-8 topic  + b"\\n" +  canonical JSON of the payload without "signature"
    canonical JSON = keys sorted, no whitespace (separators "," and ":"), UTF-8, non-ASCII as is
    signature     = lowercase hex of HMAC-SHA256(site key, signing input)

The center side (``simulators.center_commands``) signs with :func:`sign`; the
gateway checks with :func:`verify` (constant-time comparison).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

SIGNATURE_FIELD = "signature"


def signing_input(topic: str, body: Mapping[str, Any]) -> bytes:
    """The bytes a signature covers: ``topic``, a newline, the canonical JSON of ``body``
    without its ``signature`` field."""
    unsigned = {k: v for k, v in body.items() if k != SIGNATURE_FIELD}
    canonical = json.dumps(unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return topic.encode() + b"\n" + canonical.encode()


def sign(key: bytes, topic: str, body: Mapping[str, Any]) -> str:
    """The hex HMAC-SHA256 of ``body`` on ``topic`` under ``key``."""
    return hmac.new(key, signing_input(topic, body), hashlib.sha256).hexdigest()


def verify(key: bytes, topic: str, body: Mapping[str, Any]) -> bool:
    """True when ``body["signature"]`` is the right signature of ``body`` on ``topic``."""
    given = body.get(SIGNATURE_FIELD)
    if not isinstance(given, str):
        return False
    return hmac.compare_digest(given.lower(), sign(key, topic, body))
