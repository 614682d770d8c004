"""End to end: a guard walks a round → simulated station and phone app → the gateway
daemon → real mosquitto → the center console, which checks every event's schema."""

from __future__ import annotations

import asyncio
import datetime as dt
import sys
from pathlib import Path
from typing import Any

import pytest

from gateway.config.root import GatewayConfig, load_config
from gateway.daemon import running
from gateway.events.observation import utcnow
from simulators.broker import MosquittoBroker
from simulators.center import CenterConsole
from simulators.patrol_guard import PatrolDevices, Walk, walk_round
from simulators.patrol_readers import PhoneApp
from simulators.patrol_station import SimulatedStation
from tests.helpers import (
    SIGNED_COMMANDS,
    SIGNED_COMMANDS_TOML,
    assert_valid_event,
    free_port,
    signed_center,
)
from tests.patrol_support import GUARD_CARD, TAGS, TZ

pytestmark = pytest.mark.timeout(90)


def _config(broker: int, station: int, app: int, start: dt.datetime) -> GatewayConfig:
    cps = ["CP1", "CP2", "CP3"]
    patrol: dict[str, Any] = {
        "checkpoints": [{"id": cp, "tag": TAGS[cp], "name": f"巡更点{cp}"} for cp in cps],
        "routes": [
            {
                "id": "day",
                "name": "白天巡查",
                "schedule": {"start": f"{start:%H:%M}"},
                "stops": [{"checkpoint": cp, "window_min": 30} for cp in cps],
            }
        ],
        "guards": [{"id": "G1", "name": "王师傅", "card": GUARD_CARD}],
        "readers": [
            {
                "type": "station",
                "id": "cp1-station",
                "checkpoint": "CP1",
                "transport": {"type": "tcp", "host": "127.0.0.1", "port": station},
                "poll_interval_ms": 50,
                "timeout_ms": 200,
            },
            {"type": "network", "id": "app", "listen": {"host": "127.0.0.1", "port": app}},
        ],
    }
    return GatewayConfig.model_validate(
        {
            "commands": SIGNED_COMMANDS,
            "site": {"id": "e2e-school", "gateway": "gw1", "timezone": "Asia/Shanghai"},
            "broker": {"host": "127.0.0.1", "port": broker},
            "patrol": patrol,
            "metrics": {"port": 0},
            "bench": {"port": 0},
        }
    )


async def test_a_walked_round_reaches_the_center(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    start = (utcnow() - dt.timedelta(minutes=1)).astimezone(TZ).replace(second=0, microsecond=0)
    app_port = free_port()
    async with SimulatedStation(tz=TZ) as station:
        cfg = _config(mosquitto.port, station.port, app_port, start)
        async with (
            signed_center(host=mosquitto.host, port=mosquitto.port) as center,
            running(cfg, outbox_path=tmp_path / "outbox.sqlite") as gateway,
        ):
            assert gateway.patrol is not None
            await center.wait_for(lambda: _of(center, "device.online") != [], 30)
            app = PhoneApp("127.0.0.1", app_port)
            devices = PatrolDevices(stations={"CP1": station}, app=app)
            walk = Walk.of(cfg, "day", pace_s=0.2)
            await walk_round(walk, devices, utcnow(), now=utcnow)
            await app.hit("FFFFFFFFFF", utcnow(), guard="G1")  # a tag nobody configured
            await center.wait_for(lambda: _of(center, "patrol.round_completed") != [], 15)
            await center.wait_for(lambda: _of(center, "patrol.unknown_tag") != [], 5)
            await app.close()
        assert center.invalid == 0
        for event in center.events:
            assert_valid_event(event)
    checkpoints = _of(center, "patrol.checkpoint")
    assert [e["subject"] for e in checkpoints] == ["CP1", "CP2", "CP3"]
    assert [e["data"]["reader_kind"] for e in checkpoints] == ["station", "network", "network"]
    assert {e["data"]["verdict"] for e in checkpoints} == {"on_time"}
    assert checkpoints[0]["source"] == "campus/e2e-school/gw1/cp1-station"
    assert checkpoints[0]["data"]["guard_name"] == "王师傅"
    (done,) = _of(center, "patrol.round_completed")
    assert done["subject"] == "day" and done["priority"] == 4 and done["data"]["in_order"]
    (unknown,) = _of(center, "patrol.unknown_tag")
    assert unknown["subject"] == "FFFFFFFFFF" and unknown["priority"] == 3
    assert _of(center, "patrol.missed") == []


def _of(center: CenterConsole, type_: str) -> list[dict[str, Any]]:
    return [e for e in center.events if e["type"] == type_]


async def test_campus_sim_patrol_walks_a_round_through_a_handheld(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    start = (utcnow() - dt.timedelta(minutes=1)).astimezone(TZ).replace(second=0, microsecond=0)
    wand = free_port()
    config = tmp_path / "patrol.toml"
    config.write_text(
        SIGNED_COMMANDS_TOML
        + f"""
[site]
id = "cli-school"
gateway = "gw1"
[broker]
port = {mosquitto.port}
[metrics]
port = 0
[bench]
port = 0
[[patrol.checkpoints]]
id = "CP1"
tag = "{TAGS["CP1"]}"
name = "南门"
[[patrol.checkpoints]]
id = "CP2"
tag = "{TAGS["CP2"]}"
name = "北门"
[[patrol.routes]]
id = "r"
name = "巡查"
schedule = {{ start = "{start:%H:%M}" }}
stops = [{{ checkpoint = "CP1", window_min = 30 }}, {{ checkpoint = "CP2", window_min = 30 }}]
[[patrol.guards]]
id = "G1"
name = "王师傅"
card = "{GUARD_CARD}"
[[patrol.readers]]
type = "handheld"
id = "wand"
listen = {{ host = "127.0.0.1", port = {wand} }}
""",
        encoding="utf-8",
    )
    cfg = load_config(config)
    async with (
        signed_center(host=mosquitto.host, port=mosquitto.port) as center,
        running(cfg, outbox_path=tmp_path / "outbox.sqlite"),
    ):
        sim = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "simulators.cli", "patrol", "--config", str(config),
            "--pace", "0.2", "--upload-after", "0.2", "--linger", "0",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(sim.communicate(), 30)
        assert sim.returncode == 0, err.decode()
        await center.wait_for(lambda: _of(center, "patrol.round_completed") != [], 10)
    assert "ACK 3 0" in out.decode()  # the guard's card and two checkpoints
    checkpoints = _of(center, "patrol.checkpoint")
    assert [(e["subject"], e["data"]["guard"]) for e in checkpoints] == [
        ("CP1", "G1"),
        ("CP2", "G1"),
    ]
