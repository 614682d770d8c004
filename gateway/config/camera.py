"""Configuration of ONVIF cameras and of alarm linkage (zone → cameras).

``[[cameras]]`` and ``[[linkage]]`` of the gateway's TOML file; the root model in
:mod:`gateway.config.root` holds the lists and calls :func:`check_cameras` in its
cross-check. Units are in the field names (``_s`` seconds, ``_ms`` milliseconds,
``_px`` pixels). Nothing here is silently adjusted (STYLE.md rule 10).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

from pydantic import Field

from gateway.config.base import FilePath, Strict

CameraIdent = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]

CameraAlarmKind = Literal[
    "camera.motion",
    "camera.line_crossing",
    "camera.field_intrusion",
    "camera.tamper",
    "camera.digital_input",
]

ALARM_KINDS: tuple[CameraAlarmKind, ...] = (
    "camera.motion",
    "camera.line_crossing",
    "camera.field_intrusion",
    "camera.tamper",
    "camera.digital_input",
)
"""Camera event types that are alarms of their own (and may take evidence)."""


class SnapshotConfig(Strict):
    """``[cameras.snapshot]``: evidence pictures.

    ``auth``: how the snapshot URI is fetched: ``auto`` tries Digest (what ONVIF
    cameras use) and then Basic (old firmware) and remembers what worked;
    ``digest``, ``basic`` or ``none`` pins one. With ``rtsp_fallback`` the
    stream URI (RTSP or MJPEG, read with OpenCV) gives the picture when the
    camera has no snapshot URI or its snapshot URI fails.
    The picture is re-encoded to at most ``max_width_px`` wide and ``max_bytes``
    (JPEG quality lowered step by step from ``jpeg_quality`` until it fits).
    ``on_events``: camera alarms that take a picture of their own (zone alarms
    take one through ``[[linkage]]``). ``late_within_s``: after a restart, a
    picture asked for before it is still taken when the request is at most this
    old (seconds; its ``camera.snapshot`` says ``late = true``), and otherwise
    reported as not taken, with the reason (``gateway/camera/evidence.py``).
    ``per_incident``: pictures one incident takes (the first when it opens, the
    next ones when its signal returns within the camera's ``merge_window_s``).
    """

    enabled: bool = True
    per_incident: int = Field(default=1, ge=1, le=20)
    auth: Literal["auto", "digest", "basic", "none"] = "auto"
    rtsp_fallback: bool = True
    on_events: tuple[CameraAlarmKind, ...] = ALARM_KINDS
    max_width_px: int = Field(default=1280, ge=160, le=7680)
    max_bytes: int = Field(default=400_000, ge=20_000, le=20_000_000)
    jpeg_quality: int = Field(default=85, ge=30, le=100)
    timeout_s: float = Field(default=10.0, gt=0, le=120)
    attempts: int = Field(default=3, ge=1, le=10)
    late_within_s: float = Field(default=300.0, ge=0, le=86_400)


class CameraConfig(Strict):
    """``[[cameras]]``: one ONVIF camera read through a PullPoint subscription.

    ``port`` is the ONVIF HTTP port (``/onvif/device_service``). ``password_file``
    holds the ONVIF user's password (secrets stay in files; relative paths are
    resolved against the config file). ``profile`` is the media profile token
    whose snapshot and stream are used; the first profile when omitted.
    ``subscription_s`` is the subscription time asked for (renewed at ~80 % of
    what the camera grants); ``pull_timeout_s`` the PullMessages long-poll.
    ``soap_min_interval_ms`` spaces SOAP requests to one camera (weak firmware
    answers bursts with ``ter:BlockedThreadUpperLimit``). ``offline_after``
    consecutive failed attempts make the camera ``offline``. ``area``: the
    ``[[areas]]`` entry the camera watches: its line crossings and field
    intrusions then follow that area's arming like a zone (priority 2 while armed,
    4 while disarmed); without it they are priority 4. Its tamper is priority 2
    in every state. ``merge_window_s``: a signal that returns within this many
    seconds after its last detector cleared continues the same incident (one
    ``active`` update, no new incident); the incident's ``cleared`` is sent only
    when the window has passed quietly (0: at once). Motion flickers on and off
    on most firmware (issue 11), so the default is 3 s; set it per camera.
    """

    id: CameraIdent
    name: str = ""
    location: str = ""
    host: str
    port: int = Field(default=80, ge=1, le=65535)
    username: str = "admin"
    password_file: FilePath | None = None
    profile: str | None = None
    subscription_s: int = Field(default=60, ge=10, le=86_400)
    pull_timeout_s: float = Field(default=5.0, gt=0, le=60)
    message_limit: int = Field(default=100, ge=1, le=1000)
    request_timeout_s: float = Field(default=10.0, gt=0, le=120)
    soap_min_interval_ms: int = Field(default=100, ge=0, le=10_000)
    renew_retries: int = Field(default=2, ge=0, le=10)
    offline_after: int = Field(default=3, ge=1, le=1000)
    backoff_cap_s: float = Field(default=30.0, gt=0, le=3600)
    area: CameraIdent | None = None
    merge_window_s: float = Field(default=3.0, ge=0, le=600)
    snapshot: SnapshotConfig = SnapshotConfig()

    def password(self) -> str:
        """The password from ``password_file`` (trailing newline stripped), or "".

        Raises:
            OSError: the file cannot be read.
        """
        if self.password_file is None:
            return ""
        return self.password_file.read_text(encoding="utf-8").rstrip("\r\n")


class LinkageConfig(Strict):
    """``[[linkage]]``: when ``zone`` raises an alarm, ``cameras`` take evidence pictures."""

    zone: CameraIdent
    cameras: tuple[CameraIdent, ...] = Field(min_length=1)


def check_cameras(
    cameras: Sequence[CameraConfig],
    linkage: Sequence[LinkageConfig],
    zone_ids: set[str],
    area_ids: set[str],
) -> list[tuple[str, str]]:
    """Cross-checks of ``[[cameras]]`` and ``[[linkage]]``.

    Returns:
        Every problem as ``(dotted field, message)``, in file order; empty when fine.
    """
    problems: list[tuple[str, str]] = []
    seen: set[str] = set()
    for i, camera in enumerate(cameras):
        if camera.id in seen:
            problems.append((f"cameras.{i}.id", f"duplicate id {camera.id!r}"))
        seen.add(camera.id)
        if camera.area is not None and camera.area not in area_ids:
            problems.append((f"cameras.{i}.area", f"no area with id {camera.area!r}"))
    linked: set[str] = set()
    for i, link in enumerate(linkage):
        if link.zone not in zone_ids:
            problems.append((f"linkage.{i}.zone", f"no zone with id {link.zone!r}"))
        if link.zone in linked:
            problems.append((f"linkage.{i}.zone", f"zone {link.zone!r} is linked twice"))
        linked.add(link.zone)
        for camera_id in link.cameras:
            if camera_id not in seen:
                problems.append((f"linkage.{i}.cameras", f"no camera with id {camera_id!r}"))
        if len(set(link.cameras)) != len(link.cameras):
            problems.append((f"linkage.{i}.cameras", "a camera is listed twice"))
    return problems
