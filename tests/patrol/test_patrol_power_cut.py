"""Patrol rounds across a power cut: the daemon as its own process, SIGKILLed and
restarted on the same files, a phone app and a handheld on real sockets, real
mosquitto, the center console checking every event.

Rounds are scheduled around the test's own clock: a route starting at the
current minute (site time) whose stops are due seconds from now.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from gateway.events.observation import utcnow
from simulators.broker import MosquittoBroker
from simulators.center import CenterConsole
from simulators.patrol_readers import Handheld, PhoneApp, ReaderLinkError
from tests.fault_support import stored_types, wait_until
from tests.helpers import assert_valid_event, free_port, signed_center
from tests.patrol_support import GUARD_CARD, TAGS, TZ
from tests.power_cut_support import Daemon, retry, site_toml, write_toml

pytestmark = pytest.mark.timeout(180)


class Tour:
    """A patrol config whose stops fall due ``seconds`` after it is written.

    Routes start at the current minute (site time); a stop's window is stretched
    to end ``seconds`` from now (tolerance 0, so its deadline is then too).
    """

    def __init__(self, tmp_path: Path, broker_port: int) -> None:
        self.now = utcnow()
        self.start = self.now.astimezone(TZ).replace(second=0, microsecond=0)
        self.app_port, self.wand_port = free_port(), free_port()
        self.routes: list[str] = []
        self._head = site_toml(tmp_path, broker_port)
        self._tmp = tmp_path

    def due(self, seconds: float) -> dt.datetime:
        """The deadline of a stop given ``seconds`` (UTC)."""
        return self.now + dt.timedelta(seconds=seconds)

    def route(self, route_id: str, stops: dict[str, float]) -> None:
        """A route visiting ``stops`` (checkpoint → seconds until its deadline), in order."""
        elapsed = (self.now - self.start).total_seconds()
        lines = ", ".join(
            f'{{ checkpoint = "{cp}", offset_min = 0, window_min = {(elapsed + s) / 60:.5f}, '
            "tolerance_min = 0 }"
            for cp, s in stops.items()
        )
        self.routes.append(
            f'[[patrol.routes]]\nid = "{route_id}"\nname = "路线{route_id}"\n'
            f'schedule = {{ start = "{self.start:%H:%M}" }}\nstops = [{lines}]\n'
        )

    def write(self) -> Path:
        checkpoints = "".join(
            f'[[patrol.checkpoints]]\nid = "{cp}"\ntag = "{tag}"\nname = "巡更点{cp}"\n'
            for cp, tag in TAGS.items()
        )
        readers = f"""
[[patrol.guards]]
id = "G1"
name = "王师傅"
card = "{GUARD_CARD}"

[[patrol.readers]]
type = "network"
id = "app"
listen = {{ host = "127.0.0.1", port = {self.app_port} }}

