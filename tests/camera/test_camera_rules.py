"""Camera rules: one incident per physical event, Initialized as state, pulses, evidence hooks."""

from __future__ import annotations

from typing import Any

from gateway.camera.evidence import EvidenceRequest
from gateway.camera.memory import INCIDENT, open_incidents
from gateway.camera.rules import CameraRules
from gateway.config.camera import CameraConfig
from gateway.events.model import Event, EventFactory
from gateway.events.observation import (
    CameraCapabilities,
    CameraObservation,
    CameraSignal,
    DeviceHealth,
)
from tests.camera_support import Recorder
from tests.helpers import assert_valid_event

CAM = CameraConfig(id="gate-cam", name="南门摄像机", host="127.0.0.1",
                   snapshot={"on_events": ["camera.tamper", "camera.field_intrusion"]})  # fmt: skip
CELL = "tns1:RuleEngine/CellMotionDetector/Motion#R1"
ALARM = "tns1:VideoSource/MotionAlarm"


def sig(kind: str, detector: str, state: str, *, initial: bool = False) -> CameraSignal:
    return CameraSignal("gate-cam", kind, "VS1", detector, state, initial, detector)  # type: ignore[arg-type]


class Asked:
    """Evidence requests planned and queued (the collector's :class:`Pictures` side)."""

    def __init__(self) -> None:
        self.planned: list[EvidenceRequest] = []
        self.ids: list[str] = []  # the alarms whose requests were queued

    def plan(self, camera_id: str, alarm: Event) -> EvidenceRequest:
        request = EvidenceRequest.for_alarm(camera_id, alarm)
        self.planned.append(request)
        return request

    def submit(self, request: EvidenceRequest) -> EvidenceRequest:
        assert request.for_event is not None
        self.ids.append(request.for_event)
        return request


async def run(
    *observations: CameraObservation, states: list[tuple[str, dict[str, Any]]] | None = None
) -> tuple[Recorder, list[str]]:
    """Feed ``observations`` in order, then let every merge window pass."""
    emitted, asked = Recorder(), Asked()
    now = [0.0]

    def publish(camera_id: str, state: dict[str, Any]) -> None:
        if states is not None:
            states.append((camera_id, state))

    rules = CameraRules(
        [CAM],
        EventFactory("campus/s/g", lambda: True),
        emitted,
        asked,
        publish_state=publish,
        monotonic=lambda: now[0],
    )
    for obs in observations:
        await rules.observe(obs)
    now[0] += CAM.merge_window_s
    await rules.close_due()
    return emitted, asked.ids


def states(events: list[Event]) -> list[tuple[str, str, bool]]:
    return [(e.type, e.state or "", bool(e.data.get("initial"))) for e in events]


async def test_two_detectors_of_one_movement_make_one_incident_cleared_by_the_last() -> None:
    emitted, _ = await run(
        sig("camera.motion", CELL, "active"),
        sig("camera.motion", ALARM, "active"),  # capture cellmotion_03: both in one pull
        sig("camera.motion", CELL, "cleared"),
        sig("camera.motion", ALARM, "cleared"),
    )
    active, cleared = emitted.events()
    assert states(emitted.events()) == [
        ("camera.motion", "active", False), ("camera.motion", "cleared", False)
    ]  # fmt: skip
    assert cleared.data["incident"] == active.id and active.subject == "gate-cam/VS1"
    for event in emitted.events():
        assert_valid_event(event.stored(1, "s").to_dict())


async def test_initialized_is_state_not_alarm() -> None:
    emitted, _ = await run(
        sig("camera.motion", CELL, "cleared", initial=True),  # quiet camera: nothing
        sig("camera.tamper", "tamper", "active", initial=True),  # found covered: one alarm
        sig("camera.tamper", "tamper", "active", initial=True),  # again after resubscribe
        sig("camera.line_crossing", "line", "instant", initial=True),  # a pulse's state: nothing
        sig("camera.line_crossing", "line", "instant"),  # a crossing: one event
        sig("camera.tamper", "tamper", "cleared", initial=True),  # rebooted, restored
    )
    assert states(emitted.events()) == [
        ("camera.tamper", "active", True),
        ("camera.line_crossing", "instant", False),
        ("camera.tamper", "cleared", True),
    ]
    tamper = emitted.events("camera.tamper")[0]
    assert (tamper.priority, tamper.cidcode, tamper.siacode) == (2, "144", "TA")
    assert emitted.events("camera.tamper")[1].siacode == "TR"


async def test_evidence_is_asked_for_new_alarms_of_the_configured_kinds_only() -> None:
    emitted, asked = await run(
        sig("camera.motion", CELL, "active"),  # not in on_events
        sig("camera.tamper", "t", "active"),
        sig("camera.tamper", "t2", "active"),  # joins the open incident: no new picture
        sig("camera.field_intrusion", "f", "active"),
    )
    assert asked == [e.id for e in emitted.events() if e.type != "camera.motion"]


