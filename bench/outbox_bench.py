"""Outbox and uplink figures: durable throughput, backlog drain, panic commits beside the
heartbeat, bytes on disk.

Real parts: the gateway's own Outbox (SQLite, rollback journal, ``synchronous=FULL``) and Uplink
(QoS 1) in this process, Debian's mosquitto on a free port, and an acking center in
a process of its own (``bench/acking_center.py``): it acks every id, so an alarm is
published again only when the gateway re-sends needlessly, and its CPU is not
ours. Progress is read from in-memory counters (the uplink's, the center's shared
counters), never by querying the database being measured.

    .venv/bin/python bench/outbox_bench.py throughput --seconds 60
    .venv/bin/python bench/outbox_bench.py drain --events 1000000
    .venv/bin/python bench/outbox_bench.py heartbeat --rows 1000000
    .venv/bin/python bench/outbox_bench.py disk --events 1000000

``throughput``: intrusion alarms (priority 2, acked by the center) go in as fast as
the outbox takes them: ``--producers`` tasks each waiting for its event's commit
(``Outbox.append``, as the DC-09 receiver does before its ``ACK``), or with
``--rate`` offered at that many events a second whatever the outbox does
(``Outbox.hold``, as the alarm rules do: an open loop, so a gateway that falls behind
builds a backlog the run shows); reported separately: stored, PUBACKed, first
deliveries at the center, acks recorded, re-sends. ``drain``: a backlog stored while
the broker is down, then the broker comes up; the drain rate is rows actually
stored / time until the center has received every one (and, separately, until each
is PUBACKed and acked); a live panic every ``--panic-every`` seconds meanwhile, its
latency = append → first delivery at the center (on one connection for everything, and
on its life-safety path, docs/center-protocol.md). ``heartbeat``: with ``--rows``
rows stored, panics committed every ``--panic-every`` seconds, first without and
then with the heartbeat's reads every ``--every`` seconds: how long a panic's
commit waits, and how long a heartbeat takes. ``disk``: bytes per stored alarm.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

from acking_center import LIFE_SAFETY_PATH, CenterProcess  # noqa: E402

from gateway.config.root import BrokerConfig, OutboxConfig  # noqa: E402
from gateway.delivery.acks import parse_ack, parse_stream_ack  # noqa: E402
from gateway.delivery.housekeeping import Housekeeping  # noqa: E402
from gateway.delivery.outbox import Outbox  # noqa: E402
from gateway.delivery.uplink import Uplink, UplinkStats  # noqa: E402
from gateway.events.model import Event, EventFactory  # noqa: E402
from gateway.runtime import heap  # noqa: E402
from gateway.runtime.logsetup import configure_logging  # noqa: E402
from simulators.broker import MosquittoBroker  # noqa: E402

PREFIX = "campus/v1/bench/gw1"
FACTORY = EventFactory("campus/bench/gw1", lambda: True)


def intrusion(i: int) -> Event:
    """A typical alarm (priority 2, acked): Chinese names, location, incident (~600 B)."""
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
    """Camera telemetry (priority 5, not acked)."""
    return FACTORY.make(
        "camera.status", device="gate-cam", subject="gate-cam", state="instant", data={"i": i}
    )


def panic(i: int) -> Event:
    return FACTORY.make("alarm.panic", device="io", subject=f"P{i}", state="active")


KINDS: dict[str, Callable[[int], Event]] = {"intrusion": intrusion, "telemetry": telemetry}


def settings_line(**settings: object) -> str:
    load = os.getloadavg()[0]
    pairs = ", ".join(f"{k}={v}" for k, v in settings.items())
    return f"settings: {pairs}; load average {load:.2f} on {os.cpu_count()} CPUs"


def quantiles(values: list[float]) -> str:
    q = statistics.quantiles(values, n=100, method="inclusive")
    return (
        f"p50 {q[49] * 1000:.1f}  p90 {q[89] * 1000:.1f}  p99 {q[98] * 1000:.1f}  "
        f"max {max(values) * 1000:.1f} ms"
    )


def open_outbox(path: Path, rows: int, ack_timeout: float) -> Outbox:
    """The outbox with caps that hold the whole run (the bench measures, it does not shed)."""
    defaults = OutboxConfig()
    return Outbox(
        path,
        commit_linger=defaults.commit_linger_ms / 1000,
        ack_timeout=ack_timeout,
        max_rows=max(defaults.max_rows, 2 * rows),
        max_bytes=max(defaults.max_bytes, 2 * rows * 2000),
        alarm_reserve_rows=defaults.alarm_reserve_rows,
    )


class AckCount:
    """The uplink's ``on_ack``: records the center's acks and counts the rows matched."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self.rows = 0

    async def __call__(self, payload: bytes) -> None:
        """The uplink hands over the raw ``…/ack`` payload (by ids or by stream)."""
        ids = parse_ack(payload)
        # ``self.rows += await …`` would read ``rows`` before the await and lose the
        # counts of acks handled meanwhile (the uplink handles each ack in a task).
        if ids:
            matched = await self.outbox.mark_acked(ids)
            self.rows += len(matched)
        if (through := parse_stream_ack(payload)) is not None:
            acked = await self.outbox.mark_acked_through(through.stream, through.up_to_seq)
            self.rows += len(acked)


