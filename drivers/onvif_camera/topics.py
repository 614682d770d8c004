"""Vendor topics → our camera event types, as data with the capture that shows each one.

:func:`normalize` turns one :class:`~drivers.onvif_camera.notifications.Notification`
into a :class:`Normalized` (kind, source token, detector, state). The table
:data:`RULES` says which topics are motion, line crossing, field intrusion,
tamper, digital input or device status, and which ``Data`` item carries the
state (``"true"``/``"1"``/``"active"`` are on; ``"false"``/``"0"``/``"inactive"``
off). ``onvif-parsers`` (Home Assistant's topic parsers) is asked about every
message: its value is used when the table's items are absent from the message,
and for a topic the table lacks its device class gives the kind (``motion``,
``tamper``, ``safety``). A topic neither knows is still forwarded, as
``camera.event``, flagged ``known=False`` so the driver logs it once. The
library is not trusted alone: it reads Axis' ``"1"`` as false (it compares with
``"true"``), so the table's reading wins where both have one.

Capture files are under ``../shared/realdata/onvif/``; "spec" rows come from the
ONVIF Analytics/Core specifications or the ``onvif-parsers`` 2.5.0 registry.
"""

from __future__ import annotations

import types
from dataclasses import dataclass
from typing import Any

import onvif_parsers
from onvif_parsers.errors import UnknownTopicError

from drivers.onvif_camera.notifications import Notification
from gateway.errors import DeviceProtocolError
from gateway.events.observation import CameraState

MOTION = "camera.motion"
LINE = "camera.line_crossing"
FIELD = "camera.field_intrusion"
TAMPER = "camera.tamper"
INPUT = "camera.digital_input"
STATUS = "camera.status"
GENERIC = "camera.event"

_TRUE = frozenset({"true", "1", "active", "on"})
_FALSE = frozenset({"false", "0", "inactive", "off"})
_NOT_SOURCE = frozenset({"VideoAnalyticsConfigurationToken", "Rule", "RuleName"})


@dataclass(frozen=True, slots=True)
class TopicRule:
    """How one vendor topic (or every topic under a prefix ending in ``/``) maps.

    Attributes:
        topic: canonical topic (``tns1:VideoSource/MotionAlarm``) or a prefix
            ending in ``/`` whose remainder names the source (Axis ACAP profiles).
        kind: our event type.
        items: ``Data`` item names that may carry the state, first present wins;
            empty for a pulse (``instant``) or a reading without on/off.
        capture: the capture file (or spec) that shows the topic.
        source_in_topic: the message has no Source; the rest of the topic after
            the prefix names it (Axis ACAP: ``…/VMD/Camera1Profile1``).
    """

    topic: str
    kind: str
    items: tuple[str, ...]
    capture: str
    source_in_topic: bool = False


_TAPO = ("IsPeople", "IsVehicle", "IsPet", "IsPackageDeliver", "IsPackagePickup")

