"""Turns polls of one Modbus I/O module into observations: debounced contact changes,
analog values and health.

The poller knows nothing about Modbus errors beyond the two the client raises
(``DeviceUnavailable``, ``DeviceProtocolError``) and nothing about zones: it hands
:class:`~gateway.events.observation.InputChanged`,
:class:`~gateway.events.observation.AnalogChanged` and
:class:`~gateway.events.observation.DeviceHealth` to its sink. A module runs its own
loop (:meth:`ModulePoller.run`) or is one unit of a shared line
(:class:`drivers.modbus_io.line_poller.LinePoller` calls :meth:`ModulePoller.poll_once`
and :meth:`ModulePoller.next_start`).
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime

import structlog
from structlog.typing import FilteringBoundLogger

from drivers.modbus_io.client import ModbusLine
from drivers.modbus_io.module import ModbusIoClient
from gateway.config.modbus_profiles import PROFILES, RegisterProfile
from gateway.config.root import ModuleConfig
from gateway.errors import DeviceError, DeviceProtocolError, DeviceUnavailable
from gateway.events.observation import (
    AnalogChanged,
    DeviceHealth,
    HealthState,
    InputChanged,
    ObservationSink,
    utcnow,
)
from gateway.runtime.supervisor import raise_if_cancelling

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

    * One connection (:class:`ModbusIoClient`, on a line of its own or shared), one
      request at a time: polls never overlap; the next poll is due one period after
      the previous one was *due*, and ticks missed by a slow poll are skipped, not
      caught up.
    * ``closed = wire bit XOR (profile.active_low XOR cfg.active_low)``: the
      physical contact state, whatever the module's polarity.
    * Debounce: a value that differs from the last reported one is reported once it
      has been seen for ``debounce_ms`` (per channel from ``debounce_ms``, else
      ``cfg.debounce_ms``; 0 reports at once). Its ``received_at`` is the time of the
      poll that first saw it.
    * The first successful read after start reports every channel with
      ``initial=True``; later changes have ``initial=False``.
    * Analog inputs named in ``analog_channels`` are read in the same poll (one
      more request) and reported as :class:`AnalogChanged` when the raw value moved
      by at least ``analog_deadband`` since the last report (no debounce: the rules
      classify them).
    * Health (``starting``/``online``/``offline``), one :class:`DeviceHealth` per
      transition: ``online`` on a successful read; ``offline`` after
      ``cfg.offline_after`` consecutive failed polls (reason = last error).
    * Breaker: after ``n`` consecutive failed polls the next attempt waits
      ``period * 2**(n-1)`` (jittered down to half of it, never below one period),
      capped at ``backoff_cap_s``, for ever; so a silent unit costs one timeout
      per backoff window, not one per cycle (STYLE.md rule 7). On recovery every
      channel whose state differs from the last reported one is reported at once
      as a normal change (no debounce: the outage already outlasted it), so
      nothing is lost across an outage.
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
        line: the shared line this module is a unit of; None opens its own.
        analog_channels: analog inputs to read and report (none: no AI request).
        analog_deadband: smallest raw change reported (counts of 0..65535).

    Attributes:
        polls: poll attempts (connect + read) since construction.
        failures: failed polls (timeouts, refused connections, bad frames).
        protocol_errors: of those, malformed or refused replies.
        errors: unexpected exceptions caught by the loop (sink failures, bugs).
        last_seen: gateway UTC time of the last successful read, or None.

    Raises:
        ValueError: ``debounce_ms`` or ``analog_channels`` names a channel the
            module does not have, or a negative time.
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
        line: ModbusLine | None = None,
        analog_channels: Collection[int] = (),
        analog_deadband: int = 64,
    ) -> None:
        self.cfg = cfg
        self.profile = profile if profile is not None else PROFILES[cfg.profile]
        self._sink = sink
        self._client = ModbusIoClient(cfg, self.profile, line=line)
        self._analog = sorted(set(analog_channels))
        if any(not 0 <= ch < self.profile.ai_count for ch in self._analog):
            raise ValueError(
                f"{cfg.id}: analog inputs {self._analog}: {self.profile.model} has "
                f"{self.profile.ai_count} analog inputs"
            )
        self._deadband = analog_deadband
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
        self.last_seen: datetime | None = None
        self._consecutive = 0
        self._catch_up = False
        self._bad_frame_logged = False
        n = self.profile.di_count
        self._reported: list[bool | None] = [None] * n
        self._candidates: list[_Candidate | None] = [None] * n
        self._analog_reported: dict[int, int] = {}

    @property
    def health(self) -> HealthState:
        """Current health state."""
        return self._health

    @property
    def failing(self) -> bool:
        """Did the last poll fail (the breaker is counting)?"""
        return self._consecutive > 0

    @property
    def inputs(self) -> list[bool | None]:
        """Last reported contact state per channel (None: not read yet)."""
        return list(self._reported)

    @property
    def analog(self) -> dict[int, int]:
        """Last reported raw value per analog channel read."""
        return dict(self._analog_reported)

    async def run(self) -> None:
        """Poll until cancelled; closes the connection on the way out (if its own)."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                due = loop.time()
                await self.poll_once()
                await asyncio.sleep(self.next_start(due, loop.time()) - loop.time())
        finally:
            await self._client.close()

    async def poll_once(self) -> None:
        """One poll: read, report, update health. Never raises but ``CancelledError``."""
        try:
            await self._poll()
        except asyncio.CancelledError:
            raise
        except Exception:
            self.errors += 1
            self._log.exception("modbus.poller_error", errors=self.errors)
        raise_if_cancelling()

    def next_start(self, due: float, now: float) -> float:
        """Loop time of the next poll, for a poll that was due at ``due`` and ended at
        ``now``: the next free tick, or the breaker's backoff after a failure."""
        if self._consecutive > 0:
            base = min(
                self._backoff_cap, self._period * 2 ** min(self._consecutive - 1, _MAX_DOUBLINGS)
            )
            return now + self._rng.uniform(max(self._period, base / 2), max(self._period, base))
        ticks = max(1, math.ceil((now - due) / self._period))
        return due + ticks * self._period

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
            wire = await self._client.read_inputs() if self.profile.di_count else []
            analog = await self._client.read_analog() if self._analog else []
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
        for channel in self._analog:
            await self._analog_update(channel, analog[channel], seen_at)

    async def _failed(self, exc: DeviceError) -> None:
        self.failures += 1
        self._consecutive += 1
        if self._health != "offline" and self._consecutive >= self.cfg.offline_after:
            self._candidates = [None] * len(self._candidates)
            await self._transition("offline", str(exc))

    async def _succeeded(self, closed: list[bool], seen_at: datetime, since: float) -> None:
        self.last_seen = seen_at
        if self._health != "online":
            self._catch_up = self._health == "offline"
            await self._transition("online", "")
        self._consecutive = 0
        reported = self._reported
        for channel, value in enumerate(closed):
            if value == reported[channel]:  # as reported: no coroutine per quiet input
                self._candidates[channel] = None
            else:
                await self._update(channel, value, seen_at, since)
        self._catch_up = False

    async def _update(self, channel: int, closed: bool, seen_at: datetime, since: float) -> None:
        """A reading that differs from what was last reported (or the first one)."""
        if self._reported[channel] is None:
            await self._report(channel, closed, seen_at, initial=True)
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

    async def _analog_update(self, channel: int, value: int, seen_at: datetime) -> None:
        last = self._analog_reported.get(channel)
        if last is not None and abs(value - last) < self._deadband:
            return
        await self._sink(
            AnalogChanged(
                device_id=self.cfg.id,
                channel=channel,
                value=value,
                received_at=seen_at,
                initial=last is None,
            )
        )
        self._analog_reported[channel] = value

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

    def _debounce_table(self, overrides: Mapping[int, int]) -> list[float]:
        count = self.profile.di_count
        for channel, ms in overrides.items():
            if not 0 <= channel < count or ms < 0:
                raise ValueError(
                    f"{self.cfg.id}: debounce {ms} ms for input {channel}: "
                    f"inputs are 0..{count - 1} and times must be >= 0"
                )
        return [overrides.get(ch, self.cfg.debounce_ms) / 1000 for ch in range(count)]