@contextlib.asynccontextmanager
async def uplink_running(
    outbox: Outbox, port: int, window: int
) -> AsyncIterator[tuple[Uplink, AckCount]]:
    acks = AckCount(outbox)
    heap.settle()  # as the daemon does once ready
    print(f"  {heap.describe()} (as the daemon, once ready)")
    uplink = Uplink(
        BrokerConfig(port=port, window=window),
        PREFIX,
        outbox,
        client_id="bench-gw",
        on_ack=acks,
    )
    task = asyncio.create_task(uplink.run())
    try:
        yield uplink, acks
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def broker_for(work: Path, rows: int, window: int) -> MosquittoBroker:
    """mosquitto with a queue per client deep enough that it never drops a message."""
    return MosquittoBroker(
        work / "broker", max_queued_messages=max(100_000, 2 * rows), max_inflight_messages=window
    )


async def wait_until(predicate: Callable[[], bool], within: float) -> float | None:
    """Poll an in-memory ``predicate`` every 10 ms; monotonic time it became true, or None."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            return None
        await asyncio.sleep(0.01)
    return time.monotonic()


def stored_rows(path: Path) -> int:
    """Rows in the outbox, counted on a connection of its own (never while measuring)."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        return int(db.execute("SELECT count(*) FROM messages").fetchone()[0])


# -- throughput -----------------------------------------------------------------------------


async def throughput(
    seconds: float, producers: int, rate: float | None, window: int, ack_timeout: float
) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-outbox-"))
    ingest = (
        f"Outbox.hold offered at {rate:,.0f} events/s (open loop)"
        if rate
        else f"Outbox.append from {producers} producers, each waiting for its commit"
    )
    print(
        settings_line(
            mode="throughput",
            seconds=seconds,
            ingest=ingest,
            kind="intrusion (P2, acked)",
            window=window,
            ack_timeout_s=ack_timeout,
            synchronous="FULL",
        )
    )
    async with broker_for(work, 2_000_000, window) as broker:
        center = CenterProcess(broker.port, PREFIX)
        center.start()
        try:
            async with (
                open_outbox(work / "o.sqlite", 2_000_000, ack_timeout) as outbox,
                uplink_running(outbox, broker.port, window) as (uplink, acks),
            ):
                await uplink.stats.connected.wait()
                samples: list[tuple[int, int]] = []
                if rate:
                    made, samples = await _offer(outbox, uplink.stats, seconds, rate)
                else:
                    made = await _produce(outbox, seconds, producers)
                elapsed = seconds
                stats = uplink.stats
                in_window = (stats.published, center.first, acks.rows)
                resends_in_window = (stats.republished_alarms, center.dups)
                start = time.monotonic()
                all_pubacked = await wait_until(
                    lambda: stats.published - stats.republished_alarms >= made, 600
                )
                all_acked = await wait_until(lambda: acks.rows >= made, 600)
                commits = outbox.commits
        finally:
            report = center.stop()
    shutil.rmtree(work, ignore_errors=True)
    pubacked, received, acked = in_window
    print(
        f"  {'offered' if rate else 'stored'}:           {made / elapsed:9,.0f} events/s "
        f"({made:,} in {elapsed:g} s, "
        f"{made / max(commits, 1):.1f} events per commit)"
    )
    if samples:
        half = len(samples) // 2
        steady = (samples[-1][1] - samples[half - 1][1]) / (len(samples) - half)
        print(f"  held (accepted, not yet committed) at each second: {[h for h, _ in samples]}")
        print(f"  PUBACKed in the run's second half: {steady:9,.0f} events/s")
    print(f"  PUBACKed:          {pubacked / elapsed:9,.0f} events/s during the run")
    print(f"  center received:   {received / elapsed:9,.0f} first deliveries/s during the run")
    print(f"  center acks recorded: {acked / elapsed:6,.0f} rows/s during the run")
    for what, at in (("PUBACKed", all_pubacked), ("acked and recorded", all_acked)):
        text = f"{at - start:.1f} s after the run" if at is not None else "NOT within 600 s"
        print(f"  all {made:,} {what}: {text}")
    print(
        f"  re-sends: {resends_in_window[0]:,} re-published alarms during the run, "
        f"{stats.republished_alarms:,} in all; the center saw {report.dups:,} re-deliveries "
        f"({report.first:,} distinct ids)"
    )
    print(f"  load average after: {os.getloadavg()[0]:.2f}")


