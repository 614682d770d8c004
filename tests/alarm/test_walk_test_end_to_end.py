"""A walk test of the demo campus's area TEACH over a real mosquitto, started by the center's
signed command: what the center receives, and what it does not."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from gateway.config.root import MetricsConfig
from gateway.ops.client import fetch_status, format_status
from simulators.broker import MosquittoBroker
from tests.campus_helpers import Campus, demo_gateway, simulated_campus

pytestmark = pytest.mark.timeout(90)

TEACH = ["Z02", "Z06", "Z07", "Z10", "Z11", "Z13", "Z14"]  # Z02 is its panic button


def _t(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def test_a_walk_test_of_one_area_reports_trips_as_tests_and_ends_at_its_time(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    async with (
        simulated_campus() as modules,
        demo_gateway(mosquitto, tmp_path / "o.sqlite", modules) as campus,
    ):
        admin, store, gate = modules["admin-io"], modules["store-4150"], modules["gate-io"]
        result = await campus.ok("walk_test", {"area": "TEACH", "duration_s": 6})
        assert result["data"]["kept_live"] == ["Z02"]
        assert result["data"]["zones"] == [z for z in TEACH if z != "Z02"]
        started = await campus.wait("maintenance.started", "TEACH", "active")
        running_status = await _status(campus)
        admin.set_input(2, closed=False)  # Z06, the finance-room detector
        store.set_input(0, closed=False)  # Z13, the storeroom door (siren S3 is linked)
        await campus.center.wait_for(
            lambda: {e["subject"] for e in campus.of("zone.walk_test")} == {"Z06", "Z13"}, 3
        )
        admin.set_input(2, closed=True)
        store.set_input(0, closed=True)
        gate.press(0)  # Z01, the gatehouse panic: not in the test
        await campus.wait("alarm.panic", "Z01", "active", within=2.0)
        admin.press(0)  # Z02, TEACH's own panic button: kept live
        await campus.wait("alarm.panic", "Z02", "active", within=2.0)
        ended = await campus.wait("maintenance.ended", "TEACH", "cleared", within=10)
        state = (await campus.ok("get_state"))["data"]
        ended_status = await _status(campus)
    alarms = [
        (e["type"], e["subject"]) for e in campus.center.events if e["type"].startswith("alarm.")
    ]
    assert sorted(alarms) == [("alarm.panic", "Z01"), ("alarm.panic", "Z02")]
    for trip in campus.of("zone.walk_test"):
        assert (trip["priority"], trip["data"]["test"]) == (5, True)
        assert trip["data"]["incident"] == started["id"]
    assert (started["priority"], started["data"]["by"]) == (3, "duty-officer")
    report = ended["data"]
    assert report["reason"] == "time_up" and report["incident"] == started["id"]
    assert report["untripped"] == ["Z07", "Z10", "Z11", "Z14"]
    assert set(report["tripped"]) == {"Z06", "Z13"}
    took = (_t(report["ended"]) - _t(report["started"])).total_seconds()
    assert 5.9 <= took <= 6.1 and _t(ended["time"]) >= _t(report["until"])
    assert state["walk_test"]["active"] is None
    assert state["walk_test"]["last_report"]["untripped"] == report["untripped"]
    assert modules["store-relay"].output(0) is False  # S3 never sounded for a test trip
    assert not campus.of("output.switched", "S3")

    # What `campus-gateway status` prints: the running test, then the stored report.
    shown = format_status(running_status)
    assert "walk test  RUNNING area TEACH (6 zones) by duty-officer" in shown
    assert "  not yet tripped 6" in shown and "kept live (panic): Z02" in shown
    shown = format_status(ended_status)
    assert "walk test  none running" in shown
    assert "last walk test  area TEACH (6 zones) by duty-officer" in shown
    assert "ended: time_up" in shown
    tripped = shown.split("  tripped 2 of 6\n")[1].split("\n  never tripped 4\n")
    assert [line.split()[0] for line in tripped[0].splitlines()] == ["Z06", "Z13"]
    assert all(" first " in line and " last " in line for line in tripped[0].splitlines())
    never = [line.split()[0] for line in tripped[1].splitlines()[:4]]
    assert never == report["untripped"]
    assert ended_status["walk_test"]["last_report"]["untripped"] == report["untripped"]
    assert ended_status["walk_test"]["names"]["Z06"] == "财务室红外探测器"
    # In the school's time, said so once (the box itself may well run on UTC).
    assert "(times in Asia/Shanghai, UTC+08:00)" in shown.splitlines()[0]
    site_time = _t(report["tripped"]["Z06"]["first"]).astimezone(ZoneInfo("Asia/Shanghai"))
    assert f"Z06        first {site_time:%Y-%m-%d %H:%M:%S}" in shown


async def _status(campus: Campus) -> dict[str, Any]:
    """The daemon's ``/status`` over HTTP, as ``campus-gateway status`` fetches it."""
    ops = campus.gateway.ops
    assert ops is not None
    await asyncio.wait_for(ops.listening.wait(), 10)
    assert ops.address is not None
    cfg = MetricsConfig(port=ops.address[1])
    return await asyncio.to_thread(fetch_status, cfg)
