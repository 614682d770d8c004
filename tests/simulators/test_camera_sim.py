"""The simulated camera itself: its WS-UsernameToken check, its control endpoint and CLI."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import io
import json
from datetime import UTC, datetime, timedelta

import pytest

from simulators.camera import cli
from simulators.camera.control import CameraControl
from simulators.camera.pullpoint import load_capture
from simulators.camera.server import SimulatedCamera
from simulators.camera.soap import parse_request, token_valid, xml_time
from simulators.modbus_control import ControlError, control_request
from tests.camera_support import camera_options, eventually
from tests.helpers import FIXTURES_PATH

FIXTURES = FIXTURES_PATH / "onvif"


def _request(password: str, created: datetime, nonce: bytes = b"0123456789abcdef") -> bytes:
    stamp = xml_time(created)
    digest = base64.b64encode(hashlib.sha1(nonce + stamp.encode() + password.encode()).digest())
    return (
        '<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:wsse="http://docs.'
        'oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd" xmlns:wsu="http:'
        '//docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"><s:Header>'
        "<wsse:Security><wsse:UsernameToken><wsse:Username>admin</wsse:Username><wsse:Password>"
        f"{digest.decode()}</wsse:Password><wsse:Nonce>{base64.b64encode(nonce).decode()}"
        f"</wsse:Nonce><wsu:Created>{stamp}</wsu:Created></wsse:UsernameToken></wsse:Security>"
        '</s:Header><s:Body><GetProfiles xmlns="http://www.onvif.org/ver10/media/wsdl"/>'
        "</s:Body></s:Envelope>"
    ).encode()


def test_usernametoken_digest_must_match_and_be_fresh_by_the_cameras_clock() -> None:
    camera_now = datetime.now(UTC) + timedelta(hours=1)  # a camera whose clock lies
    good = parse_request(_request("pw", camera_now))
    assert good.operation == "GetProfiles"
    assert token_valid(good, "admin", "pw", camera_now, 10)
    assert not token_valid(good, "admin", "other", camera_now, 10)
    assert not token_valid(good, "root", "pw", camera_now, 10)
    stale = parse_request(_request("pw", datetime.now(UTC)))  # the gateway's own clock
    assert not token_valid(stale, "admin", "pw", camera_now, 10)


async def test_control_endpoint_triggers_reboots_lies_fails_and_replays() -> None:
    async with (
        SimulatedCamera(camera_options("gate-cam")) as cam,
        CameraControl({"gate-cam": cam}) as ctl,
    ):
        sub = cam.events.subscribe(cam.now(), cam.now() + timedelta(minutes=1))
        base = "/cameras/gate-cam"
        await control_request("127.0.0.1", ctl.port, "POST", f"{base}/trigger", {"event": "field"})
        await control_request("127.0.0.1", ctl.port, "POST", f"{base}/clock", {"offset_s": 90})
        await control_request(
            "127.0.0.1", ctl.port, "POST", f"{base}/fail",
            {"operation": "Renew", "mode": "fault", "count": 2},
        )  # fmt: skip
        files = [str(FIXTURES / "notify_push.xml")]
        await control_request("127.0.0.1", ctl.port, "POST", f"{base}/replay", {"files": files})
        assert [m.count("ObjectsInside") for m in sub.queue] == [1, 0]
        assert "TamperDetector" in sub.queue[1]
        assert abs((cam.now() - datetime.now(UTC)).total_seconds() - 90) < 1
        await control_request("127.0.0.1", ctl.port, "POST", f"{base}/reboot", {"off_seconds": 0.5})
        await eventually(lambda: not cam.running)
        assert not cam.events.subscriptions
        await eventually(lambda: cam.running)
        port = str(ctl.port)
        await asyncio.to_thread(
            _cli, ["ctl", "snapshot", "gate-cam", "http500", "--control-port", port]
        )
        assert cam.options.snapshot_fault == "http500"
        state = await asyncio.to_thread(_cli, ["ctl", "state", "--control-port", port])
        assert state["cameras"][0]["running"] is True and state["cameras"][0]["boots"] == 2
        assert state["cameras"][0]["snapshot_fault"] == "http500"
        await asyncio.to_thread(_cli, ["ctl", "snapshot", "gate-cam", "ok", "--control-port", port])
        assert cam.options.snapshot_fault is None
        with pytest.raises(ControlError) as refused:
            await control_request("127.0.0.1", ctl.port, "POST", f"{base}/trigger", {"event": "x"})
        assert refused.value.status == 400


def test_replay_loader_reads_every_capture_format() -> None:
    counts = {p.name: len(load_capture(p)) for p in sorted(FIXTURES.iterdir()) if p.suffix != ".md"}
    assert counts["pull_soap12_quirks.xml"] == 6
    assert counts["zeep_logged.json"] == counts["metadata_stream.xml"] == 1
    assert counts["fault_busy.xml"] == counts["isapi_alert.xml"] == 0


def _cli(argv: list[str]) -> dict[str, list[dict[str, object]]]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(argv) == 0
    result: dict[str, list[dict[str, object]]] = json.loads(out.getvalue())
    return result