RULES: tuple[TopicRule, ...] = (
    # -- motion and object detection --
    TopicRule("tns1:RuleEngine/CellMotionDetector/Motion", MOTION, ("IsMotion",),
              "pullpoint_sessions/cellmotion_03, dahua_sd4a425db_05"),
    TopicRule("tns1:VideoSource/MotionAlarm", MOTION, ("State",),
              "pullpoint_sessions/dahua_sd4a425db_06, misc/onvifcam_Notify"),
    TopicRule("tns1:RuleEngine/MotionRegionDetector/Motion", MOTION, ("State",),
              "axis/axis_metadata_rule_engine_region_detector_init"),
    TopicRule("tns1:RuleEngine/MyRuleDetector/PeopleDetect", MOTION, ("State",),
              "pullpoint_sessions/reolink_bullet_04"),
    TopicRule("tns1:RuleEngine/MyRuleDetector/VehicleDetect", MOTION, ("State",),
              "pullpoint_sessions/reolink_bullet_03"),
    TopicRule("tns1:RuleEngine/MyRuleDetector/DogCatDetect", MOTION, ("State",),
              "pullpoint_sessions/reolink_bullet_03"),
    TopicRule("tns1:RuleEngine/MyRuleDetector/FaceDetect", MOTION, ("State",),
              "misc/reolink_facedetect_initialized_epoch1970_fragment"),
    TopicRule("tns1:UserAlarm/IVA/HumanShapeDetect", MOTION, ("State",),
              "pullpoint_sessions/dahua_sd4a425db_07"),
    TopicRule("tns1:RuleEngine/CellMotionDetector/People", MOTION, ("IsPeople",),
              "tapo_ha/tapo_cellmotiondetector_people"),
    TopicRule("tns1:RuleEngine/PeopleDetector/People", MOTION, ("IsPeople",),
              "tapo_ha/tapo_peopledetector_people"),
    TopicRule("tns1:RuleEngine/CellMotionDetector/TpSmartEvent", MOTION, _TAPO,
              "tapo_ha/tapo_cellmotiondetector_tpsmartevent_vehicle"),
    TopicRule("tns1:RuleEngine/TPSmartEventDetector/TPSmartEvent", MOTION, _TAPO,
              "tapo_ha/tapo_tpsmarteventdetector_pet, _vehicle"),
    TopicRule("tns1:Device/tnsaxis:Sensor/PIR", MOTION, ("state",),
              "axis/axis_metadata_pir_change"),
    TopicRule("tnsaxis:CameraApplicationPlatform/VMD/", MOTION, ("active",),
              "axis/axis_metadata_vmd4_c1p1_change", True),
    TopicRule("tns1:RuleEngine/tnsaxis:VMD3/", MOTION, ("active",),
              "axis/axis_metadata_vmd3_init"),
    TopicRule("tnsaxis:CameraApplicationPlatform/MotionGuard/", MOTION, ("active",),
              "axis/axis_metadata_motion_guard_init", True),
    TopicRule("tnsaxis:CameraApplicationPlatform/ObjectAnalytics/", MOTION, ("active",),
              "axis/axis_metadata_object_analytics_any_change", True),
    TopicRule("isapi:VMD", MOTION, ("eventState",),
              "hikvision_isapi/alertstream_vmd_active_nvr_dynchannel"),
    # -- line crossing (a tripwire or a virtual fence) --
    TopicRule("tns1:RuleEngine/LineDetector/Crossed", LINE, (),
              "tapo_ha/generic_linedetector_crossed (a pulse: ObjectId only)"),
    TopicRule("tns1:RuleEngine/CellMotionDetector/LineCross", LINE, ("IsLineCross",),
              "tapo_ha/tapo_cellmotiondetector_linecross"),
    TopicRule("tns1:RuleEngine/LineCrossDetector/LineCross", LINE, ("IsLineCross",),
              "spec: onvif-parsers tapo registry"),
    TopicRule("tnsaxis:CameraApplicationPlatform/FenceGuard/", LINE, ("active",),
              "axis/axis_metadata_fence_guard_init", True),
    # -- field intrusion (an object inside a guarded area) --
    TopicRule("tns1:RuleEngine/FieldDetector/ObjectsInside", FIELD, ("IsInside",),
              "pullpoint_sessions/hikcompat_04, misc/hikvision_g2_fielddetector"),
    TopicRule("tns1:RuleEngine/CellMotionDetector/Intrusion", FIELD, ("IsIntrusion",),
              "tapo_ha/tapo_cellmotiondetector_intrusion"),
    TopicRule("tnsaxis:CameraApplicationPlatform/LoiteringGuard/", FIELD, ("active",),
              "axis/axis_metadata_loitering_guard_init (someone lingers in the area)", True),
    # -- tamper: covered, moved, defocused, video lost --
    TopicRule("tns1:RuleEngine/TamperDetector/Tamper", TAMPER, ("IsTamper",),
              "spec: ONVIF Analytics Service, tamper detector"),
    TopicRule("tns1:RuleEngine/CellMotionDetector/Tamper", TAMPER, ("IsTamper",),
              "tapo_ha/tapo_cellmotiondetector_tamper"),
    TopicRule("tns1:VideoSource/GlobalSceneChange/", TAMPER, ("State",),
              "axis/axis_metadata_global_scene_change, pullpoint_sessions/hikcompat_03"),
    TopicRule("tns1:VideoSource/ImageTooBlurry/", TAMPER, ("State",), "spec: ONVIF Core"),
    TopicRule("tns1:VideoSource/ImageTooDark/", TAMPER, ("State",), "spec: ONVIF Core"),
    TopicRule("tns1:VideoSource/ImageTooBright/", TAMPER, ("State",), "spec: ONVIF Core"),
    TopicRule("isapi:videoloss", TAMPER, ("eventState",),
              "hikvision_isapi/alertstream_videoloss_* (inactive = heartbeat, no alarm)"),
    TopicRule("isapi:shelteralarm", TAMPER, ("eventState",), "spec: Hikvision ISAPI"),
    # -- digital inputs of the camera --
    TopicRule("tns1:Device/Trigger/DigitalInput", INPUT, ("LogicalState",),
              "pullpoint_sessions/hikcompat_03"),
    TopicRule("tns1:Device/tnsaxis:IO/Port", INPUT, ("state",),
              "axis/axis_metadata_port_0_init (port=-1 is ANY port)"),
    TopicRule("tns1:Device/Trigger/tnshik:AlarmIn", INPUT, ("State",),
              "spec: onvif-parsers hikvision registry"),
    # -- device status: telemetry, never an alarm --
    TopicRule("tns1:Device/Trigger/Relay", STATUS, ("LogicalState",),
              "axis/axis_metadata_relay_init, pullpoint_sessions/hikcompat_03"),
    TopicRule("tns1:Monitoring/", STATUS, (),
              "pullpoint_sessions/cellmotion_02, hikcompat_06 (MM-DD-YYYY, 1970)"),
    TopicRule("tns1:VideoSource/tnsaxis:DayNightVision", STATUS, ("day",),
              "axis/axis_metadata_daynight_init"),
    TopicRule("tns1:Device/tnsaxis:Light/", STATUS, ("state",),
              "axis/axis_metadata_light_status_init"),
    TopicRule("tnsaxis:Storage/", STATUS, ("alert",), "axis/axis_metadata_storage_alert_init"),
    TopicRule("tns1:Device/HardwareFailure/", STATUS, ("Failed", "State"), "spec: ONVIF Core"),
    TopicRule("tns1:PTZController/", STATUS, ("is_moving",), "axis/axis_metadata_ptz_move_start"),
    TopicRule("tns1:AudioSource/", STATUS, ("triggered",), "axis/axis_metadata_audio_init"),
)  # fmt: skip