async def _produce(outbox: Outbox, seconds: float, producers: int) -> int:
    stop = time.monotonic() + seconds
    made = 0

    async def produce(k: int) -> None:
        nonlocal made
        i = k
        while time.monotonic() < stop:
            await outbox.append(intrusion(i))
            made += 1
            i += producers

    await asyncio.gather(*(produce(k) for k in range(producers)))
    return made


async def _offer(
    outbox: Outbox, stats: UplinkStats, seconds: float, rate: float
) -> tuple[int, list[tuple[int, int]]]:
    """Hold events at ``rate`` a second for ``seconds``, on a schedule that does not wait
    for the outbox (the alarm rules' ingest); returns the events held and, at each
    second, the rows held in memory (accepted, not yet committed) and the PUBACKs so far."""
    start = time.monotonic()
    made = 0
    samples: list[tuple[int, int]] = []
    while (now := time.monotonic()) < start + seconds:
        for _ in range(int((now - start) * rate) - made):
            outbox.hold(intrusion(made))
            made += 1
        if now - start >= len(samples) + 1:
            samples.append((len(outbox.held), stats.published))
        await asyncio.sleep(0.002)
    return made, samples


# -- drain ----------------------------------------------------------------------------------


async def fill(outbox: Outbox, events: int, make: Callable[[int], Event]) -> float:
    """Append ``events`` events in concurrent batches; returns the seconds it took."""
    start = time.monotonic()
    for first in range(0, events, 2000):
        await asyncio.gather(
            *(outbox.append(make(i)) for i in range(first, min(first + 2000, events)))
        )
    return time.monotonic() - start


