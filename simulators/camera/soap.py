"""SOAP 1.2 for the simulated camera: reading requests, checking WS-UsernameToken, writing answers.

The WS-Security check follows the UsernameToken Profile 1.0 §3.1 as ONVIF Core
§5.12 uses it: ``PasswordDigest = Base64(SHA-1(nonce + created + password))``,
with ``Created`` within ``window_s`` of the *camera's* clock. A camera whose clock
lies therefore refuses a client that does not correct for the offset, as real
ones do.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from xml.sax.saxutils import escape, quoteattr

from lxml import etree

from drivers.onvif_camera.notifications import local, parse_camera_time

NS = {
    "env": "http://www.w3.org/2003/05/soap-envelope",
    "tds": "http://www.onvif.org/ver10/device/wsdl",
    "trt": "http://www.onvif.org/ver10/media/wsdl",
    "tev": "http://www.onvif.org/ver10/events/wsdl",
    "tt": "http://www.onvif.org/ver10/schema",
    "wsnt": "http://docs.oasis-open.org/wsn/b-2",
    "wsa5": "http://www.w3.org/2005/08/addressing",
    "wstop": "http://docs.oasis-open.org/wsn/t-1",
    "tns1": "http://www.onvif.org/ver10/topics",
    "ter": "http://www.onvif.org/ver10/error",
}
_DECLS = " ".join(f"xmlns:{p}={quoteattr(u)}" for p, u in NS.items())
_DURATION = re.compile(r"^P(?:(\d+)D)?T?(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?$")


@dataclass(frozen=True, slots=True)
class SoapRequest:
    """A parsed request: the Body's first element and the UsernameToken, if any."""

    operation: str
    body: etree._Element
    username: str | None
    digest: str | None
    nonce: str | None
    created: str | None

    def text(self, name: str) -> str | None:
        """Text of the first descendant of the operation element named ``name``."""
        for el in self.body.iter():
            if local(el.tag) == name:
                return (el.text or "").strip()
        return None


def parse_request(raw: bytes) -> SoapRequest:
    """Read a SOAP request.

    Raises:
        ValueError: not XML, or no Body element.
    """
    root = etree.fromstring(raw, etree.XMLParser(resolve_entities=False, no_network=True))
    body = next((el for el in root if local(el.tag) == "Body"), None)
    operation = (
        next((el for el in body if isinstance(el.tag, str)), None) if body is not None else None
    )
    if operation is None:
        raise ValueError("no SOAP Body")

    def find(name: str) -> str | None:
        el = next((e for e in root.iter() if local(e.tag) == name), None)
        return None if el is None else (el.text or "").strip()

    return SoapRequest(
        operation=local(operation.tag),
        body=operation,
        username=find("Username"),
        digest=find("Password"),
        nonce=find("Nonce"),
        created=find("Created"),
    )


def token_valid(
    request: SoapRequest, username: str, password: str, now: datetime, window_s: float
) -> bool:
    """True when the request's UsernameToken digest is right and fresh for ``now``."""
    if request.username != username or not request.digest or not request.nonce:
        return False
    created = parse_camera_time(request.created)
    if created is None or abs((created - now).total_seconds()) > window_s:
        return False
    try:
        nonce = base64.b64decode(request.nonce)
    except ValueError:
        return False
    expected = base64.b64encode(
        hashlib.sha1(nonce + (request.created or "").encode() + password.encode()).digest()
    ).decode()
    return hmac.compare_digest(expected, request.digest)


def envelope(body: str) -> bytes:
    """A SOAP 1.2 envelope around ``body`` (which may use every prefix of :data:`NS`)."""
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<env:Envelope {_DECLS}>'
        f"<env:Body>{body}</env:Body></env:Envelope>"
    ).encode()


def fault(subcode: str, reason: str, *, receiver: bool = False) -> bytes:
    """A SOAP 1.2 Fault (ONVIF Core §5.11.2): ``env:Sender`` or ``env:Receiver`` + subcode."""
    code = "env:Receiver" if receiver else "env:Sender"
    return envelope(
        f"<env:Fault><env:Code><env:Value>{code}</env:Value><env:Subcode>"
        f"<env:Value>{subcode}</env:Value></env:Subcode></env:Code>"
        f'<env:Reason><env:Text xml:lang="en">{escape(reason)}</env:Text></env:Reason></env:Fault>'
    )


def xml_time(t: datetime) -> str:
    """``2026-11-29T07:00:01Z`` (xs:dateTime, UTC, whole seconds)."""
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_termination(text: str | None, now: datetime, default_s: float) -> datetime:
    """An ``AbsoluteOrRelativeTimeType``: ``PT60S`` from ``now`` or an absolute time.

    A missing or unreadable value gives ``now + default_s``.
    """
    if text:
        match = _DURATION.match(text.strip())
        if match and any(match.groups()):
            d, h, m, s = (float(g or 0) for g in match.groups())
            return now + timedelta(days=d, hours=h, minutes=m, seconds=s)
        absolute = parse_camera_time(text)
        if absolute is not None:
            return absolute
    return now + timedelta(seconds=default_s)


def simple_items(items: tuple[tuple[str, str], ...]) -> str:
    """``<tt:SimpleItem Name=… Value=…/>`` for each pair."""
    return "".join(f"<tt:SimpleItem Name={quoteattr(n)} Value={quoteattr(v)}/>" for n, v in items)


def notification_xml(
    topic: str,
    operation: str,
    utc: str,
    source: tuple[tuple[str, str], ...],
    data: tuple[tuple[str, str], ...],
) -> str:
    """One ``wsnt:NotificationMessage`` in the ONVIF ConcreteSet dialect."""
    return (
        '<wsnt:NotificationMessage><wsnt:Topic Dialect="http://www.onvif.org/ver10/tev/'
        f'topicExpression/ConcreteSet">{escape(topic)}</wsnt:Topic><wsnt:Message>'
        f"<tt:Message UtcTime={quoteattr(utc)} PropertyOperation={quoteattr(operation)}>"
        f"<tt:Source>{simple_items(source)}</tt:Source><tt:Data>{simple_items(data)}</tt:Data>"
        "</tt:Message></wsnt:Message></wsnt:NotificationMessage>"
    )
