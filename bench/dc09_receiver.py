"""DC-09 receiver throughput and ACK latency, over TCP, through the whole daemon.

The gateway runs in this process with a real outbox (SQLite WAL, ``synchronous=FULL``,
group commit): every frame is decoded, its event committed, then ACKed. The panels
run in a second process (so their CPU is not the gateway's): ``C`` connections,
each its own panel account, each sending ``N`` Contact ID frames one after the
other and waiting for each ACK, as a real panel does. No broker is needed (the
outbox is the gate of the ACK; the uplink keeps retrying in the background).

    .venv/bin/python bench/dc09_receiver.py                          # 1 and 50 connections
    .venv/bin/python bench/dc09_receiver.py --connections 1,10,50 --frames 400 --encrypted

Prints frames/s decoded and ACKed, and the ACK latency (send → ACK) p50/p99/max.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from drivers.dc09 import writer  # noqa: E402
from drivers.dc09.frame import parse_frame  # noqa: E402
from gateway.config.root import GatewayConfig  # noqa: E402
from gateway.daemon import running  # noqa: E402
from gateway.events.observation import utcnow  # noqa: E402
from gateway.runtime.logsetup import configure_logging  # noqa: E402
from simulators.dc09_link import PanelLink  # noqa: E402

KEY = b"0123456789ABCDEF"
DEMO_KEY = Path(__file__).resolve().parents[1] / "config" / "demo-center.key"


def _config(port: int, connections: int, key_file: Path | None) -> GatewayConfig:
    panels = [
        {
            "id": f"p{n:03d}",
            "account": f"{0x1000 + n:X}",
            "supervision_s": 3600,
            **({"key_file": str(key_file)} if key_file else {}),
        }
        for n in range(connections)
    ]
    return GatewayConfig.model_validate(
        {
            "site": {"id": "bench-school", "gateway": "gw1"},
            # The receiver bench sends no commands; the demo key keeps the config valid.
            "commands": {"hmac_key_file": str(DEMO_KEY)},
            "broker": {"host": "127.0.0.1", "port": 1, "reconnect_max": 30},
            "dc09": {"listen": [{"protocol": "tcp", "host": "127.0.0.1", "port": port}]},
            "panels": panels,
            "logging": {"level": "warning"},
        }
    )


async def _panel(port: int, n: int, frames: int, encrypted: bool) -> list[float]:
    """One panel: ``frames`` messages, each waiting for its ACK; latencies in seconds."""
    account = f"{0x1000 + n:X}"
    link = PanelLink("127.0.0.1", port)
    latencies = []
    try:
        for seq in range(1, frames + 1):
            payload = f"{'1' if seq % 2 else '3'}130 01 {seq % 1000:03d}"
            frame = writer.message(
                "ADM-CID", seq, account, payload, key=KEY if encrypted else None,
                now=utcnow() if encrypted else None,
            )  # fmt: skip
            started = time.perf_counter()
            await link.send(frame)
            answer = await link.next_answer(30)
            if answer is None or parse_frame(answer).token != "ACK":
                raise RuntimeError(f"panel {account} seq {seq}: {answer!r}")
            latencies.append(time.perf_counter() - started)
    finally:
        await link.close()
    return latencies


async def _client(port: int, connections: int, frames: int, encrypted: bool) -> dict[str, Any]:
    started = time.perf_counter()
    results = await asyncio.gather(
        *(_panel(port, n, frames, encrypted) for n in range(connections))
    )
    elapsed = time.perf_counter() - started
    latencies = sorted(x for r in results for x in r)
    return {"elapsed": elapsed, "latencies": latencies}


async def _round(connections: int, frames: int, encrypted: bool) -> dict[str, Any]:
    from tests.helpers import free_port

    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        key_file = Path(tmp) / "panel.key"
        key_file.write_text(KEY.decode())
        cfg = _config(port, connections, key_file if encrypted else None)
        async with running(cfg, outbox_path=Path(tmp) / "outbox.sqlite") as gateway:
            assert gateway.panels is not None
            for listener in gateway.panels.listeners:
                await listener.ready.wait()
            process = await asyncio.create_subprocess_exec(
                sys.executable, __file__, "--client", str(port), str(connections), str(frames),
                *(["--encrypted"] if encrypted else []),
                stdout=asyncio.subprocess.PIPE,
            )  # fmt: skip
            out, _ = await process.communicate()
            if process.returncode != 0:
                raise RuntimeError("the panels' process failed")
            result: dict[str, Any] = json.loads(out)
            result["stored"] = gateway.panels.receiver.counts["accepted"]
            result["commits"] = gateway.outbox.commits if gateway.outbox else 0
    return result


def _report(connections: int, frames: int, encrypted: bool, result: dict[str, Any]) -> None:
    latencies = result["latencies"]
    total = len(latencies)
    q = statistics.quantiles(latencies, n=100)
    print(
        f"{connections:>3} connection(s) x {frames} frames {'encrypted' if encrypted else 'plain'}:"
        f" {total / result['elapsed']:,.0f} frames/s decoded, committed and ACKed;"
        f" ACK latency p50 {q[49] * 1000:.1f} ms, p99 {q[98] * 1000:.1f} ms,"
        f" max {latencies[-1] * 1000:.1f} ms; {result['stored']} stored in"
        f" {result['commits']} commits",
        flush=True,
    )


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        port, connections, frames = (int(a) for a in sys.argv[2:5])
        result = asyncio.run(_client(port, connections, frames, "--encrypted" in sys.argv))
        print(json.dumps(result))
        return 0
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--connections", default="1,50", help="comma-separated counts")
    parser.add_argument("--frames", type=int, default=200, help="frames per connection")
    parser.add_argument("--encrypted", action="store_true", help="AES-128 frames and *ACKs")
    args = parser.parse_args()
    configure_logging("error")
    for connections in (int(c) for c in args.connections.split(",")):
        result = asyncio.run(_round(connections, args.frames, args.encrypted))
        _report(connections, args.frames, args.encrypted, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
