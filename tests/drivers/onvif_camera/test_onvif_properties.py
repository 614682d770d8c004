"""Hostile camera documents (hypothesis): a clear error or a sound document, never a crash;
a DOCTYPE (XXE, entity expansion) is refused before any parsing, and the file an
external entity names is never opened."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.onvif_camera.notifications import CameraDocument, decode_document, parse_camera_time
from gateway.errors import DeviceProtocolError

ENVELOPE = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope"'
    ' xmlns:wsnt="http://docs.oasis-open.org/wsn/b-2" xmlns:tt="http://www.onvif.org/ver10/schema">'
    '<env:Body><tev:PullMessagesResponse xmlns:tev="http://www.onvif.org/ver10/events/wsdl">'
    "{body}</tev:PullMessagesResponse></env:Body></env:Envelope>"
)
MESSAGE = (
    '<wsnt:NotificationMessage><wsnt:Topic Dialect="x">{topic}</wsnt:Topic>'
    '<wsnt:Message><tt:Message UtcTime="{time}" PropertyOperation="{op}">'
    '<tt:Source><tt:SimpleItem Name="{name}" Value="{value}"/></tt:Source>'
    "</tt:Message></wsnt:Message></wsnt:NotificationMessage>"
)

xml_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="<>&\"'"))
messages = st.builds(
    MESSAGE.format, topic=xml_text, time=xml_text, op=xml_text, name=xml_text, value=xml_text
)


def _decode(raw: bytes) -> CameraDocument | None:
    try:
        return decode_document(raw, device_id="cam")
    except DeviceProtocolError as exc:  # DeviceFault and DeviceAuthError are ones too
        assert exc.device_id == "cam" and str(exc)
        return None


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=3000))
def test_any_bytes_give_a_document_or_a_protocol_error(raw: bytes) -> None:
    _decode(raw)


@settings(max_examples=100, deadline=None)
@given(st.lists(messages, max_size=5))
def test_any_notification_fields_decode_to_strings(body: list[str]) -> None:
    doc = _decode(ENVELOPE.format(body="".join(body)).encode())
    assert doc is not None and len(doc.notifications) == len(body)
    for note in doc.notifications:
        assert isinstance(note.topic, str)
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in note.source)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_any_camera_time_is_parsed_or_none(text: str) -> None:
    parsed = parse_camera_time(text)
    assert parsed is None or parsed.tzinfo is not None


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(["<!DOCTYPE", "<!doctype", "<! DOCTYPE", "<!ENTITY"]),
    xml_text,
    st.lists(messages, max_size=2),
)
def test_any_document_with_a_dtd_is_refused(decl: str, inner: str, body: list[str]) -> None:
    doc = (
        f'<?xml version="1.0"?>{decl} Envelope [{inner}]>'
        + ENVELOPE.format(body="".join(body)).split("?>", 1)[1]
    )
    with pytest.raises(DeviceProtocolError, match="document type declaration"):
        decode_document(doc.encode(), device_id="cam")


def _xxe(path: Path) -> bytes:
    return (
        f'<?xml version="1.0"?><!DOCTYPE e [<!ENTITY xxe SYSTEM "file://{path}">]>'
        + ENVELOPE.format(
            body=MESSAGE.format(topic="&xxe;", time="", op="", name="n", value="v")
        ).split("?>", 1)[1]
    ).encode()


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=1)
@given(st.just(None))
def test_xxe_is_refused_without_opening_the_named_file(tmp_path: Path, _: None) -> None:
    # A FIFO: whoever opens it for reading blocks until a writer comes. If the
    # parser tried to read the entity's file, the decode would hang, and the
    # watcher below (the only writer) would see its reader.
    fifo = tmp_path / "secret.fifo"
    if not fifo.exists():
        os.mkfifo(fifo)
    result: list[BaseException | None] = []

    def decode() -> None:
        try:
            decode_document(_xxe(fifo), device_id="cam")
            result.append(None)
        except BaseException as exc:  # handed to the test thread
            result.append(exc)

    thread = threading.Thread(target=decode, daemon=True)
    thread.start()
    thread.join(5)
    if thread.is_alive():  # it is blocked opening the FIFO: free it, then fail
        with open(fifo, "wb"):
            pass
        pytest.fail("the parser opened the file an external entity names")
    assert isinstance(result[0], DeviceProtocolError)
    assert "document type declaration" in str(result[0])
    marker = tmp_path / "secret.txt"
    marker.write_text("TOP-SECRET-MARKER")
    with pytest.raises(DeviceProtocolError) as info:
        decode_document(_xxe(marker), device_id="cam")
    assert "TOP-SECRET-MARKER" not in str(info.value) + info.value.raw


def test_billion_laughs_is_refused_at_once() -> None:
    lol = '<!ENTITY a0 "lol">' + "".join(
        f'<!ENTITY a{i} "{("&a" + str(i - 1) + ";") * 10}">' for i in range(1, 10)
    )
    doc = f'<?xml version="1.0"?><!DOCTYPE Envelope [{lol}]><Envelope>&a9;</Envelope>'
    with pytest.raises(DeviceProtocolError, match="document type declaration"):
        decode_document(doc.encode(), device_id="cam")