async def drain(
    events: int, kind: str, window: int, panic_every: float, ack_timeout: float
) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-drain-"))
    path = work / "o.sqlite"
    print(
        settings_line(
            mode="drain",
            events=f"{events:,}",
            kind=kind,
            window=window,
            panic_every_s=panic_every,
            ack_timeout_s=ack_timeout,
            synchronous="FULL",
        )
    )
    async with open_outbox(path, events, ack_timeout) as outbox:
        took = await fill(outbox, events, KINDS[kind])
    stored = stored_rows(path)
    print(
        f"  backlog stored while the broker is down: {stored:,} rows in {took:.1f} s "
        f"({stored / took:,.0f} rows/s)"
    )
    broker = broker_for(work, events, window)
    await broker.start()
    center = CenterProcess(broker.port, PREFIX, detail=frozenset({"alarm.panic"}))
    center.start()
    # The same panics seen on a center's life-safety path (docs/center-protocol.md:
    # priority 1 on a connection of its own, not queued in the broker behind a backlog).
    own = CenterProcess(
        broker.port, PREFIX, ack=False, detail=frozenset({"alarm.panic"}), topics=LIFE_SAFETY_PATH
    )
    own.start()
    sent_at: dict[str, float] = {}
    commit_waits: list[float] = []
    lags: list[float] = []
    try:
        async with open_outbox(path, events, ack_timeout) as outbox:
            start = time.monotonic()
            async with uplink_running(outbox, broker.port, window) as (uplink, acks):
                stats = uplink.stats

                async def panics() -> None:
                    i = 0
                    while True:
                        await asyncio.sleep(panic_every)
                        sent_at[f"P{i}"] = t = time.monotonic()
                        await outbox.append(panic(i))
                        commit_waits.append(time.monotonic() - t)
                        i += 1

                def total_rows() -> int:
                    return stored + len(sent_at)

                live = asyncio.create_task(panics())
                lagging = asyncio.create_task(loop_lag(lags))
                received = await wait_until(lambda: center.first >= total_rows(), 3600)
                live.cancel()
                lagging.cancel()
                pubacked = await wait_until(
                    lambda: stats.published - stats.republished_alarms >= total_rows(), 600
                )
                acked = await wait_until(lambda: acks.rows >= total_rows(), 600)
                republished = stats.republished_alarms
    finally:
        report = center.stop()
        own_report = own.stop()
        await broker.stop()
    shutil.rmtree(work, ignore_errors=True)
    if received is None:
        print(f"  NOT drained within an hour: the center has {report.first:,} of {stored:,}")
        return
    total = stored + len(sent_at)
    print(
        f"  every stored row received by the center after {received - start:.1f} s: "
        f"{stored / (received - start):,.0f} rows/s ({total:,} with the live panics)"
    )
    for what, at in (("PUBACKed", pubacked), ("acked by the center and recorded", acked)):
        text = f"{at - start:.1f} s" if at is not None else "NOT within 600 s more"
        print(f"  all {what}: {text}")
    print(
        f"  re-sends: {republished:,} alarms re-published; the center saw {report.dups:,} "
        f"re-deliveries"
    )
    latencies = [a.mono - sent_at[a.subject] for a in report.arrivals if a.subject in sent_at]
    if len(latencies) >= 2:
        print(
            f"  live panic, append -> first delivery ({len(latencies)} panics): "
            f"{quantiles(latencies)}"
        )
        direct = [a.mono - sent_at[a.subject] for a in own_report.arrivals if a.subject in sent_at]
        if len(direct) >= 2:
            print(
                f"  live panic, append -> first delivery on the center's life-safety path "
                f"({len(direct)}): {quantiles(direct)}"
            )
        slowest = sorted(
            (
                (a.mono - sent_at[a.subject], sent_at[a.subject] - start, a.subject)
                for a in report.arrivals
                if a.subject in sent_at
            ),
            reverse=True,
        )[:5]
        print(
            "  slowest live panics (latency at seconds into the drain): "
            + ", ".join(f"{lat * 1000:.1f} ms at {at:.1f} s" for lat, at, _ in slowest)
        )
        print(f"  live panic commit (append returns): {quantiles(commit_waits)}")
        print(f"  event loop lag meanwhile (a 10 ms sleep's overshoot): {quantiles(lags)}")
    else:
        print("  (drained before two live panics were sent: use more --events)")
    print(f"  load average after: {os.getloadavg()[0]:.2f}")


async def loop_lag(lags: list[float]) -> None:
    """How late the event loop wakes a 10 ms sleep, for as long as it runs: every
    coroutine on the loop (a panic's commit, a poll) waits that long for its turn."""
    while True:
        t = time.monotonic()
        await asyncio.sleep(0.01)
        lags.append(time.monotonic() - t - 0.01)


# -- panic commits beside the heartbeat -----------------------------------------------------


