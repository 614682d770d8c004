"""Every ONVIF capture normalizes to the event type, source token and state its README gives.

One case per file of ``../shared/realdata/onvif/`` (skipped where that folder is
absent), plus our own fixtures in ``tests/fixtures/onvif/`` covering every format
and quirk so a clone elsewhere still tests the parser. A row is either the list
of ``(kind, source, state, initial)`` of the file's notifications, in order (an
``Initialized`` inactive message is ``cleared`` with ``initial`` True: state, not
alarm), or the name of the error the document must raise. Where the capture
carries subscription times the row checks them too.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from drivers.onvif_camera.notifications import (
    CameraDocument,
    decode_document,
    notification_from_mapping,
    parse_camera_time,
)
from drivers.onvif_camera.topics import RULES, normalize, rule_for
from gateway.errors import DeviceError
from tests.helpers import FIXTURES_PATH, REALDATA_PATH

FIXTURES = FIXTURES_PATH / "onvif"
M, L, F, T, D, S = (
    "camera.motion",
    "camera.line_crossing",
    "camera.field_intrusion",
    "camera.tamper",
    "camera.digital_input",
    "camera.status",
)
A, C, I = "active", "cleared", "instant"  # noqa: E741
INIT, CHG = True, False
Row = list[tuple[str, str, str, bool] | str]

REAL: dict[str, Row] = {
    "axis/axis_GetEventInstancesResponse.xml": [],
    "axis/axis_metadata_audio_init.xml": [(S, "1", C, INIT)],
    "axis/axis_metadata_daynight_init.xml": [(S, "1", A, INIT)],
    "axis/axis_metadata_fence_guard_init.xml": [(L, "Camera1Profile1", C, INIT)],
    "axis/axis_metadata_first_message.xml": [],
    "axis/axis_metadata_global_scene_change.xml": [(T, "0", C, INIT)],
    "axis/axis_metadata_light_status_init.xml": [(S, "0", C, INIT)],
    "axis/axis_metadata_loitering_guard_init.xml": [(F, "Camera1Profile1", C, INIT)],
    "axis/axis_metadata_motion_guard_init.xml": [(M, "Camera1ProfileANY", C, INIT)],
    "axis/axis_metadata_object_analytics_any_change.xml": [(M, "Device1Scenario1", A, CHG)],
    "axis/axis_metadata_object_analytics_init.xml": [(M, "Device1Scenario1", C, INIT)],
    "axis/axis_metadata_pir_change.xml": [(M, "0", A, CHG)],
    "axis/axis_metadata_pir_init.xml": [(M, "0", C, INIT)],
    "axis/axis_metadata_port_0_init.xml": [(D, "1", C, INIT)],
    "axis/axis_metadata_port_any_init.xml": [(D, "-1", C, INIT)],
    "axis/axis_metadata_ptz_move_start.xml": [(S, "1", A, CHG)],
    "axis/axis_metadata_relay_init.xml": [(S, "3", C, INIT)],
    "axis/axis_metadata_rule_engine_region_detector_init.xml": [(M, "0", C, INIT)],
    "axis/axis_metadata_storage_alert_init.xml": [(S, "NetworkShare", C, INIT)],
    "axis/axis_metadata_vmd3_init.xml": [(M, "0", C, INIT)],
    "axis/axis_metadata_vmd4_any_change.xml": [(M, "Camera1ProfileANY", A, CHG)],
    "axis/axis_metadata_vmd4_any_init.xml": [(M, "Camera1ProfileANY", C, INIT)],
    "axis/axis_metadata_vmd4_c1p1_change.xml": [(M, "Camera1Profile1", A, CHG)],
    "axis/axis_metadata_vmd4_c1p1_init.xml": [(M, "Camera1Profile1", C, INIT)],
    "tapo_ha/generic_linedetector_crossed.json": [(L, "video_source_config1", I, INIT)],
    "tapo_ha/tapo_cellmotiondetector_intrusion.json": [(F, "vsconf", A, CHG)],
    "tapo_ha/tapo_cellmotiondetector_linecross.json": [(L, "vsconf", A, CHG)],
    "tapo_ha/tapo_cellmotiondetector_people.json": [(M, "vsconf", A, CHG)],
    "tapo_ha/tapo_cellmotiondetector_tamper.json": [(T, "vsconf", A, CHG)],
    "tapo_ha/tapo_cellmotiondetector_tpsmartevent_vehicle.json": [(M, "vsconf", A, CHG)],
    "tapo_ha/tapo_peopledetector_people.json": [(M, "vsconf", A, CHG)],
    "tapo_ha/tapo_tpsmarteventdetector_pet.json": [(M, "vsconf", A, CHG)],
    "tapo_ha/tapo_tpsmarteventdetector_vehicle.json": [(M, "vsconf", A, CHG)],
    "pullpoint_sessions/cellmotion_01_CreatePullPointSubscriptionResponse.xml": [],
    "pullpoint_sessions/cellmotion_02_PullMessagesResponse_first_with_messages.xml": [
        (M, "00000", C, INIT),
        (M, "00000", C, INIT),
        (T, "00000", C, INIT),
        (S, "000", I, INIT),
        (S, "", I, INIT),  # LastReboot "10-05-2025T22:41:27Z" (MM-DD-YYYY) is only data
        (S, "", I, INIT),
        (S, "", I, INIT),
    ],
    "pullpoint_sessions/cellmotion_03_PullMessagesResponse_motion_true.xml": [
        (M, "00000", A, CHG),
        (M, "00000", A, CHG),
    ],
    "pullpoint_sessions/cellmotion_04_PullMessagesResponse_motion_false.xml": [
        (M, "00000", C, CHG),
        (M, "00000", C, CHG),
    ],
    "pullpoint_sessions/dahua_sd4a425db_01_CreatePullPointSubscription_fault_"
    "BlockedThreadUpperLimit_http400.xml": ["DeviceFault"],
    "pullpoint_sessions/dahua_sd4a425db_02_CreatePullPointSubscriptionResponse.xml": [],
    "pullpoint_sessions/dahua_sd4a425db_03_PullMessagesResponse_empty.xml": [],
    "pullpoint_sessions/dahua_sd4a425db_04_PullMessagesResponse_empty_topic_quirk.xml": [
        "DeviceProtocolError"  # the message is skipped, the document is not lost
    ],
    "pullpoint_sessions/dahua_sd4a425db_05_PullMessagesResponse_cellmotion_true.xml": [
        (M, "VideoSourceToken", A, CHG)
    ],
    "pullpoint_sessions/dahua_sd4a425db_06_PullMessagesResponse_motionalarm_true.xml": [
        (M, "VideoSourceMain", A, CHG)
    ],
    "pullpoint_sessions/dahua_sd4a425db_07_PullMessagesResponse_humanshapedetect_true.xml": [
        (M, "VideoSourceMain", A, CHG)
    ],
    "pullpoint_sessions/dahua_sd4a425db_08_PullMessagesResponse_humanshapedetect_false.xml": [
        (M, "VideoSourceMain", C, CHG)
    ],
    "pullpoint_sessions/dahua_sd4a425db_09_PullMessagesResponse_cellmotion_false.xml": [
        (M, "VideoSourceToken", C, CHG)
    ],
    "pullpoint_sessions/generic_CreatePullPointSubscription_http200_with_html404_body.html": [
        "DeviceProtocolError"
    ],
    "pullpoint_sessions/hikcompat_01_CreatePullPointSubscriptionResponse.xml": [],
    "pullpoint_sessions/hikcompat_02_PullMessagesResponse_initialized_motion.xml": [
        (M, "00000", C, INIT),
        (M, "00000", C, INIT),
    ],
    "pullpoint_sessions/hikcompat_03_PullMessagesResponse_initialized_scene_di_relay_cpu.xml": [
        (T, "00000", C, INIT),
        (D, "00000", C, INIT),
        (D, "00100", C, INIT),
        (S, "00000", C, INIT),
        (S, "000", I, INIT),
    ],
    "pullpoint_sessions/hikcompat_04_PullMessagesResponse_fielddetector_vehicle_true.xml": [
        (F, "00000", A, CHG)
    ],
    "pullpoint_sessions/hikcompat_05_PullMessagesResponse_fielddetector_vehicle_false.xml": [
        (F, "00000", C, CHG)
    ],
    "pullpoint_sessions/hikcompat_06_PullMessagesResponse_monitoring_operatingtime.xml": [
        (S, "", I, INIT),
        (S, "", I, INIT),
        (S, "", I, INIT),
    ],
    "pullpoint_sessions/hikcompat_07_RenewResponse.xml": [],
    "pullpoint_sessions/hikvision_ds2cd2387g2p_CreatePullPointSubscription_fault_"
    "NotAuthorized_http400.xml": ["DeviceAuthError"],
    "pullpoint_sessions/reolink_bullet_01_GetServicesResponse.xml": [],
    "pullpoint_sessions/reolink_bullet_02_CreatePullPointSubscriptionResponse.xml": [],
    "pullpoint_sessions/reolink_bullet_03_PullMessagesResponse_initialized.xml": [
        (M, "000", C, INIT)
    ]
    * 6,
    "pullpoint_sessions/reolink_bullet_04_PullMessagesResponse_peopledetect_true.xml": [
        (M, "000", A, CHG)
    ],
    "pullpoint_sessions/reolink_bullet_05_PullMessagesResponse_peopledetect_false.xml": [
        (M, "000", C, CHG)
    ],
    "pullpoint_sessions/thingino_wyze_CreatePullPointSubscription_http404.html": [
        "DeviceProtocolError"
    ],
    "misc/zemond_PullMessagesResponse_cellmotion_and_motionalarm_true.xml": [
        (M, "00000", A, CHG),
        (M, "00000", A, CHG),
    ],
    "misc/onvifcam_Notify_push_motionalarm_false.xml": [(M, "VideoSource_1", C, CHG)],
    "misc/overflow_minute61_PullMessagesResponse.xml": [],
    "misc/hikvision_g2_fielddetector_objectsinside_fragment.xml": [(F, "VideoSourceToken", A, CHG)],
    "misc/reolink_facedetect_initialized_epoch1970_fragment.xml": [
        (M, "VideoSourceToken", C, INIT)
    ],
    "hikvision_isapi/alertstream_vmd_active_nvr_dynchannel.xml": [(M, "5", A, CHG)],
    # videoloss "inactive" with activePostCount 0 is the heartbeat: cleared, never an alarm
    "hikvision_isapi/alertstream_videoloss_inactive_heartbeat_broken_datetime.xml": [
        (T, "0", C, CHG)
    ],
    "hikvision_isapi/alertstream_videoloss_inactive_heartbeat_ver10.xml": [(T, "1", C, CHG)],
}

REAL_TIMES = {  # file → (CurrentTime, TerminationTime) as the tolerant parser reads them
    "misc/overflow_minute61_PullMessagesResponse.xml": (
        "2024-08-17T00:56:16+00:00",
        "2024-08-17T01:01:16+00:00",  # 00:61:16 carried over
    ),
    "pullpoint_sessions/dahua_sd4a425db_03_PullMessagesResponse_empty.xml": (
        "2017-12-31T16:00:18+00:00",
        "2018-12-31T21:49:04+00:00",  # a year: the driver caps it at what it asked
    ),
    "pullpoint_sessions/hikcompat_07_RenewResponse.xml": (
        "2026-02-19T08:59:26+00:00",
        "2026-02-19T09:01:26+00:00",
    ),
}

OURS: dict[str, Row] = {
    "pull_soap12_quirks.xml": [
        (M, "VSC_A", A, CHG),  # topics namespace bound to ot:, tabs
        "DeviceProtocolError",  # empty topic
        (F, "VSC_A", A, CHG),  # UtcTime "..." kept, not parsed
        (M, "VS_A", C, INIT),  # 1970 Initialized: state only
        (S, "", I, INIT),  # MM-DD-YYYY status value
        ("camera.event", "2", A, CHG),  # unknown vendor topic: forwarded as generic
    ],
    "notify_push.xml": [(T, "VSC_B", A, CHG)],
    "metadata_stream.xml": [(L, "Camera1Profile3", A, CHG)],
    "fragment.xml": [(D, "DI_2", A, INIT)],
    "zeep_logged.json": [(M, "vsconf", C, CHG)],
    "isapi_alert.xml": [(M, "3", A, CHG)],
    "fault_busy.xml": ["DeviceFault"],
    "fault_not_authorized.xml": ["DeviceAuthError"],
    "html_200.html": ["DeviceProtocolError"],
    "getservices_undeclared.xml": [],
    "renew.xml": [],
}


async def _interpret(path: Path) -> tuple[Row, CameraDocument | None]:
    if path.suffix == ".json":
        messages = [notification_from_mapping(json.loads(path.read_text(encoding="utf-8")))]
        document = None
    else:
        try:
            document = decode_document(path.read_bytes(), device_id="cam")
        except DeviceError as exc:
            return [type(exc).__name__], None
        messages = list(document.notifications)
    row: Row = []
    for message in messages:
        try:
            meaning = await normalize(message, device_id="cam")
        except DeviceError as exc:
            row.append(type(exc).__name__)
            continue
        row.append((meaning.kind, meaning.source, meaning.state, meaning.initial))
    return row, document


def _real_cases() -> list[str]:
    if not REALDATA_PATH.is_dir():
        return ["(absent)"]
    return sorted(
        str(p.relative_to(REALDATA_PATH / "onvif"))
        for p in (REALDATA_PATH / "onvif").rglob("*")
        if p.is_file()
    )


@pytest.mark.parametrize("name", _real_cases())
async def test_real_capture_normalizes_as_its_readme_says(name: str) -> None:
    if name == "(absent)":
        pytest.skip("../shared/realdata not present: real captures are only on the team's machines")
    assert name in REAL, f"no expected interpretation for capture {name}: add a row"
    row, document = await _interpret(REALDATA_PATH / "onvif" / name)
    assert row == REAL[name]
    if name in REAL_TIMES:
        assert document is not None
        current, termination = REAL_TIMES[name]
        assert document.current_time == datetime.fromisoformat(current)
        assert document.termination_time == datetime.fromisoformat(termination)


def test_every_expected_capture_exists(realdata: Path) -> None:
    assert sorted(REAL) == _real_cases()


@pytest.mark.parametrize("name", sorted(OURS))
async def test_own_fixture_normalizes(name: str) -> None:
    row, _ = await _interpret(FIXTURES / name)
    assert row == OURS[name]


def test_own_fixtures_are_all_in_the_table() -> None:
    assert sorted(OURS) == sorted(p.name for p in FIXTURES.iterdir() if p.name != "README.md")


def test_fixture_times_and_services_survive_the_quirks() -> None:
    pull = decode_document((FIXTURES / "pull_soap12_quirks.xml").read_bytes(), device_id="cam")
    assert pull.termination_time == datetime(2030, 1, 2, 4, 1, tzinfo=UTC)  # 03:61 → 04:01
    assert [n.utc_time for n in pull.notifications][2:4] == ["...", "1970-01-01T00:00:00Z"]
    services = decode_document(
        (FIXTURES / "getservices_undeclared.xml").read_bytes(), device_id="cam"
    )
    assert dict(services.services) == {
        "http://www.onvif.org/ver10/events/wsdl": "http://198.51.100.7/onvif/events",
        "http://www.onvif.org/ver10/media/wsdl": "http://198.51.100.7/onvif/media",
    }
    renew = decode_document((FIXTURES / "renew.xml").read_bytes(), device_id="cam")
    assert renew.termination_time is not None and renew.current_time is not None
    assert (renew.termination_time - renew.current_time).total_seconds() == 120


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-08-17T00:61:16Z", "2024-08-17T01:01:16+00:00"),
        ("10-05-2025T22:41:27Z", "2025-10-05T22:41:27+00:00"),
        ("2024-01-22T11:47:1500:00", "2024-01-22T11:47:15+00:00"),
        ("2020-07-23T18:30:12+02:00", "2020-07-23T16:30:12+00:00"),
        ("2020-05-24T07:24:47", "2020-05-24T07:24:47+00:00"),
        ("1970-01-01T00:00:00Z", "1970-01-01T00:00:00+00:00"),
        ("...", None),
        ("", None),
        ("2024-02-30T00:00:00Z", None),
    ],
)
def test_camera_times_are_read_tolerantly(text: str, expected: str | None) -> None:
    parsed = parse_camera_time(text)
    assert (parsed.isoformat() if parsed else None) == expected


def test_every_table_row_cites_its_source_and_prefix_rows_win_by_length() -> None:
    assert all(rule.capture for rule in RULES)
    assert len({rule.topic for rule in RULES}) == len(RULES)
    rule = rule_for("tnsaxis:CameraApplicationPlatform/VMD/Camera1Profile9")
    assert rule is not None and rule.kind == M
    assert rule_for("tns1:Nobody/Knows") is None
