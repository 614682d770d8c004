"""A local JSON control endpoint for simulated cameras (``campus-sim camera ctl …``).

======  ==================================  =======================================  ======
method  path                                body                                     answer
======  ==================================  =======================================  ======
GET     ``/cameras``                        —                                        200 all
POST    ``/cameras/<id>/trigger``           ``{"event": "motion", "active": true}``  200
POST    ``/cameras/<id>/reboot``            ``{"off_seconds": 5}``                   202
POST    ``/cameras/<id>/clock``             ``{"offset_s": 3600}``                   200
POST    ``/cameras/<id>/fail``              ``{"operation": "Renew", "mode": "fault",  200
                                            "count": 1}``
POST    ``/cameras/<id>/replay``            ``{"files": ["…/capture.xml"]}``          200
POST    ``/cameras/<id>/snapshot``          ``{"fault": "http500"}`` (``http401``,    200
                                            ``hang``, ``empty``; null: pictures
                                            again)
======  ==================================  =======================================  ======

``event`` is one of ``motion``, ``tamper``, ``field``, ``input`` (states) or
``line`` (a pulse). Errors answer ``{"error": text}`` with 400 or 404. A reboot
runs in a task the endpoint owns (cancelled on stop). Binds to 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aiohttp import web

from simulators.broker import pick_free_port
from simulators.camera.pullpoint import TRIGGERS, load_capture
from simulators.camera.server import SNAPSHOT_FAULTS, SimulatedCamera
from simulators.lifetime import StartStop


class CameraControl(StartStop):
    """Serves the routes above for a fixed set of simulated cameras.

    Args:
        cameras: by camera id.
        port: TCP port on 127.0.0.1; 0 picks a free one (read :attr:`port` after start).
    """

    def __init__(self, cameras: Mapping[str, SimulatedCamera], *, port: int = 0) -> None:
        self.cameras = dict(cameras)
        self._port = port or pick_free_port("127.0.0.1")
        self._runner: web.AppRunner | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        return self._port

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/cameras", self._list)
        app.router.add_post("/cameras/{id}/{action}", self._act)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self._port).start()

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def state(self, camera_id: str) -> dict[str, Any]:
        cam = self.cameras[camera_id]
        return {
            "id": camera_id,
            "address": cam.base_url,
            "running": cam.running,
            "clock_offset_s": cam.options.clock_offset_s,
            "subscriptions": len(cam.events.subscriptions),
            "requests": dict(cam.requests),
            "snapshots": cam.snapshots,
            "snapshot_fault": cam.options.snapshot_fault,
            "events_service": cam.options.events_service,
            "boots": cam.boots,
        }

    async def _list(self, _: web.Request) -> web.Response:
        return web.json_response({"cameras": [self.state(c) for c in self.cameras]})

    async def _act(self, request: web.Request) -> web.Response:
        camera_id, action = request.match_info["id"], request.match_info["action"]
        cam = self.cameras.get(camera_id)
        if cam is None:
            return web.json_response({"error": f"no camera {camera_id!r}"}, status=404)
        try:
            body: dict[str, Any] = await request.json() if request.can_read_body else {}
            status = self._apply(cam, action, body)
        except (ValueError, KeyError, TypeError, OSError) as exc:
            return web.json_response({"error": f"{type(exc).__name__}: {exc}"}, status=400)
        return web.json_response(self.state(camera_id), status=status)

    def _apply(self, cam: SimulatedCamera, action: str, body: dict[str, Any]) -> int:
        if action == "trigger":
            event = str(body["event"])
            if event not in TRIGGERS:
                raise ValueError(f"event must be one of {', '.join(TRIGGERS)}")
            cam.trigger(event, bool(body.get("active", True)), body.get("source"))
        elif action == "reboot":
            task = asyncio.create_task(cam.reboot(float(body.get("off_seconds", 5))))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return 202
        elif action == "clock":
            cam.options.clock_offset_s = float(body["offset_s"])
        elif action == "fail":
            cam.fail_next(str(body["operation"]), str(body["mode"]), int(body.get("count", 1)))
        elif action == "snapshot":
            fault = body.get("fault")
            if fault not in SNAPSHOT_FAULTS:
                raise ValueError(f"fault must be one of {SNAPSHOT_FAULTS}")
            cam.options.snapshot_fault = fault
        elif action == "replay":
            for name in body["files"]:
                cam.replay(load_capture(Path(name)))
        else:
            raise ValueError(f"unknown action {action!r}")
        return 200