async def heartbeat(rows: int, every: float, panic_every: float, seconds: float) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-heartbeat-"))
    path = work / "o.sqlite"
    print(
        settings_line(
            mode="heartbeat",
            rows=f"{rows:,}",
            kind="intrusion, never delivered (broker down)",
            heartbeat_every_s=every,
            panic_every_s=panic_every,
            seconds_each=seconds,
        )
    )
    async with open_outbox(path, rows, 30.0) as outbox:
        took = await fill(outbox, rows, intrusion)
    print(f"  {stored_rows(path):,} rows stored in {took:.1f} s")
    async with open_outbox(path, rows, 30.0) as outbox:
        heap.settle()  # as the daemon does once ready
        print(f"  {heap.describe()} (as the daemon, once ready)")
        keeper = Housekeeping(outbox, FACTORY, OutboxConfig(), "gw1")
        await keeper.report_start()
        quiet = await _panic_commits(outbox, panic_every, seconds)
        beats: list[float] = []

        async def beat() -> None:
            while True:
                t = time.monotonic()
                await keeper.heartbeat()
                beats.append(time.monotonic() - t)
                await asyncio.sleep(every)

        task = asyncio.create_task(beat())
        busy = await _panic_commits(outbox, panic_every, seconds)
        task.cancel()
    shutil.rmtree(work, ignore_errors=True)
    print(f"  panic commit, no heartbeat ({len(quiet)}):   {quantiles(quiet)}")
    print(f"  panic commit, with heartbeat ({len(busy)}): {quantiles(busy)}")
    over = sum(1 for w in busy if w > 0.020)
    print(f"  panic commits over 20 ms with the heartbeat: {over} of {len(busy)}")
    if len(beats) >= 2:
        print(f"  heartbeat build ({len(beats)}): {quantiles(beats)}")
    print(f"  load average after: {os.getloadavg()[0]:.2f}")


async def _panic_commits(outbox: Outbox, every: float, seconds: float) -> list[float]:
    waits: list[float] = []
    end = time.monotonic() + seconds
    i = 0
    while time.monotonic() < end:
        t = time.monotonic()
        await outbox.append(panic(i))
        waits.append(time.monotonic() - t)
        i += 1
        await asyncio.sleep(every)
    return waits


# -- disk -----------------------------------------------------------------------------------


async def disk(events: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-disk-"))
    path = work / "o.sqlite"
    print(settings_line(mode="disk", events=f"{events:,}", kind="intrusion"))
    payload = 0
    async with open_outbox(path, events, 30.0) as outbox:
        for first in range(0, events, 5000):
            stored = await asyncio.gather(
                *(outbox.append(intrusion(i)) for i in range(first, min(first + 5000, events)))
            )
            payload += sum(len(e.to_json()) for e in stored)
    rows = stored_rows(path)
    # Closing checkpoints the WAL into the database file.
    on_disk = sum(p.stat().st_size for p in work.iterdir() if p.name.startswith("o.sqlite"))
    shutil.rmtree(work, ignore_errors=True)
    print(f"  {rows:,} rows, {on_disk / 1e6:,.1f} MB on disk, {on_disk / rows:,.0f} bytes per row")
    print(f"  (JSON payload {payload / events:,.0f} bytes per event; the rest is index and row)")
    print(f"  {on_disk / rows * 1e6 / 1e9:.2f} GB per 1,000,000 events")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    t = sub.add_parser("throughput")
    t.add_argument("--seconds", type=float, default=60)
    t.add_argument("--producers", type=int, default=64)
    t.add_argument("--rate", type=float, help="offer events/s with Outbox.hold instead")
    t.add_argument("--window", type=int, default=BrokerConfig().window)
    t.add_argument("--ack-timeout", type=float, default=OutboxConfig().ack_timeout_s)
    d = sub.add_parser("drain")
    d.add_argument("--events", type=int, default=1_000_000)
    d.add_argument("--kind", choices=sorted(KINDS), default="intrusion")
    d.add_argument("--window", type=int, default=BrokerConfig().window)
    d.add_argument("--panic-every", type=float, default=0.25)
    d.add_argument("--ack-timeout", type=float, default=OutboxConfig().ack_timeout_s)
    h = sub.add_parser("heartbeat")
    h.add_argument("--rows", type=int, default=1_000_000)
    h.add_argument("--every", type=float, default=1.0)
    h.add_argument("--panic-every", type=float, default=0.02)
    h.add_argument("--seconds", type=float, default=20.0)
    k = sub.add_parser("disk")
    k.add_argument("--events", type=int, default=1_000_000)
    args = parser.parse_args()
    configure_logging("error")  # re-sends are counted and printed
    if args.what == "throughput":
        asyncio.run(
            throughput(args.seconds, args.producers, args.rate, args.window, args.ack_timeout)
        )
    elif args.what == "drain":
        asyncio.run(drain(args.events, args.kind, args.window, args.panic_every, args.ack_timeout))
    elif args.what == "heartbeat":
        asyncio.run(heartbeat(args.rows, args.every, args.panic_every, args.seconds))
    else:
        asyncio.run(disk(args.events))


if __name__ == "__main__":
    main()
