"""Outbox and uplink figures (issue 3): durable throughput, backlog drain, panic latency, disk.

Real parts: the gateway's own Outbox (SQLite WAL, ``synchronous=FULL``) and Uplink
(aiomqtt, QoS 1), Debian's mosquitto on a free port, an aiomqtt subscriber.

    .venv/bin/python bench/outbox_bench.py throughput --seconds 60
    .venv/bin/python bench/outbox_bench.py drain --events 100000
    .venv/bin/python bench/outbox_bench.py disk --events 1000000

``throughput``: producers emit events as fast as the outbox takes them (each
``append`` returns once committed); events/s counted at PUBACK. ``drain``: a
backlog stored while the broker is down, then the broker comes up; events/s until
empty, and the latency of a live panic (append → subscriber) every 0.25 s meanwhile.
``disk``: bytes on disk per stored event, for a typical intrusion alarm.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gateway.config.root import BrokerConfig  # noqa: E402
from gateway.delivery.outbox import Outbox  # noqa: E402
from gateway.delivery.uplink import Uplink  # noqa: E402
from gateway.events.model import Event, EventFactory  # noqa: E402
from simulators.broker import MosquittoBroker  # noqa: E402

PREFIX = "campus/v1/bench/gw1"
FACTORY = EventFactory("campus/bench/gw1", lambda: True)


def intrusion(i: int) -> Event:
    """A typical alarm: Chinese names, location, incident id (about 500 bytes of JSON)."""
    return FACTORY.make(
        "alarm.intrusion",
        device="teach-io",
        subject=f"Z{i % 64:02d}",
        state="active" if i % 2 == 0 else "cleared",
        data={
            "name": "教学楼三层走廊红外探测器",
            "location": "教学楼三层东侧",
            "zone_type": "intrusion",
            "module": "teach-io",
            "input": i % 16,
            "latched": False,
        },
        opens_incident=True,
    )


def telemetry(i: int) -> Event:
    return FACTORY.make(
        "gateway.heartbeat", device="gateway", subject="gw1", state="instant", data={"i": i}
    )


@contextlib.asynccontextmanager
async def uplink_running(outbox: Outbox, port: int) -> AsyncIterator[Uplink]:
    async def acked(ids: list[str]) -> None:
        await outbox.mark_acked(ids)

    uplink = Uplink(
        BrokerConfig(port=port, window=20), PREFIX, outbox, client_id="bench-gw", on_ack=acked
    )
    task = asyncio.create_task(uplink.run())
    try:
        yield uplink
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def acking_center(port: int) -> AsyncIterator[None]:
    """A center that acks every event id it receives, in batches (as the console does)."""
    async with aiomqtt.Client("127.0.0.1", port) as client:
        await client.subscribe(f"{PREFIX}/events/#", qos=1)

        async def run() -> None:
            ids: list[str] = []
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                ids.append(json.loads(message.payload)["id"])
                if len(ids) >= 50 or client._queue.empty():
                    await client.publish(f"{PREFIX}/ack", json.dumps({"ids": ids}), qos=1)
                    ids = []

        task = asyncio.create_task(run())
        try:
            yield
        finally:
            task.cancel()


async def throughput(seconds: float, producers: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-outbox-"))
    async with (
        MosquittoBroker(work / "broker") as broker,
        Outbox(work / "o.sqlite") as outbox,
        acking_center(broker.port),
        uplink_running(outbox, broker.port) as uplink,
    ):
        await uplink.stats.connected.wait()
        stop = time.perf_counter() + seconds
        made = 0

        async def produce(k: int) -> None:
            nonlocal made
            i = k
            while time.perf_counter() < stop:
                await outbox.append(intrusion(i))
                made += 1
                i += producers

        start = time.perf_counter()
        await asyncio.gather(*(produce(k) for k in range(producers)))
        elapsed = time.perf_counter() - start
        acked_in_window = uplink.stats.published
        while await outbox.pending_count():  # noqa: ASYNC110 - a bench polls a DB
            await asyncio.sleep(0.05)
        total = time.perf_counter() - start
    print(f"durable throughput, synchronous=FULL, {producers} producers, {seconds:g} s")
    per_commit = made / max(outbox.commits, 1)
    rate = made / elapsed
    print(f"  stored:   {rate:,.0f} events/s ({made:,} events, {outbox.commits:,} commits)")
    print(f"            {per_commit:.1f} events per commit")
    print(f"  PUBACKed: {acked_in_window / elapsed:,.0f} events/s during the run;")
    print(f"            all {made:,} PUBACKed after {total:.1f} s ({made / total:,.0f} events/s)")
    acked = await _acked(work / "o.sqlite")
    shutil.rmtree(work, ignore_errors=True)
    print(f"  acked by the center: {acked:,} (alarms stay open until then)")


async def _acked(path: Path) -> int:
    import sqlite3

    with contextlib.closing(sqlite3.connect(path)) as db:
        return int(
            db.execute("SELECT count(*) FROM messages WHERE acked_at IS NOT NULL").fetchone()[0]
        )


async def drain(events: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-drain-"))
    broker = MosquittoBroker(work / "broker")
    latencies: list[float] = []
    async with Outbox(work / "o.sqlite") as outbox:
        for start in range(0, events, 2000):
            await asyncio.gather(*(outbox.append(telemetry(i)) for i in range(start, start + 2000)))
        await broker.start()
        sent_at: dict[str, float] = {}
        async with aiomqtt.Client(broker.host, broker.port) as sub:
            await sub.subscribe(f"{PREFIX}/events/alarm/#", qos=1)

            async def panics() -> None:
                i = 0
                while True:
                    await asyncio.sleep(0.25)
                    sent_at[f"P{i}"] = time.perf_counter()
                    await outbox.append(
                        FACTORY.make("alarm.panic", device="io", subject=f"P{i}", state="active")
                    )
                    i += 1

            async def receive() -> None:
                async for message in sub.messages:
                    assert isinstance(message.payload, bytes)
                    subject = json.loads(message.payload)["subject"]
                    latencies.append(time.perf_counter() - sent_at[subject])

            start = time.perf_counter()
            async with uplink_running(outbox, broker.port):
                tasks = [asyncio.create_task(panics()), asyncio.create_task(receive())]
                while await outbox.pending_count():  # noqa: ASYNC110 - a bench polls a DB
                    await asyncio.sleep(0.02)
                elapsed = time.perf_counter() - start
                for task in tasks:
                    task.cancel()
        await broker.stop()
    shutil.rmtree(work, ignore_errors=True)
    latencies.sort()
    print(f"backlog drain: {events:,} stored events, broker comes up")
    print(f"  drained in {elapsed:.1f} s: {events / elapsed:,.0f} events/s")
    if len(latencies) < 2:
        print("  (drained before two live panics were sent: use a larger --events)")
        return
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    print(
        f"  live panic latency during the drain ({len(latencies)} panics): "
        f"p50 {q[49] * 1000:.1f} ms  p99 {q[98] * 1000:.1f} ms  max {latencies[-1] * 1000:.1f} ms"
    )


async def disk(events: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-disk-"))
    path = work / "o.sqlite"
    async with Outbox(path) as outbox:
        payload = 0
        for start in range(0, events, 5000):
            stored = await asyncio.gather(
                *(outbox.append(intrusion(i)) for i in range(start, min(start + 5000, events)))
            )
            payload += sum(len(e.to_json()) for e in stored)
    # Closing checkpoints the WAL into the database file.
    on_disk = sum(p.stat().st_size for p in work.iterdir() if p.name.startswith("o.sqlite"))
    shutil.rmtree(work, ignore_errors=True)
    print(f"disk: {events:,} stored intrusion events")
    print(f"  {on_disk / 1e6:,.1f} MB on disk, {on_disk / events:,.0f} bytes per event")
    print(f"  (JSON payload {payload / events:,.0f} bytes per event; the rest is index and row)")
    print(f"  {on_disk / events * 1e6 / 1e9:.2f} GB per 1,000,000 events")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    t = sub.add_parser("throughput")
    t.add_argument("--seconds", type=float, default=60)
    t.add_argument("--producers", type=int, default=64)
    d = sub.add_parser("drain")
    d.add_argument("--events", type=int, default=100_000)
    k = sub.add_parser("disk")
    k.add_argument("--events", type=int, default=1_000_000)
    args = parser.parse_args()
    if args.what == "throughput":
        asyncio.run(throughput(args.seconds, args.producers))
    elif args.what == "drain":
        asyncio.run(drain(args.events))
    else:
        asyncio.run(disk(args.events))


if __name__ == "__main__":
    main()
