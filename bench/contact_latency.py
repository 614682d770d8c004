"""Contact change on a simulated module → event at an MQTT subscriber: latency and CPU.

Runs real parts: Debian's mosquitto on a free port, a pymodbus ADAM-6050 simulator,
and the gateway as its own process (``campus-gateway run``), polling at
``--poll-ms``. An intrusion zone is toggled ``--changes`` times; each change waits
for its event (``active`` / ``cleared``) before the next, after a random pause so
changes fall anywhere in the poll period. Prints p50/p90/p99/max latency and the
gateway process's CPU time per event (and its idle CPU per second, which is the
polling cost alone).

    .venv/bin/python bench/contact_latency.py --changes 1000 --poll-ms 50
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiomqtt

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gateway.config.modbus_profiles import PROFILES  # noqa: E402
from simulators.broker import MosquittoBroker  # noqa: E402
from simulators.modbus_module import SimulatedModule  # noqa: E402

CONFIG = """
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
"""


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds (``/proc/<pid>/stat`` fields 14, 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def main(changes: int, poll_ms: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-latency-"))
    async with (
        MosquittoBroker(work / "mosquitto") as broker,
        SimulatedModule(PROFILES["adam-6050"]) as module,
    ):
        cfg = work / "gateway.toml"
        cfg.write_text(
            CONFIG.format(
                broker_port=broker.port,
                module_port=module.port,
                poll_ms=poll_ms,
                outbox=work / "outbox.sqlite",
            )
        )
        log = (work / "gateway.log").open("wb")
        gateway = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway.cli", "run", str(cfg), stdout=log, stderr=log
        )
        arrivals: asyncio.Queue[tuple[float, dict]] = asyncio.Queue()
        try:
            async with aiomqtt.Client(broker.host, broker.port) as client:
                await client.subscribe("campus/v1/bench/gw1/events/#", qos=1)

                async def receive() -> None:
                    async for message in client.messages:
                        assert isinstance(message.payload, bytes)
                        arrivals.put_nowait((time.perf_counter(), json.loads(message.payload)))

                receiver = asyncio.create_task(receive())
                while True:  # wait for the module to be online
                    _, event = await asyncio.wait_for(arrivals.get(), 30)
                    if event["type"] == "device.online":
                        break
                idle_start = cpu_seconds(gateway.pid)
                await asyncio.sleep(5)
                idle_cpu_per_s = (cpu_seconds(gateway.pid) - idle_start) / 5
                latencies: list[float] = []
                cpu_start = cpu_seconds(gateway.pid)
                wall_start = time.perf_counter()
                for i in range(changes):
                    await asyncio.sleep(random.uniform(0.0, poll_ms / 1000))
                    closed = i % 2 == 0
                    want = "active" if closed else "cleared"
                    changed_at = time.perf_counter()
                    module.set_input(0, closed=closed)
                    while True:
                        at, event = await asyncio.wait_for(arrivals.get(), 10)
                        if event["type"] == "alarm.intrusion" and event["data"]["state"] == want:
                            latencies.append(at - changed_at)
                            break
                wall = time.perf_counter() - wall_start
                cpu = cpu_seconds(gateway.pid) - cpu_start
                receiver.cancel()
        finally:
            gateway.terminate()
            await gateway.wait()
            log.close()
    latencies.sort()
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    print(f"contact change -> subscriber, {changes} changes, poll {poll_ms} ms")
    print(
        f"  latency ms: p50 {q[49] * 1000:.1f}  p90 {q[89] * 1000:.1f}  "
        f"p99 {q[98] * 1000:.1f}  max {latencies[-1] * 1000:.1f}  "
        f"mean {statistics.fmean(latencies) * 1000:.1f}"
    )
    polling_cpu = idle_cpu_per_s * wall
    print(
        f"  gateway CPU: {cpu * 1000 / changes:.2f} ms per event in all "
        f"({max(cpu - polling_cpu, 0) * 1000 / changes:.2f} ms above the polling cost); "
        f"idle polling {idle_cpu_per_s * 100:.1f} % of one core"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=1000)
    parser.add_argument("--poll-ms", type=int, default=50)
    args = parser.parse_args()
    asyncio.run(main(args.changes, args.poll_ms))