[[patrol.readers]]
type = "handheld"
id = "wand"
guard = "G1"
listen = {{ host = "127.0.0.1", port = {self.wand_port} }}
"""
        return write_toml(self._tmp, self._head + checkpoints + "".join(self.routes) + readers)


async def scan(app: PhoneApp, daemon: Daemon, checkpoint: str) -> None:
    """The guard scans ``checkpoint`` with the phone app; returns once the gateway acked."""
    answer = await retry(
        lambda: app.hit(TAGS[checkpoint], utcnow(), guard="G1"), (ReaderLinkError,), 30, daemon
    )
    assert "ack" in answer, answer


def of(center: CenterConsole, type_: str, **data: Any) -> list[dict[str, Any]]:
    return [
        e
        for e in center.events
        if e["type"] == type_ and all(e["data"].get(k) == v for k, v in data.items())
    ]


async def test_a_round_survives_a_sigkill_between_its_scans_with_no_false_miss(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    tour = Tour(tmp_path, mosquitto.port)
    tour.route("walk", {"CP1": 30, "CP2": 32, "CP3": 120})
    tour.route("sentinel", {"CP4": 36})  # never walked: its miss proves time went past CP1, CP2
    config = tour.write()
    app = PhoneApp("127.0.0.1", tour.app_port)
    async with (
        signed_center(mosquitto.host, mosquitto.port) as center,
        Daemon(config, tmp_path) as daemon,
    ):
        await daemon.start()
        await scan(app, daemon, "CP1")
        await scan(app, daemon, "CP2")
        await daemon.kill()
        await app.close()
        await daemon.start()
        await scan(app, daemon, "CP3")
        await center.wait_for(lambda: of(center, "patrol.round_completed") != [], 20)
        await center.wait_for(lambda: of(center, "patrol.missed", checkpoint="CP4") != [], 60)
    assert utcnow() > tour.due(32)
    assert [e["subject"] for e in of(center, "patrol.missed")] == ["CP4"]
    assert [e["subject"] for e in of(center, "patrol.round_started")] == ["walk"]
    (done,) = of(center, "patrol.round_completed")
    assert done["data"]["sequence"] == ["CP1", "CP2", "CP3"]
    assert sorted(e["subject"] for e in of(center, "patrol.checkpoint")) == ["CP1", "CP2", "CP3"]
    assert {e["data"]["verdict"] for e in of(center, "patrol.checkpoint")} == {"on_time"}
    _all_valid(center)


async def test_deadlines_passed_while_the_daemon_was_down_are_reported_judged_late(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    tour = Tour(tmp_path, mosquitto.port)
    tour.route("walk", {"CP1": 25, "CP2": 28, "CP3": 31, "CP4": 300})
    config = tour.write()
    app = PhoneApp("127.0.0.1", tour.app_port)
    async with (
        signed_center(mosquitto.host, mosquitto.port) as center,
        Daemon(config, tmp_path) as daemon,
    ):
        await daemon.start()
        await scan(app, daemon, "CP1")
        await daemon.kill()
        await app.close()
        await wait_until(lambda: utcnow() > tour.due(31), 60, "CP2 and CP3 due while down")
        await daemon.start()
        await center.wait_for(lambda: len(of(center, "patrol.missed")) >= 2, 30)
        await scan(app, daemon, "CP4")  # the rest of the round goes on
        await center.wait_for(lambda: of(center, "patrol.checkpoint", checkpoint="CP4") != [], 10)
    missed = of(center, "patrol.missed")
    assert [(e["subject"], e["data"]["judged_late"]) for e in missed] == [
        ("CP2", True),
        ("CP3", True),
    ]
    for event, seconds in zip(missed, (28, 31), strict=True):
        deadline = dt.datetime.fromisoformat(event["data"]["deadline"])
        assert abs((deadline - tour.due(seconds)).total_seconds()) < 0.01
        assert dt.datetime.fromisoformat(event["time"]) > deadline  # judged after the restart
        assert event["priority"] == 3 and event["data"]["state"] == "active"
    assert [e["subject"] for e in of(center, "patrol.checkpoint")] == ["CP1", "CP4"]
    assert len(of(center, "patrol.round_started")) == 1
    _all_valid(center)


async def test_a_handheld_batch_uploaded_again_after_a_sigkill_gives_its_checkpoints_once(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    tour = Tour(tmp_path, mosquitto.port)
    tour.route("walk", {"CP1": 600, "CP2": 600, "CP3": 600})
    config = tour.write()
    outbox = tmp_path / "outbox.sqlite"
    wand = Handheld(number=7, tz=TZ)
    for n, checkpoint in enumerate(["CP1", "CP2", "CP3"]):
        wand.scan(TAGS[checkpoint], utcnow() - dt.timedelta(seconds=30 - n))
    batch = wand.lines()

    async def upload() -> str:
        return await Handheld(number=7, tz=TZ).upload(
            "127.0.0.1", tour.wand_port, extra_lines=batch, timeout_s=10
        )

    async with (
        signed_center(mosquitto.host, mosquitto.port) as center,
        Daemon(config, tmp_path) as daemon,
    ):
        await daemon.start()
        assert await retry(upload, (ReaderLinkError,), 30, daemon) == "ACK 3 0"
        await daemon.kill()
        await daemon.start()
        assert await retry(upload, (ReaderLinkError,), 30, daemon) == "ACK 3 0"
        # ACK means every record was judged and what it made is stored
        assert stored_types(outbox, "patrol.checkpoint") == ["patrol.checkpoint"] * 3
        await center.wait_for(lambda: of(center, "patrol.round_completed") != [], 20)
    assert sorted(e["subject"] for e in of(center, "patrol.checkpoint")) == ["CP1", "CP2", "CP3"]
    assert stored_types(outbox, "patrol.round") == [
        "patrol.round_started",
        "patrol.round_completed",
    ]
    _all_valid(center)


def _all_valid(center: CenterConsole) -> None:
    assert center.invalid == 0
    for event in center.events:
        assert_valid_event(event)