async def test_a_line_crossing_takes_a_picture_too_but_not_its_initial_state() -> None:
    cam = CameraConfig(
        id="gate-cam", name="南门摄像机", host="127.0.0.1",
        snapshot={"on_events": ["camera.line_crossing"]},
    )  # fmt: skip
    emitted, asked = Recorder(), Asked()
    rules = CameraRules([cam], EventFactory("campus/s/g", lambda: True), emitted, asked)
    await rules.observe(sig("camera.line_crossing", "line", "instant", initial=True))
    await rules.observe(sig("camera.line_crossing", "line", "instant"))
    (crossing,) = emitted.events("camera.line_crossing")
    assert asked.ids == [crossing.id]


async def test_health_and_clock_skew() -> None:
    skew = CameraSignal(
        "gate-cam", "camera.status", "clock", "clock", "instant", False, "",
        fields=(("clock_skew_s", "-120.0"),),
    )  # fmt: skip
    emitted, _ = await run(
        DeviceHealth("gate-cam", "offline", "starting", "refused", 3),
        skew,
        DeviceHealth("gate-cam", "online", "offline"),
    )
    offline, status, online = emitted.events()
    assert (offline.type, status.type, online.type) == (
        "fault.device_offline", "camera.status", "device.online"
    )  # fmt: skip
    assert online.data["incident"] == offline.id and online.data["clock_skew_s"] == -120.0
    assert offline.data["name"] == "南门摄像机"


async def test_capabilities_are_said_once_and_ride_on_online_and_the_retained_state() -> None:
    states: list[tuple[str, dict[str, Any]]] = []
    found = CameraCapabilities("gate-cam", ("snapshot", "stream"), ("events", "ptz"))
    emitted, _ = await run(found, DeviceHealth("gate-cam", "online", "starting"), states=states)
    status, online = emitted.events()
    assert (status.type, status.priority, status.state) == ("camera.status", 5, "instant")
    assert status.data["missing"] == ["events", "ptz"]
    assert status.data["capabilities"] == ["snapshot", "stream"]
    assert online.type == "device.online" and online.data["capabilities"] == ["snapshot", "stream"]
    assert [(c, s["health"], s["missing"]) for c, s in states] == [
        ("gate-cam", "starting", ["events", "ptz"]),
        ("gate-cam", "online", ["events", "ptz"]),
    ]
    for event in emitted.events():
        assert_valid_event(event.stored(1, "s").to_dict())


async def test_analytics_of_a_camera_bound_to_an_area_follow_its_arming() -> None:
    wall = CameraConfig(
        id="wall-cam", name="围墙摄像机", host="127.0.0.1", area="PERIM", merge_window_s=0
    )  # cleared at once: this test is about arming, not flicker
    arming = {"PERIM": True}
    emitted = Recorder()
    rules = CameraRules(
        [wall], EventFactory("campus/s/g", lambda: True), emitted, armed=arming.__getitem__
    )

    def on_wall(kind: str, detector: str, state: str) -> CameraSignal:
        return CameraSignal("wall-cam", kind, "VS1", detector, state, False, detector)  # type: ignore[arg-type]

    await rules.observe(on_wall("camera.line_crossing", "line", "instant"))
    await rules.observe(on_wall("camera.field_intrusion", "field", "active"))
    arming["PERIM"] = False  # disarmed while the intrusion is still on
    await rules.observe(on_wall("camera.field_intrusion", "field", "cleared"))
    await rules.observe(on_wall("camera.line_crossing", "line", "instant"))
    await rules.observe(on_wall("camera.motion", "motion", "active"))
    await rules.observe(on_wall("camera.tamper", "tamper", "active"))
    seen = [(e.type, e.state, e.priority, e.cidcode, e.siacode) for e in emitted.events()]
    assert seen == [
        ("camera.line_crossing", "instant", 2, "131", "BA"),
        ("camera.field_intrusion", "active", 2, "132", "BA"),
        ("camera.field_intrusion", "cleared", 2, "132", "BH"),  # the incident keeps its class
        ("camera.line_crossing", "instant", 4, None, None),
        ("camera.motion", "active", 4, None, None),
        ("camera.tamper", "active", 2, "144", "TA"),
    ]
    assert [e.data["armed"] for e in emitted.events()] == [True, True, True, False, False, False]
    for event in emitted.events():
        assert_valid_event(event.stored(1, "s").to_dict())


async def test_analytics_of_a_camera_without_an_area_are_routine() -> None:
    emitted, _ = await run(sig("camera.line_crossing", "line", "instant"))
    (crossing,) = emitted.events()
    assert crossing.priority == 4 and "area" not in crossing.data


async def test_a_request_and_an_incident_are_kept_with_their_alarm() -> None:
    emitted, asked = Recorder(), Asked()
    rules = CameraRules([CAM], EventFactory("campus/s/g", lambda: True), emitted, asked)
    await rules.observe(sig("camera.tamper", "t", "active"))
    (tamper,) = emitted.events()
    (request,) = asked.planned
    key = '["gate-cam", "camera.tamper", "VS1"]'
    assert emitted.kept == [
        ("camera.incident", key, {"id": tamper.id, "detectors": ["t"], "armed": False}),
        ("camera.evidence", request.snapshot_id, request.kept().data),
    ]
    assert request.kept().data["for_event"] == tamper.id and asked.ids == [tamper.id]


