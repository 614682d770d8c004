"""Eight units behind one TCP-to-RTU converter: the seven healthy units' detection
latency, with all eight answering and with one unit silent.

Real parts, in this process: a simulated converter (``simulators/modbus_line.py``,
pymodbus server, Modbus TCP in, one RTU bus out) with eight units, and the gateway's
own line poller (``drivers/modbus_io/line_poller.py``) on one shared connection.

Method: two runs, the same but for unit 5. In the second run unit 5 is silent and
the converter answers nothing for it (``gateway_exceptions`` off: the worst case,
the master's own timeout is the cost). In each run every healthy unit gets
``--changes`` contact changes on input 0 at a random moment (uniform within each
``--period-ms`` step, so the phase against the poll sweeps; a unit's changes
are at least half a step apart, more than two polls). Latency = the moment
the line poller hands the change to its sink - the moment the simulator's input
changed (both on this process' monotonic clock). A change that never arrives is
counted as lost. The converter's accepted connections are counted (1 = never
reopened).

    .venv/bin/python bench/silent_unit.py --changes 200 --poll-ms 100 --timeout-ms 100
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from drivers.modbus_io.line_poller import build_lines
from gateway.config.modbus_profiles import PROFILES
from gateway.config.root import ModuleConfig
from gateway.events.observation import InputChanged, Observation
from simulators.modbus_line import SimulatedLine
from simulators.modbus_module import SimulatedModule

UNITS = 8
SILENT = 5


class _Sink:
    """Keeps the monotonic arrival time of every non-initial input change."""

    def __init__(self) -> None:
        self.arrivals: dict[int, list[tuple[float, bool]]] = {}

    async def __call__(self, observation: Observation) -> None:
        if isinstance(observation, InputChanged) and not observation.initial:
            unit = int(observation.device_id[1:])
            self.arrivals.setdefault(unit, []).append((time.monotonic(), observation.closed))


async def _run(args: argparse.Namespace, silent: bool) -> tuple[list[float], int, int]:
    """One run; returns (latencies in ms, changes lost, converter connections)."""
    units = {u: SimulatedModule(PROFILES["adam-4150"]) for u in range(1, UNITS + 1)}
    sink = _Sink()
    async with SimulatedLine(
        units, converter_timeout_s=args.converter_ms / 1000, gateway_exceptions=False
    ) as sim:
        modules = [
            ModuleConfig.model_validate(
                {
                    "id": f"u{u}",
                    "transport": {"type": "tcp", "host": "127.0.0.1", "port": sim.port},
                    "profile": "adam-4150",
                    "unit": u,
                    "poll_interval_ms": args.poll_ms,
                    "timeout_ms": args.timeout_ms,
                    "offline_after": 2,
                }
            )
            for u in units
        ]
        (line,) = build_lines(modules, sink)
        task = asyncio.create_task(line.run(), name="line[bench]")
        try:
            await asyncio.sleep(1.0)  # every unit read once, the breakers settled
            if silent:
                units[SILENT].silent = True
                await asyncio.sleep(1.0)
            healthy = [u for u in units if not (silent and u == SILENT)]
            changed: dict[int, list[tuple[float, bool]]] = {u: [] for u in healthy}
            rng = random.Random(11)
            step = args.period_ms / 1000
            for _ in range(args.changes):
                offsets = sorted((rng.uniform(0, step / 2), u) for u in healthy)
                begun = time.monotonic()
                for offset, unit in offsets:
                    await asyncio.sleep(max(0.0, begun + offset - time.monotonic()))
                    now_closed = not units[unit].inputs[0]
                    units[unit].set_input(0, now_closed)
                    changed[unit].append((time.monotonic(), now_closed))
                await asyncio.sleep(max(0.0, begun + step - time.monotonic()))
            await asyncio.sleep(2.0)  # the last changes' polls
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        latencies: list[float] = []
        lost = 0
        for unit, changes in changed.items():
            arrivals = sink.arrivals.get(unit, [])
            lost += len(changes) - len(arrivals)
            for (at, closed), (seen, seen_closed) in zip(changes, arrivals, strict=False):
                if closed != seen_closed:
                    lost += 1
                    continue
                latencies.append((seen - at) * 1000)
        return latencies, lost, sim.connections


def _quantiles(values: list[float]) -> str:
    if len(values) < 2:
        return "n/a"
    q = statistics.quantiles(values, n=100)
    mean = statistics.fmean(values)
    return f"mean {mean:.1f} ms, p50 {q[49]:.1f} ms, p99 {q[98]:.1f} ms, max {max(values):.1f} ms"


async def main(args: argparse.Namespace) -> None:
    print(
        f"{UNITS} units behind a converter, poll {args.poll_ms} ms, timeout {args.timeout_ms} ms, "
        f"converter waits {args.converter_ms} ms, {args.changes} changes per healthy unit"
    )
    healthy = await _run(args, silent=False)
    one_silent = await _run(args, silent=True)
    for name, (latencies, lost, connections) in (
        ("all eight answer", healthy),
        (f"unit {SILENT} silent", one_silent),
    ):
        print(f"  {name:18} {_quantiles(latencies)}; lost {lost}; connections {connections}")
    p99 = [statistics.quantiles(r[0], n=100)[98] for r in (healthy, one_silent)]
    print(f"  p99 ratio silent/healthy: {p99[1] / p99[0]:.2f}")
    print(f"  load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # its per-timeout errors
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=100)
    parser.add_argument("--poll-ms", type=int, default=100)
    parser.add_argument("--timeout-ms", type=int, default=100)
    parser.add_argument("--converter-ms", type=int, default=80)
    parser.add_argument("--period-ms", type=int, default=450)
    asyncio.run(main(parser.parse_args()))
