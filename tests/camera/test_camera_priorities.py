"""Priorities follow the campus, and the center can ask a camera for a picture.

The daemon as its own process on a TOML file, a simulated module and camera, real
mosquitto, the center console (which acks) and a signed command sender.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest

from simulators.broker import MosquittoBroker
from tests.camera_support import camera_options
from tests.helpers import assert_valid_event, eventually
from tests.power_cut_support import camera_campus

pytestmark = pytest.mark.timeout(120)


def ack_state(outbox: Path, event_id: str) -> tuple[bool, bool] | None:
    """``(held until acked, acked)`` of ``event_id`` in the outbox (read-only)."""
    with contextlib.closing(sqlite3.connect(f"file:{outbox}?mode=rw", uri=True, timeout=5)) as db:
        query = "SELECT track_ack, acked_at FROM messages WHERE id = ?"
        row = db.execute(query, (event_id,)).fetchone()
    return None if row is None else (bool(row[0]), row[1] is not None)


async def test_camera_analytics_follow_their_areas_arming_and_tamper_is_always_an_alarm(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    async with camera_campus(mosquitto, tmp_path, camera_options("wall-cam"), area="PERIM") as c:
        await c.daemon.start()
        await c.center.wait_for(c.camera_online, 30)
        c.camera.trigger("line")
        await c.center.wait_for(lambda: len(c.of("camera.line_crossing")) == 1, 10)
        armed = c.of("camera.line_crossing")[0]
        await eventually(lambda: ack_state(c.outbox, armed["id"]) == (True, True))
        result = await c.sender.send("disarm", {"area": "PERIM"})
        assert result["status"] == "ok", result
        c.camera.trigger("line")
        c.camera.trigger("tamper")
        await c.center.wait_for(lambda: len(c.of("camera.line_crossing")) == 2, 10)
        await c.center.wait_for(lambda: len(c.of("camera.tamper")) == 1, 10)
        disarmed, tamper = c.of("camera.line_crossing")[1], c.of("camera.tamper")[0]
        await c.center.wait_for(lambda: len(c.of("command.result")) == 1, 10)
        await eventually(lambda: ack_state(c.outbox, tamper["id"]) == (True, True))
        routine = ack_state(c.outbox, disarmed["id"])
        assert routine is not None and routine[0] is False  # not held until the center acks
    assert (armed["priority"], armed["cidcode"], armed["siacode"]) == (2, "131", "BA")
    assert (armed["data"]["area"], armed["data"]["armed"]) == ("PERIM", True)
    assert disarmed["priority"] == 4 and "cidcode" not in disarmed
    assert (disarmed["data"]["area"], disarmed["data"]["armed"]) == ("PERIM", False)
    assert (tamper["priority"], tamper["cidcode"]) == (2, "144")
    (audit,) = c.of("command.result")
    assert audit["priority"] == 3 and audit["data"]["command"] == "disarm"
    for event in c.center.events:
        assert_valid_event(event)


async def test_the_snapshot_command_answers_with_the_event_id_and_the_picture_follows(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    async with camera_campus(mosquitto, tmp_path, camera_options("wall-cam")) as c:
        await c.daemon.start()
        await c.center.wait_for(c.camera_online, 30)
        result = await c.sender.send("snapshot", {"camera": "wall-cam"}, operator="值班员 李")
        assert result["status"] == "ok", result
        event_id = result["data"]["event_id"]
        await eventually(lambda: event_id in c.pictures.pictures)
        await c.center.wait_for(lambda: any(e["id"] == event_id for e in c.center.events), 10)
        refused = await c.sender.send("snapshot", {"camera": "roof-cam"})
    assert result["data"] == {
        "camera": "wall-cam",
        "event_id": event_id,
        "topic": f"snapshots/{event_id}",
    }
    (snapshot,) = [e for e in c.center.events if e["id"] == event_id]
    assert snapshot["type"] == "camera.snapshot" and snapshot["data"]["operator"] == "值班员 李"
    assert snapshot["data"]["command"] == result["correlation_id"]
    assert c.pictures.sha256(event_id) == snapshot["data"]["sha256"]
    assert (refused["status"], refused["data"]["reason"]) == ("error", "invalid")
    for event in c.center.events:
        assert_valid_event(event)
