"""Helpers for the camera tests: configs pointing at simulated cameras, sinks, MQTT pictures."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt

from gateway.config.camera import CameraConfig
from gateway.events.model import Event
from gateway.events.observation import CameraSignal, DeviceHealth
from gateway.runtime.state import StateWrite
from simulators.camera.server import CameraOptions, SimulatedCamera
from tests.helpers import eventually

__all__ = ["eventually"]

PASSWORD = "s3cret-Pw"


def camera_options(camera_id: str, **overrides: Any) -> CameraOptions:
    """Simulator options with the test password."""
    return CameraOptions(camera_id=camera_id, password=PASSWORD, **overrides)


def camera_config(cam: SimulatedCamera, tmp_path: Path, **overrides: Any) -> CameraConfig:
    """A ``[[cameras]]`` entry for ``cam`` with fast timings; the password in a file."""
    secret = tmp_path / f"{cam.options.camera_id}.password"
    secret.write_text(overrides.pop("password", PASSWORD) + "\n", encoding="utf-8")
    values: dict[str, Any] = {
        "id": cam.options.camera_id,
        "name": f"摄像机 {cam.options.camera_id}",
        "location": "test bench",
        "host": cam.options.host,
        "port": cam.port,
        "username": cam.options.username,
        "password_file": secret,
        "pull_timeout_s": 1.0,
        "request_timeout_s": 3.0,
        "soap_min_interval_ms": 0,
        "offline_after": 2,
        "backoff_cap_s": 1.0,
    }
    values.update(overrides)
    return CameraConfig.model_validate(values)


@dataclass
class Recorder:
    """A driver sink or an ``emit`` (a ``StoreWith``) that keeps everything, with a wait.

    ``kept``: each stored item's kept-state writes, in order (as ``(kind, key, data)``).
    """

    items: list[Any] = field(default_factory=list)
    kept: list[tuple[str, str, Any]] = field(default_factory=list)

    async def __call__(
        self, item: Any, *, keep: Sequence[StateWrite] = (), blob: tuple[str, bytes] | None = None
    ) -> Any:
        self.items.append(item)
        self.kept.extend((w.kind, w.key, w.data) for w in keep)
        return item

    async def keep(self, writes: Sequence[StateWrite]) -> None:
        """Kept state without an event (the outbox's ``keep``)."""
        self.kept.extend((w.kind, w.key, w.data) for w in writes)

    def signals(self, kind: str | None = None) -> list[CameraSignal]:
        return [s for s in self.items if isinstance(s, CameraSignal) and kind in (None, s.kind)]

    def health(self) -> list[str]:
        return [h.state for h in self.items if isinstance(h, DeviceHealth)]

    def events(self, type_: str | None = None) -> list[Event]:
        return [e for e in self.items if isinstance(e, Event) and type_ in (None, e.type)]

    async def wait(self, predicate: Callable[[], bool], within: float = 10.0) -> None:
        """Poll ``predicate`` (it may look at anything, not only the items) until true."""
        await eventually(predicate, within)


@dataclass
class PictureReceiver:
    """Collects every message on ``campus/v1/+/+/snapshots/#``: topic suffix → bytes."""

    pictures: dict[str, bytes] = field(default_factory=dict)

    def sha256(self, event_id: str) -> str | None:
        data = self.pictures.get(event_id)
        return None if data is None else hashlib.sha256(data).hexdigest()


@contextlib.asynccontextmanager
async def picture_receiver(host: str, port: int, identifier: str) -> AsyncIterator[PictureReceiver]:
    """A persistent MQTT 5 session subscribed (QoS 1) to every gateway's snapshots."""
    receiver = PictureReceiver()
    client = aiomqtt.Client(
        host, port, identifier=identifier, protocol=aiomqtt.ProtocolVersion.V5, clean_start=False,
        properties=_session(),
    )  # fmt: skip
    async with client:
        await client.subscribe("campus/v1/+/+/snapshots/#", qos=1)

        async def collect() -> None:
            async for message in client.messages:
                event_id = str(message.topic).rsplit("/", 1)[-1]
                receiver.pictures[event_id] = bytes(message.payload)  # type: ignore[arg-type]

        task = asyncio.create_task(collect())
        try:
            yield receiver
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _session() -> Any:
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    return props
