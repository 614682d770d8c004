"""Contact change on a simulated module → first delivery at an acking center: latency, CPU, memory.

Real parts: Debian's mosquitto on a free port, a pymodbus ADAM-6050 simulator (in
this process), the gateway as its own process (``campus-gateway run``) polling at
``--poll-ms``, and an acking center in a process of its own
(``bench/acking_center.py``), so alarms are acknowledged and never re-sent.

Method:

1. Wait until the module is online, let the gateway settle, then measure its idle
   CPU (``/proc/<pid>/stat``, utime + stime of every thread) for ``--idle-s``.
2. Toggle one intrusion zone ``--changes`` times on a fixed schedule every
   ``--period-ms``. The period is not a multiple of the poll, so the change's
   phase against the poll sweeps the whole poll period (it moves by
   ``period mod poll`` each change) instead of locking to one lucky or unlucky
   phase.
3. The k-th ``alarm.intrusion`` event (by ``seq``, first deliveries only) belongs
   to the k-th change; latency = its arrival at the center - the change.
   "gateway-added" = arrival (wall clock) - the event's ``time`` (the wall time
   the poll that saw the change started), i.e. poll read → subscriber, at the
   event time's 1 ms resolution.
4. CPU per change above idle = (CPU during the changes - idle rate x their
   wall time) / changes. Peak memory = the gateway's ``VmHWM``.

    .venv/bin/python bench/contact_latency.py --changes 500 --poll-ms 50 --period-ms 213
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

from acking_center import Arrival, CenterProcess  # noqa: E402
from as_installed import dev_only_modules  # noqa: E402

from gateway.config.keys import read_key  # noqa: E402
from gateway.config.modbus_profiles import PROFILES  # noqa: E402
from simulators.broker import MosquittoBroker  # noqa: E402
from simulators.modbus_module import SimulatedModule  # noqa: E402

PREFIX = "campus/v1/bench/gw1"
DEMO_KEY = BENCH.parent / "config" / "demo-center.key"
CONFIG = """
[commands]
hmac_key_file = "{key_file}"
[site]
id = "bench"
gateway = "gw1"
[broker]
host = "127.0.0.1"
port = {broker_port}
[outbox]
path = "{outbox}"
[logging]
level = "warning"
[[modules]]
id = "io"
transport = {{ type = "tcp", host = "127.0.0.1", port = {module_port} }}
profile = "adam-6050"
poll_interval_ms = {poll_ms}
[[zones]]
id = "Z1"
name = "bench zone"
type = "intrusion"
module = "io"
input = 0
contact = "NO"
hold_ms = 0
"""


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process and all its threads (``/proc/<pid>/stat`` fields 14, 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu(pid: int) -> dict[int, float]:
    """utime + stime per thread of a process (``/proc/<pid>/task/<tid>/stat``), in seconds."""
    out: dict[int, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        out[int(task.name)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def memory_kib(pid: int) -> dict[str, int]:
    """``VmHWM`` (peak resident) and ``VmRSS`` of a process, in KiB."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            out[key] = int(value.split()[0])
    return out


def quantiles(values: list[float]) -> str:
    """``p50 … p90 … p99 … max …`` of ``values`` (seconds) in milliseconds."""
    q = statistics.quantiles(values, n=100, method="inclusive")
    return (
        f"p50 {q[49] * 1000:6.1f}  p90 {q[89] * 1000:6.1f}  p99 {q[98] * 1000:6.1f}  "
        f"max {max(values) * 1000:6.1f}  mean {statistics.fmean(values) * 1000:6.1f} ms"
    )


async def wait_for(predicate: object, within: float, what: str) -> None:
    """Poll ``predicate()`` every 20 ms until true; TimeoutError naming ``what``."""
    deadline = time.monotonic() + within
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError(f"not within {within} s: {what}")
        await asyncio.sleep(0.02)


