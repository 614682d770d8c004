"""Turns polls of one Modbus DI module into observations: debounced contact changes and health.

The poller knows nothing about Modbus errors beyond the two the client raises
(``DeviceUnavailable``, ``DeviceProtocolError``) and nothing about zones: it hands
:class:`~gateway.observation.InputChanged` and :class:`~gateway.observation.DeviceHealth`
to its sink.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import structlog
from structlog.typing import FilteringBoundLogger

from drivers.modbus_io.client import ModbusIoClient
from drivers.modbus_io.profiles import PROFILES, RegisterProfile
from gateway.config import ModuleConfig
from gateway.errors import DeviceError, DeviceProtocolError, DeviceUnavailable
from gateway.observation import (
    DeviceHealth,
    HealthState,
    InputChanged,
    ObservationSink,
    utcnow,
)

_MAX_DOUBLINGS = 30


@dataclass(frozen=True, slots=True)
class _Candidate:
    """A value seen on a channel that differs from the reported one, not yet stable."""

    closed: bool
    seen_at: datetime  # gateway UTC time of the poll that first saw it
    since: float  # loop time (monotonic seconds) of that poll


class ModulePoller:
    """Polls one module for the life of the daemon; ``await poller.run()`` (cancel to stop).

    Behaviour:

    * One connection (:class:`ModbusIoClient`), one request at a time: polls never
      overlap; the next poll starts one period after the previous one *started*,
      and ticks missed by a slow poll are skipped, not caught up.
    * ``closed = wire bit XOR (profile.active_low XOR cfg.active_low)``: the
      physical contact state, whatever the module's polarity.
    * Debounce: a value that differs from the last reported one is reported once it
      has been seen for ``debounce_ms`` (per channel from ``debounce_ms``, else
      ``cfg.debounce_ms``; 0 reports at once). Its ``received_at`` is the time of the
      poll that first saw it.
    * The first successful read after start reports every channel with
      ``initial=True``; later changes have ``initial=False``.
    * Health (``starting``/``online``/``offline``), one :class:`DeviceHealth` per
      transition: ``online`` on a successful read; ``offline`` after
      ``cfg.offline_after`` consecutive failed polls (reason = last error). Failed
      polls before that are retried at the poll period; while offline, retries back
      off exponentially with jitter from the poll period up to ``backoff_cap_s``,
      for ever. On recovery every channel whose state differs from the last
      reported one is reported at once as a normal change (no debounce: the outage
      already outlasted it), so nothing is lost across an outage.
    * A malformed reply (``DeviceProtocolError``) is a failed poll; the first one is
      logged with its raw frame as hex, every one is counted.
    * Any other exception (a failing sink, a bug) is logged and counted and the
      loop goes on; only ``CancelledError`` leaves :meth:`run`. An observation the
      sink failed to take is offered again on the next poll.

    Args:
        cfg: the module's configuration.
        sink: where observations go (awaited, in order).
        debounce_ms: per-channel debounce in milliseconds, overriding
            ``cfg.debounce_ms`` (from the zones wired to this module).
        logger: a structlog logger; ``device_id`` is bound to it.
        profile: register profile; defaults to ``PROFILES[cfg.profile]`` (a bench
            or a test may pass a board of its own).
        backoff_cap_s: longest wait between retries while offline (seconds).

    Attributes:
        polls: poll attempts (connect + read) since construction.
        failures: failed polls (timeouts, refused connections, bad frames).
        protocol_errors: of those, malformed or refused replies.
        errors: unexpected exceptions caught by the loop (sink failures, bugs).

    Raises:
        ValueError: ``debounce_ms`` names a channel the module does not have, or a
            negative time.
    """

    def __init__(
        self,
        cfg: ModuleConfig,
        sink: ObservationSink,
        *,
        debounce_ms: Mapping[int, int] | None = None,
        logger: FilteringBoundLogger | None = None,
        profile: RegisterProfile | None = None,
        backoff_cap_s: float = 5.0,
    ) -> None:
        self.cfg = cfg
        self.profile = profile if profile is not None else PROFILES[cfg.profile]
        self._sink = sink
        self._client = ModbusIoClient(cfg, self.profile)
        self._invert = self.profile.active_low != cfg.active_low
        self._debounce_s = self._debounce_table(debounce_ms or {})
        self._log: FilteringBoundLogger = (
            logger if logger is not None else structlog.get_logger(__name__)
        ).bind(device_id=cfg.id)
        self._period = cfg.poll_interval_ms / 1000
        self._backoff_cap = max(backoff_cap_s, self._period)
        self._rng = random.Random()
        self.polls = 0
        self.failures = 0
        self.protocol_errors = 0
        self.errors = 0
        self._health: HealthState = "starting"
        self._consecutive = 0
        self._doublings = 0
        self._catch_up = False
        self._bad_frame_logged = False
        n = self.profile.di_count
        self._reported: list[bool | None] = [None] * n
        self._candidates: list[_Candidate | None] = [None] * n

    @property
    def health(self) -> HealthState:
        """Current health state."""
        return self._health

    @property
    def inputs(self) -> list[bool | None]:
        """Last reported contact state per channel (None: not read yet)."""
        return list(self._reported)

    async def run(self) -> None:
        """Poll until cancelled; closes the connection on the way out."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                started = loop.time()
                try:
                    await self._poll()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    self.errors += 1
                    self._log.exception("modbus.poller_error", errors=self.errors)
                await asyncio.sleep(self._next_start(started, loop.time()) - loop.time())
        finally:
            await self._client.close()

    async def write_output(self, channel: int, on: bool) -> None:
        """Switch output ``channel`` through the poller's connection, between polls.

        Raises:
            ValueError: the module has no such output.
            DeviceUnavailable: the module cannot be reached.
            DeviceProtocolError: the module refused or garbled the write.
        """
        await self._client.write_output(channel, on)

    # -- one poll ----------------------------------------------------------------

    async def _poll(self) -> None:
        loop = asyncio.get_running_loop()
        self.polls += 1
        seen_at, since = utcnow(), loop.time()
        try:
            wire = await self._client.read_inputs()
        except DeviceProtocolError as exc:
            self.protocol_errors += 1
            if not self._bad_frame_logged:
                self._bad_frame_logged = True
                self._log.warning("modbus.bad_frame", error=str(exc), raw=exc.raw)
            await self._failed(exc)
            return
        except DeviceUnavailable as exc:
            await self._failed(exc)
            return
        await self._succeeded([bit != self._invert for bit in wire], seen_at, since)

    async def _failed(self, exc: DeviceError) -> None:
        self.failures += 1
        self._consecutive += 1
        if self._health != "offline" and self._consecutive >= self.cfg.offline_after:
            self._candidates = [None] * len(self._candidates)
            await self._transition("offline", str(exc))

    async def _succeeded(self, closed: list[bool], seen_at: datetime, since: float) -> None:
        if self._health != "online":
            self._catch_up = self._health == "offline"
            await self._transition("online", "")
        self._consecutive = 0
        for channel, value in enumerate(closed):
            await self._update(channel, value, seen_at, since)
        self._catch_up = False

    async def _update(self, channel: int, closed: bool, seen_at: datetime, since: float) -> None:
        last = self._reported[channel]
        if last is None:
            await self._report(channel, closed, seen_at, initial=True)
            return
        if closed == last:
            self._candidates[channel] = None
            return
        candidate = self._candidates[channel]
        if candidate is None or candidate.closed != closed:
            candidate = self._candidates[channel] = _Candidate(closed, seen_at, since)
        if self._catch_up or since - candidate.since >= self._debounce_s[channel]:
            await self._report(channel, closed, candidate.seen_at, initial=False)

    async def _report(
        self, channel: int, closed: bool, seen_at: datetime, *, initial: bool
    ) -> None:
        await self._sink(
            InputChanged(
                device_id=self.cfg.id,
                channel=channel,
                closed=closed,
                received_at=seen_at,
                initial=initial,
            )
        )
        self._reported[channel] = closed
        self._candidates[channel] = None

    async def _transition(self, state: HealthState, reason: str) -> None:
        previous = self._health
        await self._sink(
            DeviceHealth(
                device_id=self.cfg.id,
                state=state,
                previous=previous,
                reason=reason,
                failures=self._consecutive,
            )
        )
        self._health = state
        log = self._log.warning if state == "offline" else self._log.info
        log(
            "modbus.health",
            state=state,
            previous=previous,
            reason=reason,
            failures=self._consecutive,
        )

    # -- timing -----------------------------------------------------------------------

    def _next_start(self, started: float, now: float) -> float:
        """Loop time of the next poll: the next tick, or a backoff delay while offline."""
        if self._health == "offline":
            base = min(self._backoff_cap, self._period * 2 ** min(self._doublings, _MAX_DOUBLINGS))
            self._doublings += 1
            return now + self._rng.uniform(base / 2, base)
        self._doublings = 0
        ticks = max(1, math.ceil((now - started) / self._period))
        return started + ticks * self._period

    def _debounce_table(self, overrides: Mapping[int, int]) -> list[float]:
        count = self.profile.di_count
        for channel, ms in overrides.items():
            if not 0 <= channel < count or ms < 0:
                raise ValueError(
                    f"{self.cfg.id}: debounce {ms} ms for input {channel}: "
                    f"inputs are 0..{count - 1} and times must be >= 0"
                )
        return [overrides.get(ch, self.cfg.debounce_ms) / 1000 for ch in range(count)]
