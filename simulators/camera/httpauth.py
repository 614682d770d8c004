"""HTTP authentication for the simulated camera's snapshot URI: Digest (RFC 7616, MD5) or Basic.

Real cameras serve snapshots behind HTTP Digest; old firmware behind Basic.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

_PARAM = re.compile(r'(\w+)=(?:"([^"]*)"|([^,\s]*))')


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


class HttpAuth:
    """Checks ``Authorization`` headers for one user.

    Args:
        mode: ``digest``, ``basic`` or ``none``.
        username, password: the credentials.
        realm: the protection space the camera names.
    """

    def __init__(self, mode: str, username: str, password: str, realm: str = "SimCamera") -> None:
        self.mode = mode
        self.username = username
        self.password = password
        self.realm = realm
        self._nonces: set[str] = set()

    def challenge(self) -> str:
        """The ``WWW-Authenticate`` value of a 401 answer."""
        if self.mode == "basic":
            return f'Basic realm="{self.realm}"'
        nonce = secrets.token_hex(16)
        self._nonces.add(nonce)
        return f'Digest realm="{self.realm}", qop="auth", algorithm=MD5, nonce="{nonce}"'

    def accepts(self, method: str, header: str | None) -> bool:
        """True when ``header`` authorizes a ``method`` request (always, for ``none``)."""
        if self.mode == "none":
            return True
        if not header:
            return False
        scheme, _, rest = header.partition(" ")
        if self.mode == "basic" and scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(rest).decode().partition(":")
            except ValueError:
                return False
            return user == self.username and hmac.compare_digest(password, self.password)
        if self.mode != "digest" or scheme.lower() != "digest":
            return False
        p = {m[0]: m[1] or m[2] for m in _PARAM.findall(rest)}
        if p.get("username") != self.username or p.get("nonce") not in self._nonces:
            return False
        ha1 = _md5(f"{self.username}:{self.realm}:{self.password}")
        ha2 = _md5(f"{method}:{p.get('uri', '')}")
        expected = _md5(f"{ha1}:{p['nonce']}:{p.get('nc', '')}:{p.get('cnonce', '')}:auth:{ha2}")
        return hmac.compare_digest(expected, p.get("response", ""))
