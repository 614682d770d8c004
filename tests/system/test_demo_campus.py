"""The demo campus's cameras and guard tour (``config/demo.toml``) as ``campus-sim campus``
starts them: its helpers serve the demo's cameras and connect the phone-app bridge on
real sockets; the scenario's steps drive them through the daemon, a real mosquitto and
the center console."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config.root import load_config
from gateway.daemon import running
from simulators.broker import MosquittoBroker
from simulators.camera.fleet import simulated_cameras
from simulators.campus import DEFAULT_SCENARIO
from simulators.dc09_panel import simulated_panels
from simulators.scenario import (
    CameraStep,
    ModuleStep,
    PanelStep,
    PatrolStep,
    Scenario,
    campus_devices,
    load_scenario,
    play,
)
from tests.camera_support import eventually, picture_receiver
from tests.campus_helpers import DEMO_CONFIG, demo_config_on, simulated_campus
from tests.helpers import assert_valid_event, free_port, signed_center

pytestmark = pytest.mark.timeout(90)

UNKNOWN_TAG = "04000000FF"


def test_demo_scenario_names_devices_of_the_demo_config() -> None:
    cfg = load_config(DEMO_CONFIG)
    steps = load_scenario(DEFAULT_SCENARIO).steps
    checkpoints = {c.id for c in cfg.patrol.checkpoints}
    for step in steps:
        if isinstance(step, ModuleStep):
            assert step.module in {m.id for m in cfg.modules}, step
        elif isinstance(step, CameraStep):
            assert step.camera in {c.id for c in cfg.cameras}, step
        elif isinstance(step, PanelStep):
            panel = next(p for p in cfg.panels if p.id == step.panel)
            assert step.zone in {z.number for z in panel.zones}, step
        else:
            assert step.checkpoint in checkpoints or step.tag is not None, step
    kinds = {type(s) for s in steps}
    assert kinds == {ModuleStep, CameraStep, PatrolStep, PanelStep}
    beam = next(z for z in cfg.zones if z.id == "Z03")
    assert any(
        isinstance(s, ModuleStep) and (s.module, s.channel) == (beam.module, beam.input)
        for s in steps
    )
    assert {link.zone for link in cfg.linkage} == {"Z03"}


async def test_demo_cameras_and_guard_tour_reach_the_center(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    demo = load_config(DEMO_CONFIG)
    async with (
        simulated_campus() as modules,
        simulated_cameras(demo, ports={c.id: 0 for c in demo.cameras}) as cameras,
    ):
        assert set(cameras) == {"gate-cam", "south-wall-cam"}
        cfg = demo_config_on(mosquitto.port, modules, cameras=cameras, patrol_port=free_port())
        devices = campus_devices(cfg, modules, cameras)
        assert devices.app is not None and devices.guard == "G1"
        async with (
            signed_center(host=mosquitto.host, port=mosquitto.port) as center,
            picture_receiver(mosquitto.host, mosquitto.port, "demo-pictures") as pictures,
            running(cfg, outbox_path=tmp_path / "outbox.sqlite"),
        ):

            def of(type_: str) -> list[dict]:
                return [e for e in center.events if e["type"] == type_]

            online = {*modules, *cameras}
            await center.wait_for(lambda: online <= {e["subject"] for e in of("device.online")}, 15)
            steps = [
                ModuleStep(at=0, action="open", module="gate-io", channel=1),  # Z03's beam
                CameraStep(at=0.5, action="camera", camera="gate-cam", trigger="motion"),
                PatrolStep(at=1.0, action="patrol", checkpoint="CP1"),
                PatrolStep(at=1.5, action="patrol", tag=UNKNOWN_TAG),
            ]
            said: list[str] = []
            await play(Scenario(steps=steps), devices, said.append)
            await devices.app.close()
            await center.wait_for(
                lambda: len(of("camera.snapshot")) == 3 and bool(of("patrol.unknown_tag")), 20
            )
            await eventually(lambda: len(pictures.pictures) == 3)
    assert not any("skipped" in line or "not delivered" in line for line in said), said
    beam = next(e for e in of("alarm.perimeter") if e["subject"] == "Z03")
    motion = next(e for e in of("camera.motion") if e["data"]["state"] == "active")
    snapshots = of("camera.snapshot")
    by_trigger = sorted((e["data"]["for_event"], e["data"]["camera"]) for e in snapshots)
    assert by_trigger == sorted(
        [(beam["id"], "gate-cam"), (beam["id"], "south-wall-cam"), (motion["id"], "gate-cam")]
    )
    for event in snapshots:
        assert pictures.sha256(event["id"]) == event["data"]["sha256"]
    checkpoint = next(e for e in of("patrol.checkpoint") if e["subject"] == "CP1")
    assert checkpoint["data"]["guard"] == "G1"
    assert [e["subject"] for e in of("patrol.unknown_tag")] == [UNKNOWN_TAG]
    assert cameras["gate-cam"].snapshots == 2 and cameras["south-wall-cam"].snapshots == 1
    assert center.invalid == 0 and not center.gaps
    for event in center.events:
        assert_valid_event(event)


async def test_the_demo_panel_reports_over_dc09_to_the_center(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    async with simulated_campus() as modules:
        cfg = demo_config_on(mosquitto.port, modules, panel_port=free_port())
        async with (
            signed_center(host=mosquitto.host, port=mosquitto.port) as center,
            running(cfg, outbox_path=tmp_path / "outbox.sqlite") as gateway,
            simulated_panels(cfg, every_s=0.5) as panels,
        ):
            assert gateway.panels is not None and set(panels) == {"east-panel"}

            def of(type_: str) -> list[dict]:
                return [e for e in center.events if e["type"] == type_]

            await center.wait_for(
                lambda: "east-panel" in {e["subject"] for e in of("device.online")}, 15
            )
            steps = load_scenario(DEFAULT_SCENARIO).steps
            panel_steps = [s for s in steps if isinstance(s, PanelStep)]
            said: list[str] = []
            devices = campus_devices(cfg, modules, {}, panels)
            await play(Scenario(steps=[s.model_copy(update={"at": 0}) for s in panel_steps]),
                       devices, said.append)  # fmt: skip
            await center.wait_for(lambda: len(of("alarm.intrusion")) == 2, 10)
    assert not any("not delivered" in line for line in said), said
    active, cleared = of("alarm.intrusion")
    assert (active["subject"], active["data"]["name"]) == ("E03", "东门红外")
    assert active["source"].endswith("/east-panel") and active["data"]["encrypted"] is True
    assert cleared["data"]["state"] == "cleared" and cleared["data"]["incident"] == active["id"]
    assert of("fault.panel_rejected") == [] and center.invalid == 0