_EXACT = {r.topic: r for r in RULES if not r.topic.endswith("/")}
_PREFIXES = sorted((r for r in RULES if r.topic.endswith("/")), key=lambda r: -len(r.topic))
_BY_DEVICE_CLASS = {"motion": MOTION, "tamper": TAMPER, "safety": FIELD}


@dataclass(frozen=True, slots=True)
class Normalized:
    """What a notification means.

    Attributes:
        kind: event type (``camera.motion`` …, ``camera.status``, ``camera.event``).
        source: source token ("" when the message names none).
        detector: canonical topic, plus ``#rule`` when the message names a rule.
        rule: the rule name ("" when none).
        state: ``active``/``cleared``, or ``instant`` for a pulse or a reading.
        initial: from an ``Initialized`` message (state, not a change).
        known: the topic is in :data:`RULES`; False means "log it once".
    """

    kind: str
    source: str
    detector: str
    rule: str
    state: CameraState
    initial: bool
    known: bool


def rule_for(topic: str) -> TopicRule | None:
    """The table row for ``topic``: an exact topic first, else the longest prefix."""
    exact = _EXACT.get(topic)
    if exact is not None:
        return exact
    return next((r for r in _PREFIXES if topic.startswith(r.topic)), None)


async def normalize(message: Notification, *, device_id: str) -> Normalized:
    """Map one notification to our terms.

    Raises:
        DeviceProtocolError: an empty topic (``dahua_sd4a425db_04``), or a state
            item that is missing or neither true nor false; ``raw`` holds the XML.
    """
    if not message.topic:
        raise DeviceProtocolError(
            "notification without a topic", device_id=device_id, raw=message.raw
        )
    rule = rule_for(message.topic)
    library_value, library_class = await _library_value(message)
    rule_name = next((v for n, v in message.source if n in ("Rule", "RuleName")), "")
    source = next((v for n, v in message.source if n not in _NOT_SOURCE), None)
    if source is None:
        source = message.topic.removeprefix(rule.topic) if rule and rule.source_in_topic else ""
    if rule is not None:
        kind, items = rule.kind, rule.items
    else:
        kind = _BY_DEVICE_CLASS.get(library_class or "", GENERIC)
        items = tuple(n for n, v in message.data if v.strip().lower() in _TRUE | _FALSE)[:1]
    value = _value(message, items)
    if value is None and (items or rule is None) and isinstance(library_value, bool):
        value = library_value  # a state item the table does not name; the library knows it
    if items and value is None:
        raise DeviceProtocolError(
            f"{message.topic}: no readable state in {', '.join(items)}",
            device_id=device_id,
            raw=message.raw,
        )
    state: CameraState = "instant" if value is None else ("active" if value else "cleared")
    if message.operation == "Deleted":
        state = "cleared"
    return Normalized(
        kind=kind,
        source=source,
        detector=f"{message.topic}#{rule_name}" if rule_name else message.topic,
        rule=rule_name,
        state=state,
        initial=message.operation == "Initialized",
        known=rule is not None,
    )


def _value(message: Notification, items: tuple[str, ...]) -> bool | None:
    data = dict(message.data)
    for name in items:
        if name in data:
            text = data[name].strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
    return None


async def _library_value(message: Notification) -> tuple[Any, str | None]:
    """``(value, device_class)`` from ``onvif-parsers``, or ``(None, None)``.

    The library reads zeep objects; a namespace of the same shape stands in
    (``msg.Topic._value_1``, ``msg.Message._value_1.Source.SimpleItem[i].Name``).
    Its parsers index ``SimpleItem[0]`` blindly, so a message without the items
    it expects raises; that only means "no opinion".
    """
    ns = types.SimpleNamespace

    def group(items: tuple[tuple[str, str], ...]) -> types.SimpleNamespace:
        return ns(SimpleItem=[ns(Name=n, Value=v) for n, v in items])

    shim = ns(
        Topic=ns(_value_1=message.topic),
        Message=ns(
            _value_1=ns(
                Source=group(message.source),
                Key=group(message.key),
                Data=group(message.data),
                UtcTime=message.utc_time,
                PropertyOperation=message.operation,
            )
        ),
    )
    try:
        entities = await onvif_parsers.parse(message.topic, "camera", shim)
    except (UnknownTopicError, AttributeError, IndexError, KeyError, TypeError, ValueError):
        return None, None
    if not entities:
        return None, None
    return entities[0].value, entities[0].device_class