async def test_an_incident_open_before_a_restart_is_cleared_with_its_id_after_it() -> None:
    before = Recorder()
    factory = EventFactory("campus/s/g", lambda: True)
    rules = CameraRules([CAM], factory, before, keep=before.keep)
    await rules.observe(sig("camera.tamper", "t", "active"))
    await rules.observe(sig("camera.tamper", "t2", "active"))  # joins: kept too
    kept = {key: INCIDENT.decode(data) for kind, key, data in before.kept if data is not None}
    assert kept['["gate-cam", "camera.tamper", "VS1"]'].detectors == {"t", "t2"}
    assert kept and all(kind == "camera.incident" for kind, _, _ in before.kept)
    # the restart: new rules from what was kept, the camera says it is quiet now
    after, now = Recorder(), [0.0]
    rules = CameraRules(
        [CAM], factory, after, keep=after.keep, incidents=open_incidents(kept),
        monotonic=lambda: now[0],
    )  # fmt: skip
    await rules.observe(sig("camera.tamper", "t", "cleared", initial=True))
    assert after.events() == []  # t2 still holds it open
    await rules.observe(sig("camera.tamper", "t2", "cleared", initial=True))
    assert after.events() == []  # closing: the merge window has not passed
    now[0] += CAM.merge_window_s
    await rules.close_due()
    (cleared,) = after.events()
    (opened,) = before.events()
    assert (cleared.state, cleared.data["incident"]) == ("cleared", opened.id)
    assert after.kept[-1] == ("camera.incident", '["gate-cam", "camera.tamper", "VS1"]', None)


def _flicker_rules(**camera: Any) -> tuple[CameraRules, Recorder, Asked, list[float]]:
    cam = CameraConfig(id="gate-cam", name="南门摄像机", host="127.0.0.1", **camera)
    emitted, asked, now = Recorder(), Asked(), [100.0]
    factory = EventFactory("campus/s/g", lambda: True)
    rules = CameraRules([cam], factory, emitted, asked, keep=emitted.keep, monotonic=lambda: now[0])
    return rules, emitted, asked, now


async def test_motion_on_off_on_within_the_window_is_one_incident_with_one_picture() -> None:
    """Issue 11: on → off → on within 2 s gave a final cleared, a new unlinked
    incident 0.1-0.5 s later, and a picture per flicker."""
    rules, emitted, asked, now = _flicker_rules()
    await rules.observe(sig("camera.motion", CELL, "active"))
    now[0] += 0.8
    await rules.observe(sig("camera.motion", CELL, "cleared"))
    now[0] += 1.0
    await rules.close_due()  # 1 s into the 3 s window: no cleared yet
    assert [e.state for e in emitted.events()] == ["active"]
    await rules.observe(sig("camera.motion", CELL, "active"))  # back within 2 s
    now[0] += 0.5
    await rules.observe(sig("camera.motion", CELL, "cleared"))
    now[0] += 2.9
    await rules.close_due()
    assert [e.state for e in emitted.events()] == ["active", "active"]
    now[0] += 0.2  # 3 s after the last clear: the window has passed
    await rules.close_due()
    opened, update, cleared = emitted.events()
    assert [e.state for e in emitted.events()] == ["active", "active", "cleared"]
    assert opened.data["incident"] == opened.id
    assert update.data["incident"] == cleared.data["incident"] == opened.id
    assert update.data["update"] is True and "update" not in opened.data
    assert asked.ids == [opened.id]  # one picture for the one incident
    assert emitted.kept[-1] == ("camera.incident", '["gate-cam", "camera.motion", "VS1"]', None)
    for event in emitted.events():
        assert_valid_event(event.stored(1, "s").to_dict())


async def test_a_return_after_the_window_is_a_new_incident_and_more_pictures_when_asked() -> None:
    rules, emitted, asked, now = _flicker_rules(snapshot={"per_incident": 2})
    for _ in range(3):  # three flickers within the window: the third takes no picture
        await rules.observe(sig("camera.motion", CELL, "active"))
        now[0] += 0.5
        await rules.observe(sig("camera.motion", CELL, "cleared"))
        now[0] += 1.0
        await rules.close_due()
    now[0] += 2.0
    await rules.close_due()  # the window passed: cleared
    await rules.observe(sig("camera.motion", CELL, "active"))  # later: a new incident
    states_ = [(e.state, e.data.get("update", False)) for e in emitted.events()]
    assert states_ == [
        ("active", False), ("active", True), ("active", True), ("cleared", False), ("active", False)
    ]  # fmt: skip
    first, second = emitted.events()[0], emitted.events()[4]
    assert second.data["incident"] == second.id != first.id
    assert asked.ids == [first.id, emitted.events()[1].id, second.id]
