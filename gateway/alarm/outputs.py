"""Outputs: sirens, strobes and relays on module coils, and the rules that drive them.

Local actuation needs nothing but the module: an alarm in a linked zone switches
the output on for its ``duration_s`` whether the uplink is up or not (DESIGN.md:
linkage is a rule, not a center function). The desired state is the truth here;
the coil is made to follow it:

* a write that fails (module offline, bad frame) is retried every
  ``retry_s`` seconds for as long as the desired state differs from the coil's;
* when a module comes online (after a power cycle its relays are off; at a start
  they may have been left on) every output on it is written again;
* ``output.switched`` ``active``/``cleared`` is reported when the module has
  confirmed the write (with the ``incident`` of its switching on).

An alarm while the output is already on extends it to the later end; ``ack``
and ``disarm`` silence it early; the ``output`` command drives it by hand.
Durations and retries run on the monotonic clock (:meth:`Timers.set_after`): a
step of the wall clock neither cuts a siren short nor keeps it sounding; the
wall ``until`` is only what events and ``get_state`` show.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog

from gateway.config.alarm import OutputConfig, ZoneConfig
from gateway.config.root import GatewayConfig
from gateway.errors import CommandRefused, GatewayError
from gateway.events.model import Emit, Event, EventFactory, rfc3339
from gateway.runtime.timebase import Clock, Timers

log = structlog.get_logger(__name__)

Writer = Callable[[str, int, bool], Awaitable[None]]
"""(module id, channel, on) -> the coil is switched; raises GatewayError when it is not."""


@dataclass(slots=True)
class OutputState:
    """One output's desired and confirmed state.

    Attributes:
        desired: what the rules want now.
        confirmed: what the module last confirmed (None: never written, or to be
            written again).
        reported: the state last reported in an ``output.switched`` event.
        until: when it switches off by itself, as a wall time for reports (None:
            stays as it is).
        until_mono: the same end on the clock's monotonic seconds (what counts).
        reason: why it is in its desired state.
        incident: id of its last ``output.switched`` ``active`` event.
        failures: writes that failed since the last confirmed one.
    """

    desired: bool = False
    confirmed: bool | None = None
    reported: bool = False
    until: datetime | None = None
    until_mono: float | None = None
    reason: str = ""
    incident: str | None = None
    failures: int = 0


class Outputs:
    """The outputs of one gateway.

    Args:
        cfg: the gateway config (outputs, zones).
        factory, emit: make and store ``output.switched`` events.
        writer: switches a module's coil (through the module's own connection).
        timers: runs the duration and retry timers.
        clock: the rules' time.
        retry_s: seconds between attempts of a write that failed.
    """

    def __init__(
        self,
        cfg: GatewayConfig,
        factory: EventFactory,
        emit: Emit,
        writer: Writer,
        *,
        timers: Timers,
        clock: Clock,
        retry_s: float = 1.0,
    ) -> None:
        self.config: dict[str, OutputConfig] = {o.id: o for o in cfg.outputs}
        self.states: dict[str, OutputState] = {o.id: OutputState() for o in cfg.outputs}
        self._factory = factory
        self._emit = emit
        self._writer = writer
        self._timers = timers
        self._clock = clock
        self._retry_s = retry_s

    def linked(self, zone: ZoneConfig) -> list[str]:
        """Ids of the outputs an alarm in ``zone`` switches on."""
        return [
            o.id
            for o in self.config.values()
            if zone.id in o.zones
            or (zone.area is not None and zone.area in o.areas)
            or zone.type in o.zone_types
        ]

    async def on_alarm(self, zone: ZoneConfig, event: Event) -> None:
        """An alarm became active in ``zone``: sound its outputs for their duration.

        The writes are left to the timers' task, at once: the poll that saw the
        alarm goes on without waiting for a module that may be slow to answer.
        """
        for output_id in self.linked(zone):
            duration = self.config[output_id].duration_s
            self._desire(output_id, True, duration, f"alarm {zone.id}")
            self._timers.set_after(f"output-retry:{output_id}", 0.0, self._retry_write)

    async def switch(
        self, output_id: str, on: bool, *, duration_s: float | None = None, reason: str
    ) -> bool:
        """Set the desired state of an output and write it now.

        ``duration_s`` (with ``on``) switches it off again after that many seconds;
        a longer end already set is kept.

        Returns:
            True when the module confirmed the write; False when it failed and is
            being retried.

        Raises:
            CommandRefused: no such output.
        """
        if output_id not in self.config:
            raise CommandRefused(f"no output {output_id!r}", command="output", reason="invalid")
        self._desire(output_id, on, duration_s, reason)
        return await self._apply(output_id)

    def _desire(self, output_id: str, on: bool, duration_s: float | None, reason: str) -> None:
        """Record the desired state and its end (a longer end already set is kept)."""
        state = self.states[output_id]
        mono = self._clock.monotonic()
        end = mono + duration_s if on and duration_s is not None else None
        if on and state.desired and state.until_mono is not None and end is not None:
            end = max(end, state.until_mono)
        state.desired, state.until_mono, state.reason = on, end, reason
        state.until = None if end is None else self._clock.now() + timedelta(seconds=end - mono)
        self._timers.cancel(f"output-off:{output_id}")
        if end is not None:
            self._timers.set_after(f"output-off:{output_id}", end - mono, self._off(output_id))

    async def silence(self, output_ids: list[str], reason: str) -> list[str]:
        """Switch off those of ``output_ids`` that are on; returns the ones switched."""
        silenced = [o for o in output_ids if self.states[o].desired]
        for output_id in silenced:
            await self.switch(output_id, False, reason=reason)
        return silenced

    async def release(self, reason: str) -> None:
        """Switch off, side by side, every output that is on or whose coil may be: on,
        a switch-off not yet confirmed, or never written since the start. For a clean
        stop (``Gateway.release_outputs``): one after the other, outputs on a module
        that does not answer used the stop's time up and a healthy module's siren
        stayed on (a review of 2026-12-06). Writes to one line still take turns on
        its connection; a write that fails is logged and left."""
        todo = [o for o, st in self.states.items() if st.desired or st.confirmed is not False]
        for output_id in todo:
            self._desire(output_id, False, None, reason)
        await asyncio.gather(*(self._apply(o) for o in todo))

    async def device_online(self, module_id: str) -> None:
        """A module came online: write every output on it (relays reset at power-on).

        The first time after a start that includes outputs never written: a siren a
        killed or stopped process left sounding is switched off (its coil keeps its
        state; a review of 2026-12-05 heard one for six minutes, across restarts).
        Nothing is reported for that: ``gateway.started`` ends every output, as
        ``docs/center-protocol.md`` says.
        """
        for output_id, output in self.config.items():
            if output.module == module_id:
                self.states[output_id].confirmed = None
                await self._apply(output_id)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Every output's state for ``get_state`` (JSON-ready)."""
        return {
            output_id: {
                "kind": self.config[output_id].kind,
                "on": state.desired,
                "confirmed": state.confirmed == state.desired,
                "until": rfc3339(state.until) if state.until else None,
                "reason": state.reason,
            }
            for output_id, state in self.states.items()
        }

    def _off(self, output_id: str) -> Callable[[datetime], Awaitable[None]]:
        async def off(_due: datetime) -> None:
            await self.switch(output_id, False, reason="duration over")

        return off

    async def _apply(self, output_id: str) -> bool:
        """Write the desired state unless the module has it; report a confirmed change
        (not a re-write of a state already reported)."""
        output, state = self.config[output_id], self.states[output_id]
        if state.confirmed == state.desired:
            return True
        wanted = state.desired
        try:
            await self._writer(output.module, output.channel, wanted)
        except GatewayError as exc:
            state.failures += 1
            log.warning(
                "output.write_failed", output=output_id, on=wanted, error=str(exc), n=state.failures
            )
            self._timers.set_after(f"output-retry:{output_id}", self._retry_s, self._retry_write)
            return False
        state.confirmed, state.failures = wanted, 0
        self._timers.cancel(f"output-retry:{output_id}")
        if state.reported != wanted:
            state.reported = wanted
            await self._report(output, state, wanted)
        return state.desired == wanted

    async def _retry_write(self, _due: datetime) -> None:
        """Write again every output the module has not confirmed."""
        for output_id, state in self.states.items():
            if state.confirmed != state.desired:
                await self._apply(output_id)

    async def _report(self, output: OutputConfig, state: OutputState, on: bool) -> None:
        event = self._factory.make(
            "output.switched",
            device=output.module,
            subject=output.id,
            state="active" if on else "cleared",
            data={
                "name": output.name,
                "location": output.location,
                "kind": output.kind,
                "module": output.module,
                "channel": output.channel,
                "reason": state.reason,
                "until": rfc3339(state.until) if state.until else None,
            },
            received_at=self._clock.now(),
            incident=None if on else state.incident,
            opens_incident=on,
        )
        await self._emit(event)
        state.incident = event.id if on else None
        log.info("output.switched", output=output.id, on=on, reason=state.reason)
