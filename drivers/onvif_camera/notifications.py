"""Tolerant decoding of what cameras send: SOAP answers, event messages, their times.

Every camera answer the driver reads itself (PullMessages, Notify, the Axis
metadata stream, Hikvision's ISAPI alert stream, GetServices when zeep refuses it)
goes through :func:`decode_document`. It never trusts a camera to be well-formed
(sources: ``../shared/realdata/onvif/``, README "correct interpretation"):

======================================================  ==================================
quirk (capture)                                         what happens here
======================================================  ==================================
undeclared prefix ``tad:`` (reolink_bullet_01)          lxml ``recover=True``; names compared
                                                        by local name, prefixes ignored
HTTP 200 with an HTML 404 page (generic_…html404_body)  :class:`DeviceProtocolError`
SOAP Fault (dahua_…_01 BlockedThreadUpperLimit)         :class:`DeviceFault` with subcodes
Fault ``ter:NotAuthorized`` (hikvision_ds2cd2387g2p)    :class:`DeviceAuthError`
minute 61 ``00:61:16Z`` (overflow_minute61)             carried over: ``01:01:16Z``
``10-05-2025T22:41:27Z`` MM-DD-YYYY (cellmotion_02)     read as 2025-10-05
``2024-01-22T11:47:1500:00``, "+" lost (isapi)          read as ``+00:00``
``UtcTime="..."`` (hikvision_g2 fragment)               kept as sent, parsed to None
``1970-01-01T00:00:00Z`` (reolink epoch1970)            kept; never used for ordering
empty Topic and Message (dahua_…_04)                    a :class:`Notification` with topic ""
tabs inside ``tt:Message`` (dahua_…_05)                 whitespace ignored
a DOCTYPE (XXE, "billion laughs" entity expansion)      :class:`DeviceProtocolError`, before
                                                        any parsing: SOAP 1.2 Part 1 §5
                                                        forbids a DTD in a message
======================================================  ==================================

Device times are only ever *kept* (``devicetime``) or used for a subscription's
granted duration; an event's time is the gateway's receive time (DESIGN.md).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from lxml import etree

from gateway.errors import DeviceAuthError, DeviceFault, DeviceProtocolError

Items = tuple[tuple[str, str], ...]

TOPIC_NAMESPACES = {
    "http://www.onvif.org/ver10/topics": "tns1",
    "http://www.axis.com/2009/event/topics": "tnsaxis",
    "http://www.hikvision.com/2011/event/topics": "tnshik",
}
"""Topic namespace → the prefix the topic tables use, whatever prefix a camera binds."""

# "<!DOCTYPE" or "<!ENTITY" in any case, spaces allowed after "<!" (libxml2 is lenient)
_DTD = re.compile(rb"<!\s*(?:DOCTYPE|ENTITY)", re.IGNORECASE)

_RAW_LIMIT = 4000  # characters of raw XML kept on an error or a notification


@dataclass(frozen=True, slots=True)
class Notification:
    """One ``wsnt:NotificationMessage`` (or an ISAPI alert), as sent.

    Attributes:
        topic: the topic with namespace prefixes made canonical (``tns1:``,
            ``tnsaxis:``), trailing ``/.`` removed; "" when the camera sent none.
        operation: ``PropertyOperation`` (``Initialized``, ``Changed``,
            ``Deleted``), or "" for a plain event.
        utc_time: the ``UtcTime`` attribute exactly as sent, or None.
        source, key, data: ``SimpleItem`` names and values in document order.
        raw: the message's XML (for a log line that can be pasted into a test).
    """

    topic: str
    operation: str = ""
    utc_time: str | None = None
    source: Items = ()
    key: Items = ()
    data: Items = ()
    raw: str = ""


@dataclass(frozen=True, slots=True)
class CameraDocument:
    """A decoded camera answer.

    Attributes:
        kind: local name of the payload (``PullMessagesResponse``, ``Notify``,
            ``MetadataStream``, ``NotificationMessage``, ``RenewResponse``,
            ``CreatePullPointSubscriptionResponse``, ``GetServicesResponse``,
            ``EventNotificationAlert`` …).
        notifications: every notification in it, in order.
        current_time, termination_time: the subscription times it carries
            (camera clock, UTC), None when absent or unreadable.
        address: ``SubscriptionReference/Address``, if any.
        services: ``(namespace, XAddr)`` of a GetServices answer.
    """

    kind: str
    notifications: tuple[Notification, ...] = ()
    current_time: datetime | None = None
    termination_time: datetime | None = None
    address: str | None = None
    services: Items = ()


def decode_document(
    raw: bytes, *, device_id: str, content_type: str | None = None
) -> CameraDocument:
    """Decode a camera's answer or message.

    Args:
        raw: the HTTP body (or a captured file).
        device_id: camera id, for errors.
        content_type: the HTTP ``Content-Type`` when known.

    Raises:
        DeviceProtocolError: an HTML page, an empty body, no XML at all, or a
            document type declaration (SOAP 1.2 Part 1 §5: a SOAP message has
            none; refused before parsing, so no entity is expanded and no file
            or URL an entity names is ever read).
        DeviceAuthError: a SOAP Fault whose subcode is ``NotAuthorized``.
        DeviceFault: any other SOAP Fault.
    """
    text = raw.lstrip(b"\xef\xbb\xbf \t\r\n")
    head = text[:200].lower()
    if (content_type or "").lower().startswith("text/html") or head.startswith(
        (b"<html", b"<!doctype html")
    ):
        raise DeviceProtocolError(
            "the camera answered with an HTML page, not SOAP (no such service?)",
            device_id=device_id,
            raw=_clip(raw),
        )
    if _DTD.search(text):
        raise DeviceProtocolError(
            "a document type declaration in a SOAP message is refused (SOAP 1.2 Part 1 §5)",
            device_id=device_id,
            raw=_clip(raw),
        )
    parser = etree.XMLParser(
        recover=True, resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False
    )
    try:
        root = etree.fromstring(text, parser) if text else None
    except (etree.XMLSyntaxError, ValueError) as exc:  # even recover=True gives up on some
        raise DeviceProtocolError(f"not XML: {exc}", device_id=device_id, raw=_clip(raw)) from exc
    if root is None:
        raise DeviceProtocolError("no XML in the answer", device_id=device_id, raw=_clip(raw))
    payload = _payload(root)
    if local(payload.tag) == "Fault":
        raise _fault(payload, device_id, raw)
    if local(payload.tag) == "EventNotificationAlert":
        return CameraDocument("EventNotificationAlert", (_isapi(payload),))
    messages = tuple(_notification(el) for el in _find_all(payload, "NotificationMessage"))
    address = _find(payload, "SubscriptionReference")
    return CameraDocument(
        kind=local(payload.tag),
        notifications=messages,
        current_time=parse_camera_time(_text(_find(payload, "CurrentTime", skip=True))),
        termination_time=parse_camera_time(_text(_find(payload, "TerminationTime", skip=True))),
        address=_text(_find(address, "Address")) if address is not None else None,
        services=tuple(
            (_text(_find(s, "Namespace")) or "", _text(_find(s, "XAddr")) or "")
            for s in _find_all(payload, "Service")
        ),
    )


def notification_from_mapping(message: Mapping[str, Any]) -> Notification:
    """A notification from a zeep-serialized ``NotificationMessageHolderType`` dict.

    That is how Home Assistant logs them (``realdata/onvif/tapo_ha/*.json``):
    ``Topic._value_1`` and ``Message._value_1`` with ``Source``/``Key``/``Data``
    ``SimpleItem`` lists of ``{Name, Value}``, ``UtcTime``, ``PropertyOperation``.
    """
    topic = (message.get("Topic") or {}).get("_value_1") or ""
    body = (message.get("Message") or {}).get("_value_1") or {}

    def items(part: str) -> Items:
        group = body.get(part) or {}
        return tuple(
            (str(i.get("Name", "")), str(i.get("Value", ""))) for i in group.get("SimpleItem") or []
        )

    utc = body.get("UtcTime")
    return Notification(
        topic=_clean_topic(str(topic)),
        operation=str(body.get("PropertyOperation") or ""),
        utc_time=None if utc is None else str(utc),
        source=items("Source"),
        key=items("Key"),
        data=items("Data"),
    )


_ISO = re.compile(
    r"^(?P<y>\d{4})-(?P<mo>\d{2})-(?P<d>\d{2})[T ](?P<h>\d{2}):(?P<mi>\d{2}):(?P<s>\d{2})"
    r"(?P<frac>\.\d+)?(?P<tz>Z|[+-]\d{2}:?\d{2})?$"
)
_MDY = re.compile(r"^(\d{2})-(\d{2})-(\d{4})(T.*)$")
_LOST_PLUS = re.compile(r"^(.*T\d{2}:\d{2}:\d{2})(\d{2}:\d{2})$")


def parse_camera_time(text: str | None) -> datetime | None:
    """A camera's timestamp as an aware UTC datetime, or None when unreadable.

    Accepts ISO 8601 with ``Z``, an offset or none (taken as UTC), overflowing
    fields (``00:61:16`` → ``01:01:16``), ``MM-DD-YYYY`` dates and an offset whose
    ``+`` was lost (``…:1500:00``). ``1970-01-01`` is returned as it is: callers
    must not order events by it.
    """
    if not text:
        return None
    value = text.strip()
    if match := _MDY.match(value):
        value = f"{match[3]}-{match[1]}-{match[2]}{match[4]}"
    if match := _LOST_PLUS.match(value):
        value = f"{match[1]}+{match[2]}"
    match = _ISO.match(value)
    if match is None:
        return None
    try:
        base = datetime(int(match["y"]), int(match["mo"]), int(match["d"]), tzinfo=UTC)
    except ValueError:
        return None
    frac = float(match["frac"] or 0)
    moment = base + timedelta(
        hours=int(match["h"]), minutes=int(match["mi"]), seconds=int(match["s"]) + frac
    )
    tz = match["tz"]
    if tz and tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        digits = tz[1:].replace(":", "")
        moment -= sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    return moment


def local(tag: object) -> str:
    """Local name of an lxml tag: ``{ns}Name`` and an undeclared ``pfx:Name`` alike."""
    if not isinstance(tag, str):
        return ""
    return tag.rpartition("}")[2].rpartition(":")[2]


# -- internals -----------------------------------------------------------------------


def _payload(root: etree._Element) -> etree._Element:
    if local(root.tag) != "Envelope":
        return root
    body = _find(root, "Body")
    children = [c for c in body if isinstance(c.tag, str)] if body is not None else []
    return children[0] if children else root


def _iter(el: etree._Element, name: str, skip: bool) -> Iterator[etree._Element]:
    for child in el.iterchildren():
        if not isinstance(child.tag, str):
            continue
        if local(child.tag) == name:
            yield child
        elif not (skip and local(child.tag) == "NotificationMessage"):
            yield from _iter(child, name, skip)


def _find(el: etree._Element | None, name: str, *, skip: bool = False) -> etree._Element | None:
    """First descendant named ``name``; with ``skip``, not inside a notification."""
    if el is None:
        return None
    return next(_iter(el, name, skip), None)


def _find_all(el: etree._Element, name: str) -> list[etree._Element]:
    if local(el.tag) == name:
        return [el]
    return list(_iter(el, name, skip=False))


def _text(el: etree._Element | None) -> str | None:
    if el is None:
        return None
    value = "".join(el.itertext()).strip()
    return value or None


def _items(el: etree._Element | None) -> Items:
    if el is None:
        return ()
    return tuple(
        (item.get("Name", ""), item.get("Value", ""))
        for item in el.iterchildren()
        if local(item.tag) == "SimpleItem"
    )


def _notification(el: etree._Element) -> Notification:
    topic_el = _find(el, "Topic")
    message = _find(_find(el, "Message"), "Message")
    return Notification(
        topic=_clean_topic(_text(topic_el) or "", topic_el),
        operation=message.get("PropertyOperation", "") if message is not None else "",
        utc_time=message.get("UtcTime") if message is not None else None,
        source=_items(_find(message, "Source")),
        key=_items(_find(message, "Key")),
        data=_items(_find(message, "Data")),
        raw=_clip(etree.tostring(el)),
    )


def _clean_topic(topic: str, el: etree._Element | None = None) -> str:
    topic = re.sub(r"/*\.?$", "", topic.strip())
    if el is None:
        return topic
    nsmap = el.nsmap

    def canonical(segment: str) -> str:
        prefix, colon, name = segment.rpartition(":")
        if not colon:
            return segment
        known = TOPIC_NAMESPACES.get(nsmap.get(prefix) or "")
        return f"{known}:{name}" if known else segment

    return "/".join(canonical(s) for s in topic.split("/"))


def _isapi(el: etree._Element) -> Notification:
    """Hikvision ISAPI ``EventNotificationAlert`` (alertStream) as a notification."""
    fields = {local(c.tag): (c.text or "").strip() for c in el if isinstance(c.tag, str)}
    channel = next((n for n in ("channelID", "dynChannelID") if n in fields), "channelID")
    return Notification(
        topic=f"isapi:{fields.get('eventType', '')}",
        operation="Changed",
        utc_time=fields.get("dateTime"),
        source=((channel, fields.get(channel, "")),),
        data=(
            ("eventState", fields.get("eventState", "")),
            ("activePostCount", fields.get("activePostCount", "")),
        ),
        raw=_clip(etree.tostring(el)),
    )


def _fault(el: etree._Element, device_id: str, raw: bytes) -> DeviceFault | DeviceAuthError:
    code_el = _find(el, "Code")
    code = _text(_find(code_el, "Value")) if code_el is not None else None
    subcodes: list[str] = []
    sub = _find(code_el, "Subcode") if code_el is not None else None
    while sub is not None:
        value = next((c for c in sub if local(c.tag) == "Value"), None)
        subcodes.append(_text(value) or "")
        sub = next((c for c in sub if local(c.tag) == "Subcode"), None)
    reason = _text(_find(el, "Reason")) or ""
    message = f"SOAP Fault {code or '?'} {'/'.join(subcodes)} {reason}".strip()
    if any(local(s) == "NotAuthorized" for s in subcodes):
        return DeviceAuthError(message, device_id=device_id)
    return DeviceFault(
        message,
        device_id=device_id,
        raw=_clip(raw),
        code=code or "",
        subcodes=tuple(subcodes),
        reason=reason,
    )


def _clip(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")[:_RAW_LIMIT]