async def run(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-latency-"))
    print(
        f"settings: {args.changes} changes every {args.period_ms} ms, poll {args.poll_ms} ms "
        f"(phase moves {args.period_ms % args.poll_ms} ms per change), idle window "
        f"{args.idle_s:g} s, acking center, load average {os.getloadavg()[0]:.2f} "
        f"on {os.cpu_count()} CPUs"
    )
    if args.period_ms % args.poll_ms == 0:
        print("  warning: the period is a multiple of the poll: the phase will not sweep")
    hidden = [] if args.dev_venv else dev_only_modules()
    print(
        "  gateway: the dev venv as is (--dev-venv)"
        if args.dev_venv
        else f"  gateway: as scripts/install.sh installs it ({len(hidden)} dev-only modules "
        "hidden, rich among them: bench/as_installed.py)"
    )
    async with (
        MosquittoBroker(work / "mosquitto") as broker,
        SimulatedModule(PROFILES["adam-6050"]) as module,
    ):
        center = CenterProcess(
            broker.port,
            PREFIX,
            detail=frozenset({"alarm.intrusion"}),
            key=read_key(DEMO_KEY, "hex", "commands.hmac_key_file"),
        )
        center.start()
        cfg = work / "gateway.toml"
        cfg.write_text(
            CONFIG.format(
                broker_port=broker.port,
                module_port=module.port,
                poll_ms=args.poll_ms,
                outbox=work / "outbox.sqlite",
                key_file=DEMO_KEY,
            )
        )
        log = (work / "gateway.log").open("wb")
        gateway = await asyncio.create_subprocess_exec(
            sys.executable,
            str(BENCH / "as_installed.py"),
            ",".join(hidden),
            "run",
            str(cfg),
            stdout=log,
            stderr=log,
        )
        try:
            # gateway.started and device.online reached the center; the poller runs.
            await wait_for(lambda: center.first >= 2 and module.requests > 20, 60, "online")
            await asyncio.sleep(args.settle_s)
            idle_cpu, idle_wall = cpu_seconds(gateway.pid), time.monotonic()
            idle_threads = thread_cpu(gateway.pid)
            await asyncio.sleep(args.idle_s)
            idle_span = time.monotonic() - idle_wall
            idle_rate = (cpu_seconds(gateway.pid) - idle_cpu) / idle_span
            idle_threads = _delta(idle_threads, thread_cpu(gateway.pid))
            changed_at: list[float] = []
            busy_threads = thread_cpu(gateway.pid)
            cpu_start, t0 = cpu_seconds(gateway.pid), time.monotonic() + 0.1
            for k in range(args.changes):
                target = t0 + k * args.period_ms / 1000
                await asyncio.sleep(max(0.0, target - time.monotonic()))
                changed_at.append(time.monotonic())
                module.set_input(0, closed=k % 2 == 0)
            try:
                await wait_for(lambda: center.detailed >= args.changes, 30, "every change")
            except TimeoutError as exc:  # reported below as a mismatch, with what did arrive
                print(f"  {exc}")
            wall = time.monotonic() - t0
            cpu = cpu_seconds(gateway.pid) - cpu_start
            busy_threads = _delta(busy_threads, thread_cpu(gateway.pid))
            mem = memory_kib(gateway.pid)
        finally:
            report = center.stop()
            gateway.terminate()
            await gateway.wait()
            log.close()
    arrivals = sorted(report.arrivals, key=lambda a: a.seq or 0)
    summarize(args, arrivals, changed_at, cpu, wall, idle_rate, mem, report.dups)
    print("  per thread, ms per change above idle (tid; the main thread's tid is the pid):")
    for tid, busy in sorted(busy_threads.items(), key=lambda kv: -kv[1]):
        idle = idle_threads.get(tid, 0.0) / idle_span * wall
        print(
            f"    {tid}{' (main)' if tid == gateway.pid else ''}: "
            f"{(busy - idle) / args.changes * 1000:.2f}"
        )


def _delta(before: dict[int, float], after: dict[int, float]) -> dict[int, float]:
    return {tid: t - before.get(tid, 0.0) for tid, t in after.items()}


def summarize(
    args: argparse.Namespace,
    arrivals: list[Arrival],
    changed_at: list[float],
    cpu: float,
    wall: float,
    idle_rate: float,
    mem: dict[str, int],
    dups: int,
) -> None:
    if len(arrivals) != len(changed_at):
        print(f"  MISMATCH: {len(changed_at)} changes but {len(arrivals)} intrusion events")
    latencies, added, wrong = [], [], 0
    for k, (arrival, at) in enumerate(zip(arrivals, changed_at, strict=False)):
        if arrival.state != ("active" if k % 2 == 0 else "cleared"):
            wrong += 1
        latencies.append(arrival.mono - at)
        stamped = datetime.fromisoformat(arrival.time.replace("Z", "+00:00")).timestamp()
        added.append(arrival.wall - stamped)
    print(f"contact change -> first delivery at the center ({len(latencies)} changes)")
    print(f"  latency:              {quantiles(latencies)}")
    print(f"  gateway-added (poll read -> center): {quantiles(added)}")
    print(f"  polling floor alone: p99 {0.99 * args.poll_ms:.1f} ms (a change waits for the poll)")
    above = cpu - idle_rate * wall
    print(
        f"  gateway CPU: {cpu / len(changed_at) * 1000:.2f} ms per change in all, "
        f"{above / len(changed_at) * 1000:.2f} ms per change above idle; "
        f"idle {idle_rate * 100:.2f} % of one core"
    )
    print(
        f"  gateway memory: peak (VmHWM) {mem.get('VmHWM', 0) / 1024:.1f} MiB, "
        f"now (VmRSS) {mem.get('VmRSS', 0) / 1024:.1f} MiB"
    )
    print(f"  re-deliveries seen by the center: {dups}; events out of order/state: {wrong}")
    print(f"  load average after: {os.getloadavg()[0]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=500)
    parser.add_argument("--poll-ms", type=int, default=50)
    parser.add_argument("--period-ms", type=int, default=213, help="not a multiple of the poll")
    parser.add_argument("--idle-s", type=float, default=10.0)
    parser.add_argument("--settle-s", type=float, default=3.0)
    parser.add_argument(
        "--dev-venv", action="store_true", help="keep the dev tools importable (rich: +4.6 MiB)"
    )
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
