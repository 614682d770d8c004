"""Helpers shared by the ``test_modbus_*`` files: configs, a recording sink, a running
poller, a linked pty pair for Modbus RTU. Real sockets and serial lines, no mocks."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tty
from collections.abc import AsyncIterator, Callable
from typing import Any

from drivers.modbus_io.poller import ModulePoller
from gateway.config.root import ModuleConfig
from gateway.events.observation import DeviceHealth, InputChanged, Observation
from tests.helpers import free_port

__all__ = [
    "PtyLink",
    "Recorder",
    "change",
    "free_port",
    "health",
    "running",
    "tcp_module",
]


def tcp_module(
    module_id: str, port: int, *, profile: str = "adam-6050", **fields: Any
) -> ModuleConfig:
    """A validated module config on 127.0.0.1:``port`` with fast test timings."""
    raw: dict[str, Any] = {
        "id": module_id,
        "transport": {"type": "tcp", "host": "127.0.0.1", "port": port},
        "profile": profile,
        "poll_interval_ms": 20,
        "timeout_ms": 150,
        "offline_after": 2,
    }
    raw.update(fields)
    return ModuleConfig.model_validate(raw)


class Recorder:
    """An ObservationSink that keeps everything and lets a test wait for it."""

    def __init__(self) -> None:
        self.seen: list[Observation] = []
        self._changed = asyncio.Condition()

    async def __call__(self, observation: Observation) -> None:
        async with self._changed:
            self.seen.append(observation)
            self._changed.notify_all()

    def inputs(self, device_id: str | None = None) -> list[InputChanged]:
        """Every InputChanged so far (of one device if given)."""
        return [
            o for o in self.seen if isinstance(o, InputChanged) and device_id in (None, o.device_id)
        ]

    def health(self, device_id: str | None = None) -> list[DeviceHealth]:
        """Every DeviceHealth so far (of one device if given)."""
        return [
            o for o in self.seen if isinstance(o, DeviceHealth) and device_id in (None, o.device_id)
        ]

    async def wait_for(
        self, predicate: Callable[[Observation], bool], within: float = 3.0
    ) -> Observation:
        """The first observation (already seen or still to come) that matches, within
        ``within`` seconds (TimeoutError otherwise)."""
        async with asyncio.timeout(within), self._changed:
            while True:
                for observation in self.seen:
                    if predicate(observation):
                        return observation
                await self._changed.wait()


def change(device_id: str, channel: int, closed: bool) -> Callable[[Observation], bool]:
    """Predicate: a non-initial InputChanged of this channel to this state."""
    return lambda o: (
        isinstance(o, InputChanged)
        and not o.initial
        and (o.device_id, o.channel, o.closed) == (device_id, channel, closed)
    )


def health(device_id: str, state: str) -> Callable[[Observation], bool]:
    """Predicate: a DeviceHealth transition of this device to this state."""
    return lambda o: isinstance(o, DeviceHealth) and (o.device_id, o.state) == (device_id, state)


@contextlib.asynccontextmanager
async def running(poller: ModulePoller) -> AsyncIterator[ModulePoller]:
    """Run ``poller`` as a task for the block; fail if it ended on its own."""
    task = asyncio.create_task(poller.run(), name=f"poller[{poller.cfg.id}]")
    try:
        yield poller
        assert not task.done(), f"poller task ended: {task}"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class PtyLink:
    """Two pseudo-terminals wired back to back: a null-modem cable for Modbus RTU.

    Bytes written to :attr:`a` come out of :attr:`b` and back (the masters are
    pumped by the event loop). Use as ``with PtyLink() as link:`` inside a loop.
    """

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._master_a, slave_a = os.openpty()
        self._master_b, slave_b = os.openpty()
        self._slaves = (slave_a, slave_b)
        for fd in self._slaves:
            tty.setraw(fd)
        self.a, self.b = os.ttyname(slave_a), os.ttyname(slave_b)
        for src, dst in ((self._master_a, self._master_b), (self._master_b, self._master_a)):
            os.set_blocking(src, False)
            self._loop.add_reader(src, self._pump, src, dst)

    def _pump(self, src: int, dst: int) -> None:
        with contextlib.suppress(OSError):
            os.write(dst, os.read(src, 4096))

    def close(self) -> None:
        """Stop pumping and close all four ends."""
        for fd in (self._master_a, self._master_b):
            self._loop.remove_reader(fd)
        for fd in (self._master_a, self._master_b, *self._slaves):
            os.close(fd)

    def __enter__(self) -> PtyLink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
