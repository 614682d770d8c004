"""HMAC-SHA256 signatures of everything the center sends: commands and acks.

The recipe (``docs/center-protocol.md`` "Signing", with test vectors that
``tests/docs/test_center_protocol.py`` checks)::

    signing input = UTF-8 topic + b"\\n" + JCS(payload without its top-level "signature")
    JCS           = the JSON Canonicalization Scheme, RFC 8785 (the ``rfc8785`` package)
    signature     = lowercase hex of HMAC-SHA256(site key, signing input)  (RFC 2104)

The topic binds the signature to one gateway and one message kind: a signed
``disarm`` for one gateway is worthless as an ``arm``, as an ack, or on another
gateway. RFC 8785 is what makes the recipe implementable from outside: any
JSON library may produce the payload (``5.0`` or ``5``, escaped or literal
non-ASCII), because both sides sign the canonical form of the *parsed* value,
not the bytes sent. A payload RFC 8785 cannot canonicalize (an integer beyond
±2^53, a NaN) has no valid signature.

The center side (``simulators.center_commands``, ``simulators.center``) signs with
:func:`sign`; the gateway checks with :func:`verify` (constant-time comparison).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

import rfc8785

SIGNATURE_FIELD = "signature"


class DuplicateKeyError(ValueError):
    """A JSON object names the same member twice (RFC 8785 §3.1 requires I-JSON,
    RFC 7493, where names are unique; two parsers could read different values)."""


def loads(payload: bytes | str) -> Any:
    """Parse JSON as the signing rules read it: an object naming a member twice is refused.

    Raises:
        ValueError: not JSON, not UTF-8, or a duplicate member name (:class:`DuplicateKeyError`).
        RecursionError: nested deeper than the decoder's stack.
    """
    return json.loads(payload, object_pairs_hook=_unique_members)


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in pairs:
        if name in out:
            raise DuplicateKeyError(f"member {name!r} appears twice")
        out[name] = value
    return out


def as_integer(value: object) -> int | None:
    """``value`` as an integer when JSON means one: ``5`` or ``5.0`` (RFC 8785 §3.2.2.3:
    one number, one canonical form, so a center's JSON library may write either),
    within ±2^53; None for anything else (``true``, ``5.5``, a string, NaN)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        if not value.is_integer():  # NaN and the infinities are not integers either
            return None
        value = int(value)
    if not isinstance(value, int) or abs(value) > 2**53:
        return None
    return value


def signing_input(topic: str, body: Mapping[str, Any]) -> bytes:
    """The bytes a signature covers: ``topic``, a newline, RFC 8785 JSON of ``body``
    without its top-level ``signature`` member.

    Raises:
        rfc8785.CanonicalizationError: ``body`` holds a value RFC 8785 cannot
            represent (an integer beyond ±2^53, NaN or infinity, a non-string key).
    """
    unsigned = {k: v for k, v in body.items() if k != SIGNATURE_FIELD}
    return topic.encode() + b"\n" + rfc8785.dumps(unsigned)


def sign(key: bytes, topic: str, body: Mapping[str, Any]) -> str:
    """The lowercase hex HMAC-SHA256 of ``body`` on ``topic`` under ``key``.

    Raises:
        rfc8785.CanonicalizationError: as :func:`signing_input`.
    """
    return hmac.new(key, signing_input(topic, body), hashlib.sha256).hexdigest()


def verify(key: bytes, topic: str, body: Mapping[str, Any]) -> bool:
    """True when ``body["signature"]`` is the signature of ``body`` on ``topic``.

    The signature is compared in constant time, in either hex case; a body that
    RFC 8785 cannot canonicalize has no valid signature (False, never an exception).
    """
    given = body.get(SIGNATURE_FIELD)
    if not isinstance(given, str):
        return False
    try:
        expected = sign(key, topic, body)
    except rfc8785.CanonicalizationError:
        return False
    return hmac.compare_digest(given.lower().encode(), expected.encode())
