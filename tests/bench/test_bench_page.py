"""The bench page over real HTTP against a running demo gateway: what it shows, how fast it
follows the campus, its password, and that it asks nothing of the broker."""

from __future__ import annotations

import asyncio
import hashlib
import re
import socket
from pathlib import Path

import aiohttp
import pytest

from gateway.config.root import GatewayConfig, load_config
from gateway.config.views import BenchConfig
from gateway.daemon import running
from simulators.broker import MosquittoBroker
from simulators.camera.fleet import simulated_cameras
from simulators.modbus_module import SimulatedModule
from simulators.scenario import CameraStep, PatrolStep, Scenario, campus_devices, play
from tests.bench_support import bench_session, device, state_stream, zone
from tests.campus_helpers import (
    DEMO_CONFIG,
    Campus,
    demo_config_on,
    demo_gateway,
    simulated_campus,
)
from tests.fault_support import wait_until
from tests.helpers import free_port

pytestmark = pytest.mark.timeout(90)

LOCAL_TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \+08:00$")


async def test_the_page_shows_the_campus_and_follows_a_panic_live(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    async with (
        simulated_campus() as modules,
        demo_gateway(mosquitto, tmp_path / "o.sqlite", modules) as campus,
        bench_session(campus.gateway) as (base, http),
    ):
        async with http.get(base) as page:
            html = await page.text()
            assert page.headers["Content-Type"].startswith("text/html")
            assert "default-src 'none'" in page.headers["Content-Security-Policy"]
        assert '<meta charset="utf-8">' in html and "https://" not in html  # no CDN
        async with state_stream(base, http) as stream:
            first = await stream.until(lambda d: zone(d, "Z01")["state"] == "normal", 5, "read")
            assert first["site"] == {
                "id": "demo-school", "gateway": "gw1", "name": "示范中学",
                "timezone": "Asia/Shanghai", "utc_offset": "UTC+08:00",
            }  # fmt: skip
            groups = [(g["area"], [z["id"] for z in g["zones"]]) for g in first["zone_groups"]]
            assert groups == [
                ("TEACH", ["Z02", "Z06", "Z07", "Z10", "Z11", "Z13", "Z14"]),
                ("PERIM", ["Z03", "Z04", "Z05"]),
                (None, ["Z01", "Z08", "Z09", "Z12"]),
            ]
            assert zone(first, "Z01")["name"] == "门卫室一键报警"
            assert {a["area"]: a["state"] for a in first["areas"]} == {
                "TEACH": "armed", "PERIM": "armed",
            }  # fmt: skip
            assert {d["id"]: d["health"] for d in first["devices"]} == dict.fromkeys(
                modules, "online"
            )
            assert LOCAL_TIME.match(device(first, "gate-io")["last_seen"])
            assert first["uplink"]["connected"] is True and first["action"] == []
            loop_time = asyncio.get_running_loop().time
            pressed = loop_time()
            modules["gate-io"].press(0)
            alarm = await stream.until(lambda d: zone(d, "Z01")["state"] == "alarm", 2, "Z01")
            assert loop_time() - pressed < 2.0
            modules["gate-io"].release(0)
            latched = await stream.until(
                lambda d: zone(d, "Z01")["violated"] is False, 2, "the button released"
            )
            assert zone(alarm, "Z01")["latched"] is True
            top = latched["action"][0]
            assert (top["id"], top["priority"], top["state"]) == ("Z01", 1, "alarm")
            assert any(a["kind"] == "output" and a["id"] == "S2" for a in latched["action"])
            panic = next(e for e in latched["events"] if e["type"] == "alarm.panic")
            assert panic["priority"] == 1 and LOCAL_TIME.match(panic["time"])
            assert latched["events"][0]["time"] >= panic["time"]  # newest first
            await campus.ok("reset", {"zone": "Z01"})
            reset = await stream.until(lambda d: zone(d, "Z01")["state"] == "normal", 3, "reset")
            assert all(a["id"] != "Z01" for a in reset["action"])
            last_ack = reset["uplink"]["last_center_ack"]
            assert last_ack is not None and LOCAL_TIME.match(last_ack)


async def test_nothing_is_built_for_a_page_nobody_has_open(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    """A build formats every shown event; with no page open a contact change costs none
    (issue 14), and an open page follows the campus again."""
    async with (
        simulated_campus() as modules,
        demo_gateway(mosquitto, tmp_path / "o.sqlite", modules) as campus,
        bench_session(campus.gateway) as (base, http),
    ):
        assert campus.gateway.bench is not None
        live = campus.gateway.bench.live
        before = live.builds
        modules["admin-io"].press(0)  # Z02: a panic, then its events reach the center
        await campus.wait("alarm.panic", "Z02", "active", 10)
        assert live.builds == before
        async with state_stream(base, http) as stream:
            shown = await stream.until(lambda d: zone(d, "Z02")["state"] == "alarm", 5, "Z02")
            assert shown["events"] and live.builds > before


async def test_a_power_cycled_module_shows_offline_then_online(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    async with (
        simulated_campus() as modules,
        demo_gateway(mosquitto, tmp_path / "o.sqlite", modules) as campus,
        bench_session(campus.gateway) as (base, http),
        state_stream(base, http) as stream,
    ):
        await stream.until(lambda d: device(d, "gate-io")["health"] == "online", 5, "online")
        await modules["gate-io"].power_cycle(3.0)
        down = await stream.until(lambda d: device(d, "gate-io")["health"] == "offline", 5, "")
        assert zone(down, "Z01")["state"] == "offline"
        assert any(a["kind"] == "device" and a["id"] == "gate-io" for a in down["action"])
        await stream.until(lambda d: device(d, "gate-io")["health"] == "online", 10, "back")


async def test_with_the_broker_stopped_the_page_still_updates_and_shows_the_uplink_down(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    async with simulated_campus() as modules:
        cfg = demo_config_on(mosquitto.port, modules)
        async with (
            running(cfg, outbox_path=tmp_path / "o.sqlite") as gateway,
            bench_session(gateway) as (base, http),
            state_stream(base, http) as stream,
        ):
            await stream.until(lambda d: d["uplink"]["connected"], 10, "uplink up")
            await mosquitto.stop()
            down = await stream.until(lambda d: not d["uplink"]["connected"], 5, "uplink down")
            modules["admin-io"].press(0)  # Z02: a panic with nowhere to send it
            later = await stream.until(lambda d: zone(d, "Z02")["state"] == "alarm", 2, "Z02")
            assert later["uplink"]["backlog"] > down["uplink"]["backlog"]
            assert later["events"][0]["type"] in {"alarm.panic", "output.switched"}


def _with_password(cfg: GatewayConfig, tmp_path: Path) -> GatewayConfig:
    """``cfg`` with its bench page behind the password ``调试-Pw-1`` (a file in ``tmp_path``)."""
    secret = tmp_path / "bench.password"
    secret.write_text("调试-Pw-1\n", encoding="utf-8")
    return cfg.model_copy(update={"bench": BenchConfig(port=0, password_file=secret)})


async def test_the_password_guards_the_page_and_walk_tests_need_it(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    async with simulated_campus() as modules:
        cfg = _with_password(demo_config_on(mosquitto.port, modules), tmp_path)
        async with (
            demo_gateway(mosquitto, tmp_path / "o.sqlite", modules, cfg) as campus,
            bench_session(campus.gateway) as (base, http),
        ):
            for path in ("api/state", "api/stream", "api/walk-test", "camera/gate-cam/latest.jpg"):
                async with http.get(base + path) as refused:
                    assert refused.status == 401, path
            async with http.get(base) as page:
                assert page.status == 200  # the page itself, to log in
            walk = {"technician": "李工", "area": "TEACH", "duration_s": 60}
            async with http.post(base + "api/walk-test", json=walk) as refused:
                assert refused.status == 401
            for _ in range(5):
                async with http.post(base + "api/login", json={"password": "guess"}) as wrong:
                    assert wrong.status == 401
            async with http.post(base + "api/login", json={"password": "调试-Pw-1"}) as locked:
                assert locked.status == 429 and int(locked.headers["Retry-After"]) > 0
            # the lock is per address: a technician at another address still gets in
            other = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
            async with aiohttp.ClientSession(
                connector=other, cookie_jar=aiohttp.CookieJar(unsafe=True)
            ) as tech:
                await _logged_in_walk_test(campus, modules, base, tech)


async def _logged_in_walk_test(
    campus: Campus, modules: dict[str, SimulatedModule], base: str, http: aiohttp.ClientSession
) -> None:
    walk = {"technician": "李工", "area": "TEACH", "duration_s": 60}
    async with http.post(base + "api/login", json={"password": "调试-Pw-1"}) as ok:
        assert ok.status == 200
        cookie = ok.cookies["bench_session"]
        assert cookie["httponly"] and cookie["samesite"] == "Strict"
    async with http.get(base + "api/state") as state:
        assert state.status == 200
    foreign = {"Origin": "http://evil.example"}
    async with http.post(base + "api/walk-test", json=walk, headers=foreign) as refused:
        assert refused.status == 403
    panic = {**walk, "area": None, "zones": ["Z01", "Z06"]}
    async with http.post(base + "api/walk-test", json=panic) as refused:
        assert refused.status == 409 and "stay live" in (await refused.json())["error"]
    async with http.post(base + "api/walk-test", json=walk) as started:
        assert started.status == 200, await started.text()
        assert (await started.json())["kept_live"] == ["Z02"]
    modules["admin-io"].set_input(2, closed=False)  # Z06
    trip = await campus.wait("zone.walk_test", "Z06", "instant")
    assert trip["data"]["test"] is True
    begun = campus.of("maintenance.started", "TEACH")[0]["data"]
    assert begun["by"] == "bench:李工" and begun["source"] == "bench"
    async with http.post(base + "api/walk-test/stop", json={"technician": "李工"}) as stop:
        report = await stop.json()
        assert report["reason"] == "stopped" and "Z07" in report["untripped"]
    async with http.get(base + "api/walk-test") as tests:
        assert (await tests.json())["reports"][0]["id"] == report["id"]


async def test_without_a_password_the_page_is_read_only(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    async with (
        simulated_campus() as modules,
        demo_gateway(mosquitto, tmp_path / "o.sqlite", modules) as campus,
        bench_session(campus.gateway) as (base, http),
    ):
        async with http.get(base + "api/session") as session:
            assert await session.json() == {"password": False, "logged_in": False}
        walk = {"technician": "x", "area": "TEACH", "duration_s": 60}
        async with http.post(base + "api/walk-test", json=walk) as refused:
            assert refused.status == 403
        assert campus.gateway.alarm is not None and campus.gateway.alarm.walk.active is None


async def test_a_request_for_another_host_name_is_refused(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    """No DNS rebinding (review of 2026-12-05): a page elsewhere that resolves its own
    name to this box gets 421, whatever the path; the box's own names are answered."""
    async with (
        simulated_campus() as modules,
        demo_gateway(mosquitto, tmp_path / "o.sqlite", modules) as campus,
        bench_session(campus.gateway) as (base, http),
    ):
        for path in ("", "api/session", "api/state"):
            async with http.get(base + path, headers={"Host": "evil.example"}) as foreign:
                assert foreign.status == 421, path
        async with http.get(base + "api/session", headers={"Host": "localhost"}) as own:
            assert own.status == 200


async def test_a_bench_port_in_use_costs_nothing_but_the_page(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    with socket.socket() as squatter:  # another program holds the bench's port
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        await _panic_with_the_port_taken(mosquitto, tmp_path, squatter.getsockname()[1])


async def _panic_with_the_port_taken(
    mosquitto: MosquittoBroker, tmp_path: Path, taken: int
) -> None:
    async with simulated_campus() as modules:
        cfg = demo_config_on(mosquitto.port, modules)
        cfg = cfg.model_copy(update={"bench": BenchConfig(port=taken)})
        async with demo_gateway(mosquitto, tmp_path / "o.sqlite", modules, cfg) as campus:
            modules["gate-io"].press(0)
            await campus.wait("alarm.panic", "Z01", "active", within=2.0)
            assert campus.gateway.bench is not None and not campus.gateway.bench.serving.is_set()
            await wait_until(
                lambda: campus.gateway.supervisor.crashes.get("bench", 0) >= 1, 5, "bench retried"
            )


async def test_the_last_picture_of_each_camera_and_the_current_patrol_round(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    demo = load_config(DEMO_CONFIG)
    async with (
        simulated_campus() as modules,
        simulated_cameras(demo, ports={c.id: 0 for c in demo.cameras}) as cameras,
    ):
        cfg = demo_config_on(mosquitto.port, modules, cameras=cameras, patrol_port=free_port())
        devices = campus_devices(cfg, modules, cameras)
        async with (
            demo_gateway(mosquitto, tmp_path / "o.sqlite", modules, cfg) as campus,
            bench_session(campus.gateway) as (base, http),
            state_stream(base, http) as stream,
        ):
            first = await stream.until(
                lambda d: {c["id"] for c in d["devices"] if c["health"] == "online"}
                >= {"gate-cam", "south-wall-cam"},
                15, "cameras online",
            )  # fmt: skip
            assert [c["picture"] for c in first["cameras"]] == [None, None]
            (patrol,) = first["patrol"]
            assert patrol["route_name"] == "校园巡更"
            assert [s["name"] for s in patrol["stops"]] == ["南门岗亭", "财务室门口", "北围墙"]
            steps = [
                CameraStep(at=0, action="camera", camera="gate-cam", trigger="motion"),
                PatrolStep(at=0.2, action="patrol", checkpoint="CP1"),
            ]
            await play(Scenario(steps=steps), devices, lambda _line: None)
            assert devices.app is not None
            await devices.app.close()
            shown = await stream.until(
                lambda d: d["cameras"][0]["picture"] is not None
                and d["patrol"][0]["stops"][0]["status"] == "done",
                15, "a picture and CP1 done",
            )  # fmt: skip
            snapshot = await campus.wait("camera.snapshot", "gate-cam", "instant")
            gate = shown["cameras"][0]
            assert gate["id"] == "gate-cam" and gate["picture"].endswith(snapshot["id"])
            assert LOCAL_TIME.match(gate["taken"]) and gate["for_type"] == "camera.motion"
            async with http.get(base + gate["picture"]) as picture:
                assert picture.headers["Content-Type"] == "image/jpeg"
                jpeg = await picture.read()
            assert hashlib.sha256(jpeg).hexdigest() == snapshot["data"]["sha256"]
            stops = [s["status"] for s in shown["patrol"][0]["stops"]]
            assert stops == ["done", "due", "due"]
            async with http.get(base + "camera/south-wall-cam/latest.jpg") as none:
                assert none.status == 404


async def test_a_logout_ends_the_open_state_stream(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    """A review of 2026-12-06: an open ``api/stream`` went on sending the state after
    the session that opened it logged out."""
    async with simulated_campus() as modules:
        cfg = _with_password(demo_config_on(mosquitto.port, modules), tmp_path)
        async with (
            demo_gateway(mosquitto, tmp_path / "o.sqlite", modules, cfg) as campus,
            bench_session(campus.gateway) as (base, http),
        ):
            async with http.post(base + "api/login", json={"password": "调试-Pw-1"}) as ok:
                assert ok.status == 200
            async with state_stream(base, http) as stream:
                await stream.next()
                async with http.post(base + "api/logout") as out:
                    assert out.status == 200
                with pytest.raises(ConnectionError, match="the stream ended"):
                    async with asyncio.timeout(10):
                        while True:
                            await stream.next()
