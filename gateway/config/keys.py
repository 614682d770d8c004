"""The center's site key file, read exactly as ``[commands] hmac_key_encoding`` says.

Nothing is stripped silently. The rules (``docs/center-protocol.md`` "The site key"):

* ``hex`` (the default): the key's bytes as hex digits, upper or lower case, on
  one line. One final line feed (``\\n``) may end the file, because the usual
  recipe ``openssl rand -hex 32 > center.key`` writes one; anything else — a
  space, a carriage return, a second line, an odd number of digits — is an error.
* ``base64``: RFC 4648 §4 base64 with padding on one line; the same one final
  line feed may end the file.
* ``raw``: the file's bytes are the key, every byte of it, a trailing newline
  included.

The decoded key must be at least 32 bytes: RFC 2104 §3 discourages HMAC keys
shorter than the hash's output (32 bytes for SHA-256).
"""

from __future__ import annotations

import base64
import binascii
import re
from pathlib import Path
from typing import Literal

from gateway.errors import ConfigError

KeyEncoding = Literal["raw", "hex", "base64"]
MIN_KEY_BYTES = 32

_HEX = re.compile(rb"(?:[0-9A-Fa-f]{2})+")
_BASE64 = re.compile(rb"[A-Za-z0-9+/]*={0,2}")


def read_key(path: Path, encoding: KeyEncoding, field: str) -> bytes:
    """The key in ``path``, decoded as ``encoding``.

    Args:
        path: the key file (already resolved against the config file's folder).
        encoding: ``raw``, ``hex`` or ``base64`` (rules in the module docstring).
        field: the dotted config field naming the file, for the error.

    Raises:
        ConfigError: the file cannot be read, is not in ``encoding`` (what is wrong
            is said, the key never shown), or the key is shorter than 32 bytes.
    """
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"cannot read the HMAC key: {exc.strerror}", file=str(path), field=field
        ) from exc
    key = content if encoding == "raw" else _decode(content, encoding, path, field)
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError(
            f"the HMAC key is {len(key)} bytes ({encoding}); at least {MIN_KEY_BYTES} are "
            "needed (RFC 2104 §3); make one with: openssl rand -hex 32",
            file=str(path),
            field=field,
        )
    return key


def _decode(content: bytes, encoding: KeyEncoding, path: Path, field: str) -> bytes:
    text = content[:-1] if content.endswith(b"\n") else content
    pattern = _HEX if encoding == "hex" else _BASE64
    if pattern.fullmatch(text) is None:
        what = "hex digits (an even number)" if encoding == "hex" else "RFC 4648 base64"
        raise ConfigError(
            f"the HMAC key file must hold only {what} on one line, with at most one final "
            f"line feed (read as {encoding}); nothing else is stripped",
            file=str(path),
            field=field,
        )
    if encoding == "hex":
        return bytes.fromhex(text.decode("ascii"))
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise ConfigError(
            f"the HMAC key file is not RFC 4648 base64 ({exc})", file=str(path), field=field
        ) from exc
