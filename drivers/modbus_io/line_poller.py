"""Polls every module of one physical line through one shared connection.

A physical line is a serial port with several RS-485 units, one TCP-to-RTU
converter with several units behind it, or a Modbus TCP module of its own (a
line of one). Its units take turns on one :class:`~drivers.modbus_io.client.ModbusLine`
(one lock, so polls and output writes never overlap on the wire), each at its
own period, earliest due first. Each unit keeps its own breaker
(:meth:`ModulePoller.next_start`): a silent unit costs one timeout per backoff
window, so the others keep their period (STYLE.md rule 7).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Mapping, Sequence

from drivers.modbus_io.client import ModbusLine
from drivers.modbus_io.poller import ModulePoller
from gateway.config.alarm_checks import line_key
from gateway.config.root import ModuleConfig
from gateway.events.observation import ObservationSink


class LinePoller:
    """Runs the polls of every unit on one line; ``await line_poller.run()`` (cancel to stop).

    Polls are served earliest-due first, except that right after a failed poll the
    unit that answered last goes first; the units' first polls are spread over the
    shortest period so they do not all queue at once. A unit whose poll is late
    because another held the line keeps its own schedule (the next poll is due one
    period after the last was *due*).

    Args:
        name: the line's name (task names, logs): the module id for a line of one.
        line: the shared connection; closed when :meth:`run` ends.
        pollers: one per unit, each built with ``line=line``.
    """

    def __init__(self, name: str, line: ModbusLine, pollers: Sequence[ModulePoller]) -> None:
        self.name = name
        self.line = line
        self.pollers = list(pollers)
        self._answered_at = [0.0] * len(self.pollers)  # loop time of each unit's last answer
        self._after_failure = False

    async def run(self) -> None:
        """Poll until cancelled; closes the line on the way out."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        shortest = min(p.cfg.poll_interval_ms for p in self.pollers) / 1000
        due = [start + i * shortest / len(self.pollers) for i in range(len(self.pollers))]
        try:
            while True:
                index = self._next(due, loop.time())
                delay = due[index] - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                poller = self.pollers[index]
                await poller.poll_once()
                self._after_failure = poller.failing
                if not poller.failing:
                    self._answered_at[index] = loop.time()
                due[index] = poller.next_start(due[index], loop.time())
        finally:
            await self.line.close()

    def _next(self, due: Sequence[float], now: float) -> int:
        """The unit to poll next: the earliest due, except right after a failed poll,
        when of those due the unit that answered last goes first.

        A failing unit's attempt can hold a converter's line for a second
        (``converter_timeout_ms``): its healthy neighbours' panics must not wait for two
        such attempts in a row, not even when two neighbours fall silent at once (a
        review of 2026-12-06: 18 s). Only that one turn is given out of order: a unit
        always preferred to a failing one starved the failing one on a busy line (a
        later review: a unit back from a short silence never polled again)."""
        ready = [i for i, at in enumerate(due) if at <= now]
        if self._after_failure and ready:
            return max(ready, key=lambda i: (not self.pollers[i].failing, self._answered_at[i]))
        return min(range(len(due)), key=due.__getitem__)


def build_lines(
    modules: Sequence[ModuleConfig],
    sink: ObservationSink,
    *,
    debounce_ms: Callable[[str], Mapping[int, int]] = lambda _: {},
    analog_channels: Callable[[str], Collection[int]] = lambda _: (),
) -> list[LinePoller]:
    """One :class:`LinePoller` per physical line of ``modules`` (grouped by transport).

    Args:
        modules: ``[[modules]]`` in file order; modules on one line must agree on
            transport settings and ``timeout_ms`` (the config checks it).
        sink: where every poller's observations go.
        debounce_ms: module id → per-channel debounce (milliseconds).
        analog_channels: module id → analog channels to read.

    Returns:
        The line pollers, in order of each line's first module.
    """
    groups: dict[tuple[str, ...], list[ModuleConfig]] = {}
    for module in modules:
        groups.setdefault(line_key(module.transport), []).append(module)
    lines: list[LinePoller] = []
    for members in groups.values():
        first = members[0]
        name = first.id if len(members) == 1 else "line:" + "+".join(m.id for m in members)
        line = ModbusLine(
            first.transport,
            timeout_ms=first.timeout_ms,
            name=name,
            units=len(members),
            converter_timeout_ms=first.converter_timeout_ms,
        )
        pollers = [
            ModulePoller(
                m,
                sink,
                debounce_ms=debounce_ms(m.id),
                line=line,
                analog_channels=analog_channels(m.id),
            )
            for m in members
        ]
        lines.append(LinePoller(name, line, pollers))
    return lines
