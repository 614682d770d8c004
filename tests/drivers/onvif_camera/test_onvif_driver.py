"""The camera driver (onvif-zeep-async) against the simulated camera over real HTTP/SOAP."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import structlog

from drivers.onvif_camera.device import OnvifDevice, SoapLimiter
from drivers.onvif_camera.events import CameraDriver
from gateway.camera.rules import CameraRules
from gateway.config.camera import CameraConfig
from gateway.errors import DeviceAuthError, DeviceUnavailable
from gateway.events.model import EventFactory
from gateway.events.observation import CameraCapabilities
from simulators.camera.pullpoint import load_capture
from simulators.camera.server import SimulatedCamera
from tests.camera_support import Recorder, camera_config, camera_options
from tests.helpers import FIXTURES_PATH

pytestmark = pytest.mark.timeout(60)


@contextlib.asynccontextmanager
async def driving(cfg: CameraConfig) -> AsyncIterator[tuple[CameraDriver, Recorder]]:
    sink = Recorder()
    driver = CameraDriver(cfg, sink)
    task = asyncio.create_task(driver.run())
    try:
        yield driver, sink
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_device_corrects_a_lying_clock_and_reads_a_broken_getservices(
    tmp_path: Path,
) -> None:
    options = camera_options(
        "cam-skew", clock_offset_s=3600, quirks=frozenset({"undeclared_prefix"})
    )
    async with SimulatedCamera(options) as cam:
        cfg = camera_config(cam, tmp_path)
        async with OnvifDevice(cfg, cfg.password(), limiter=SoapLimiter(0)) as device:
            assert device.clock_skew_s is not None and abs(device.clock_skew_s - 3600) < 2
            assert device.media is not None
            assert device.media.snapshot == f"{cam.base_url}/onvif/snapshot.jpg"
            subscription = await device.subscribe(60)
            assert subscription.granted_s == 60
        assert cam.requests["GetServices"] == 2  # zeep refused it; read tolerantly the 2nd time
        assert cam.requests["Unsubscribe"] == 1  # a clean stop frees the camera's slot


async def test_wrong_password_is_an_auth_error_and_a_dead_port_is_unavailable(
    tmp_path: Path,
) -> None:
    async with SimulatedCamera(camera_options("cam-auth")) as cam:
        cfg = camera_config(cam, tmp_path, password="wrong")
        with pytest.raises(DeviceAuthError):
            async with OnvifDevice(cfg, cfg.password(), limiter=SoapLimiter(0)):
                pass
    with pytest.raises(DeviceUnavailable):
        async with OnvifDevice(cfg, "x", limiter=SoapLimiter(0)):
            pass


async def test_motion_gives_active_then_cleared_and_initialized_is_state_not_alarm(
    tmp_path: Path,
) -> None:
    async with SimulatedCamera(camera_options("cam-m")) as cam:
        cfg = camera_config(cam, tmp_path)
        emitted = Recorder()
        now = [0.0]  # the merge window's clock
        rules = CameraRules(
            [cfg], EventFactory("campus/s/g", lambda: True), emitted, monotonic=lambda: now[0]
        )
        async with driving(cfg) as (driver, sink):
            await sink.wait(lambda: sink.health() == ["online"])
            cam.trigger("motion", True)
            await sink.wait(lambda: len(sink.signals("camera.motion")) == 1)
            cam.trigger("motion", False)
            await sink.wait(lambda: len(sink.signals("camera.motion")) == 2)
            cam.fail_next("PullMessages", "fault")  # lose the subscription: a new one comes
            await sink.wait(lambda: len(sink.signals("camera.motion")) == 3)
            assert driver.resubscribes == 1
        for item in sink.items:
            await rules.observe(item)
        now[0] += cfg.merge_window_s  # quiet for the window: the cleared is final
        await rules.close_due()
    first, second, third = sink.signals("camera.motion")
    assert (first.state, first.initial, second.state, second.initial) == (
        "active", False, "cleared", False
    )  # fmt: skip
    assert (third.state, third.initial) == ("cleared", True)  # Initialized, inactive
    motion = emitted.events("camera.motion")
    assert [e.state for e in motion] == ["active", "cleared"]  # nothing for Initialized
    assert motion[1].data["incident"] == motion[0].id
    assert motion[0].data["devicetime"] == first.devicetime


async def test_a_camera_without_events_is_online_with_its_capabilities_and_pictures(
    tmp_path: Path,
) -> None:
    async with SimulatedCamera(camera_options("cam-ne", events_service=False)) as cam:
        cfg = camera_config(cam, tmp_path, pull_timeout_s=0.3, offline_after=2)
        async with driving(cfg) as (driver, sink):
            await sink.wait(lambda: sink.health() == ["online"])
            await sink.wait(lambda: driver.probes >= 2)  # watched, not pulled
            reboot = asyncio.create_task(cam.reboot(off_seconds=2.0))
            await sink.wait(lambda: sink.health() == ["online", "offline"])
            assert driver.media is not None  # the last URIs are kept while it is away
            await reboot
            await sink.wait(lambda: sink.health() == ["online", "offline", "online"])
    (found,) = [o for o in sink.items if isinstance(o, CameraCapabilities)]  # said once
    assert (found.present, found.missing) == (("snapshot", "stream"), ("events", "ptz"))
    assert driver.media.snapshot == f"{cam.base_url}/onvif/snapshot.jpg"
    assert driver.capabilities is not None and driver.capabilities.pictures
    assert "CreatePullPointSubscription" not in cam.requests
    assert driver.subscriptions == 0 and driver.pulls == 0


async def test_an_events_service_refusing_subscriptions_is_a_missing_capability(
    tmp_path: Path,
) -> None:
    async with SimulatedCamera(camera_options("cam-nx")) as cam:
        cam.fail_next("CreatePullPointSubscription", "unsupported")
        cfg = camera_config(cam, tmp_path)
        async with driving(cfg) as (driver, sink):
            await sink.wait(lambda: sink.health() == ["online"])
    (found,) = [o for o in sink.items if isinstance(o, CameraCapabilities)]
    assert "events" in found.missing and "snapshot" in found.present
    assert driver.failures == 0


async def test_failing_renew_is_retried_then_a_fault_on_renew_resubscribes(
    tmp_path: Path,
) -> None:
    async with SimulatedCamera(camera_options("cam-r", max_subscription_s=4)) as cam:
        cfg = camera_config(cam, tmp_path, renew_retries=2, pull_timeout_s=0.5)
        cam.fail_next("Renew", "http500")
        cam.fail_next("Renew", "fault")
        async with driving(cfg) as (driver, sink):
            await sink.wait(lambda: driver.resubscribes == 1, within=15)
            await sink.wait(lambda: driver.renewals >= 1, within=10)  # the new one renews fine
            cam.trigger("tamper", True)
            await sink.wait(lambda: bool(sink.signals("camera.tamper")))
    assert driver.renew_failures == 1  # the HTTP 500, retried a second later
    assert cam.requests["Renew"] >= 3  # 500, Fault, then a good one
    assert cam.requests["CreatePullPointSubscription"] == 2
    assert sink.health() == ["online"]  # no outage was reported
    assert sink.signals("camera.tamper")[0].state == "active"


async def test_real_captures_replayed_by_the_camera_never_stop_the_driver(
    tmp_path: Path, realdata: Path
) -> None:
    captures = [
        "pullpoint_sessions/dahua_sd4a425db_04_PullMessagesResponse_empty_topic_quirk.xml",
        "misc/hikvision_g2_fielddetector_objectsinside_fragment.xml",
        "misc/reolink_facedetect_initialized_epoch1970_fragment.xml",
        "pullpoint_sessions/cellmotion_03_PullMessagesResponse_motion_true.xml",
        "tapo_ha/tapo_cellmotiondetector_tamper.json",
    ]
    messages = [m for name in captures for m in load_capture(realdata / "onvif" / name)]
    async with SimulatedCamera(camera_options("cam-replay")) as cam:
        cfg = camera_config(cam, tmp_path)
        async with driving(cfg) as (driver, sink):
            await sink.wait(lambda: sink.health() == ["online"])
            cam.replay(messages)
            await sink.wait(lambda: len(sink.signals()) >= 6)
            assert driver.protocol_errors == 1  # the empty topic: logged once, skipped
    kinds = [(s.kind, s.state, s.devicetime) for s in sink.signals() if s.detector != "clock"]
    assert kinds == [
        ("camera.field_intrusion", "active", "..."),
        ("camera.motion", "cleared", "1970-01-01T00:00:00Z"),
        ("camera.motion", "active", "2026-03-21T17:08:10Z"),
        ("camera.motion", "active", "2026-03-21T17:08:10Z"),
        ("camera.tamper", "active", "2025-01-05T21:01:05+00:00"),
    ]


async def test_unknown_topics_html_answers_and_empty_topics_never_stop_the_driver(
    tmp_path: Path,
) -> None:
    quirky = load_capture(FIXTURES_PATH / "onvif" / "pull_soap12_quirks.xml")
    async with SimulatedCamera(camera_options("cam-q")) as cam:
        cfg = camera_config(cam, tmp_path, offline_after=3)
        with structlog.testing.capture_logs() as logs:
            async with driving(cfg) as (driver, sink):
                await sink.wait(lambda: sink.health() == ["online"])
                cam.replay(quirky)
                cam.replay(quirky)
                await sink.wait(lambda: len(sink.signals("camera.event")) == 2)
                cam.fail_next("PullMessages", "html")  # HTTP 200 with an HTML page
                await sink.wait(lambda: driver.connects == 2)
                cam.trigger("input", True, source="DI_1")
                await sink.wait(lambda: bool(sink.signals("camera.digital_input")))
    assert driver.unknown_messages == 2 and driver.protocol_errors == 2  # counted every time
    assert [e["event"] for e in logs].count("onvif.unknown_topic") == 1  # logged once
    assert [e["event"] for e in logs].count("onvif.bad_message") == 1
    unknown = next(e for e in logs if e["event"] == "onvif.unknown_topic")
    assert "vx:Custom/Siren" in unknown["raw"]  # the raw XML, ready to paste into a test
    assert sink.health() == ["online"]  # one bad answer is not an outage
    assert driver.failures == 1


async def test_soap_requests_to_one_camera_are_spaced(tmp_path: Path) -> None:
    async with SimulatedCamera(camera_options("cam-rate")) as cam:
        cfg = camera_config(cam, tmp_path, soap_min_interval_ms=150)
        limiter = SoapLimiter(cfg.soap_min_interval_ms / 1000)
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with OnvifDevice(cfg, cfg.password(), limiter=limiter) as device:
            await device.subscribe(60)
            await asyncio.gather(device.pull(0.1, 10), device.renew(60), device.pull(0.1, 10))
        elapsed = loop.time() - started
    assert limiter.requests >= 6  # time, services, profiles, snapshot, stream, subscribe …
    assert elapsed >= (limiter.requests - 1) * 0.15
