"""Simulated ONVIF cameras for every ``[[cameras]]`` of a gateway config.

Each camera serves on the host and port its entry names (or a port the caller
chooses), with the user, the password (``password_file``) and the snapshot
authentication the gateway will use — so a config that works against the
simulators works against the cameras it describes. ``campus-sim camera serve``
and ``campus-sim campus`` start them through :func:`simulated_cameras`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Collection, Mapping

from gateway.config.camera import CameraConfig
from gateway.config.root import GatewayConfig
from simulators.camera.server import CameraOptions, SimulatedCamera


def camera_options(
    camera: CameraConfig, port: int | None = None, *, events: bool = True
) -> CameraOptions:
    """Simulator options matching one ``[[cameras]]`` entry.

    Args:
        camera: the entry (its ``password_file`` resolved, as ``load_config`` gives it).
        port: the port to bind instead of the configured one (0 = any free).
        events: serve an events service (False: pictures only).

    Raises:
        OSError: the password file cannot be read.
    """
    return CameraOptions(
        camera_id=camera.id,
        username=camera.username,
        password=camera.password(),
        host=camera.host,
        events_service=events,
        port=camera.port if port is None else port,
        # ``auto`` on the gateway's side: the camera serves what ONVIF cameras use
        snapshot_auth="digest" if camera.snapshot.auth == "auto" else camera.snapshot.auth,
    )


@contextlib.asynccontextmanager
async def simulated_cameras(
    cfg: GatewayConfig,
    *,
    ports: Mapping[str, int] | None = None,
    without_events: Collection[str] = (),
) -> AsyncIterator[dict[str, SimulatedCamera]]:
    """Start a :class:`SimulatedCamera` for every camera of ``cfg``; stop them on exit.

    Args:
        cfg: the gateway config whose cameras to simulate.
        ports: camera id → port to bind instead of the configured one (0 = any free).
        without_events: ids of the cameras to serve without an events service.

    Yields:
        The running cameras by id (``{}`` for a config without cameras).

    Raises:
        OSError: a port cannot be bound or a password file read (the message names
            the camera).
    """
    cameras: dict[str, SimulatedCamera] = {}
    async with contextlib.AsyncExitStack() as stack:
        for camera in cfg.cameras:
            port = None if ports is None else ports.get(camera.id, 0)
            try:
                options = camera_options(camera, port, events=camera.id not in without_events)
                sim = SimulatedCamera(options)
                cameras[camera.id] = await stack.enter_async_context(sim)
            except OSError as exc:
                where = f"{camera.host}:{camera.port if port is None else port}"
                message = f"camera {camera.id}: cannot serve on {where}: {exc}"
                raise OSError(exc.errno, message) from exc
        yield cameras
