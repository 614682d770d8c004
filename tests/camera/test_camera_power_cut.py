"""Evidence across a power cut: a picture asked for just before a SIGKILL still arrives.

The daemon runs as its own process (``campus-gateway run``) on a TOML file and is
SIGKILLed while it is taking a linked zone alarm's picture (the camera's snapshot
URI hangs, so the kill lands between the alarm and its picture), then started
again on the same files with the camera working. The request was stored with the
alarm, so the picture is taken after the restart, marked late; past
``snapshot.late_within_s`` it is reported as not taken, with the reason. A
simulated Modbus module and ONVIF camera on real ports, real mosquitto, the
center console and an MQTT picture receiver.
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

pytestmark = pytest.mark.timeout(150)


def kept_requests(outbox: Path) -> list[str]:
    """Snapshot ids of the evidence requests kept in an outbox file (read-only)."""
    with contextlib.closing(sqlite3.connect(f"file:{outbox}?mode=ro", uri=True)) as db:
        rows = db.execute("SELECT key FROM kept WHERE kind = 'camera.evidence'").fetchall()
    return [str(r[0]) for r in rows]


@pytest.mark.parametrize(
    ("late_within_s", "taken"), [(300, True), (0, False)], ids=["late", "too-old"]
)
async def test_sigkill_right_after_a_linked_alarm_its_picture_arrives_late_after_the_restart(
    mosquitto: MosquittoBroker, tmp_path: Path, late_within_s: int, taken: bool
) -> None:
    options = camera_options("gate-cam", snapshot_fault="hang")
    async with camera_campus(
        mosquitto, tmp_path, options, linked="Z01", rtsp_fallback=False,
        late_within_s=late_within_s,
    ) as c:  # fmt: skip
        await c.daemon.start()
        await c.center.wait_for(c.camera_online, 30)
        c.module.set_input(1, closed=True)  # Z01, the south fence, PERIM armed
        await c.center.wait_for(lambda: c.of("alarm.perimeter", "Z01") != [], 10)
        await eventually(lambda: c.camera.snapshot_requests >= 1)  # taking it now
        await c.daemon.kill()
        (pending,) = kept_requests(c.outbox)  # the request went down with the alarm
        c.module.set_input(1, closed=False)
        c.camera.options.snapshot_fault = None  # the camera answers again
        await c.daemon.start()
        await c.center.wait_for(lambda: c.of("camera.snapshot") != [], 40)
        (snapshot,) = c.of("camera.snapshot")
        if taken:
            await eventually(lambda: snapshot["id"] in c.pictures.pictures)
        await eventually(lambda: kept_requests(c.outbox) == [])  # done with its event
    (alarm,) = c.of("alarm.perimeter", "Z01")[:1]
    data = snapshot["data"]
    assert snapshot["id"] == pending
    assert (data["for_event"], data["late"]) == (alarm["id"], True)
    assert data["requested_at"] == alarm["time"]
    if taken:
        assert c.pictures.sha256(snapshot["id"]) == data["sha256"]
        assert data["method"] == "snapshot_uri" and "not_taken" not in data
    else:
        assert data["not_taken"] is True and "late_within_s = 0" in data["error"]
        assert "sha256" not in data and snapshot["id"] not in c.pictures.pictures
    for event in c.center.events:
        assert_valid_event(event)


async def test_a_camera_incident_open_at_a_sigkill_is_cleared_with_its_own_id_after_it(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    async with camera_campus(mosquitto, tmp_path, camera_options("gate-cam")) as c:
        await c.daemon.start()
        await c.center.wait_for(c.camera_online, 30)
        c.camera.trigger("tamper", True)  # the camera is covered
        await c.center.wait_for(lambda: c.of("camera.tamper") != [], 15)
        await c.daemon.kill()
        c.camera.trigger("tamper", False)  # uncovered while the gateway is off
        await c.daemon.start()
        await c.center.wait_for(lambda: len(c.of("camera.tamper")) == 2, 40)
    active, cleared = c.of("camera.tamper")
    assert (active["data"]["state"], cleared["data"]["state"]) == ("active", "cleared")
    assert cleared["data"]["incident"] == active["id"] and cleared["data"]["initial"] is True
    assert (cleared["priority"], cleared["siacode"]) == (2, "TR")
