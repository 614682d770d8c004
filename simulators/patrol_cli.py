"""``campus-sim patrol``: guards walking a config's tour routes through simulated readers.

Starts a simulated checkpoint station for every ``[[patrol.readers]]`` station with
a TCP transport (on its configured address), then walks rounds of a route now, in
real time: each scan goes through the checkpoint's station, the phone-app bridge
(the first ``network`` reader) or the handheld (the first ``handheld`` reader,
uploaded ``--upload-after`` seconds after each round). A running gateway with the
same config turns the scans into patrol events. Examples::

    campus-sim patrol --config config/patrol-demo.toml --route night --pace 5
    campus-sim patrol --config … --via handheld --upload-after 30 --skip CP4
    campus-sim patrol --config … --order CP1,CP3,CP2,CP4 --late 120
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

from gateway.config.patrol import HandheldReaderConfig, NetworkReaderConfig
from gateway.config.root import GatewayConfig, load_config
from gateway.config.transports import TcpTransport
from gateway.errors import ConfigError
from gateway.events.observation import utcnow
from simulators.patrol_guard import PatrolDevices, Walk, station_configs, walk_round
from simulators.patrol_readers import Handheld, PhoneApp, ReaderLinkError
from simulators.patrol_station import SimulatedStation


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="campus-sim patrol", description=__doc__)
    parser.add_argument("--config", type=Path, required=True, help="the gateway's TOML config")
    parser.add_argument("--route", help="route id (default: the first route)")
    parser.add_argument("--guard", help="guard id (default: the first guard)")
    parser.add_argument("--via", choices=["auto", "station", "network", "handheld"], default="auto")
    parser.add_argument("--pace", type=float, default=30.0, help="seconds between checkpoints")
    parser.add_argument("--late", type=float, default=0.0, help="seconds late at the start")
    parser.add_argument("--skip", action="append", default=[], metavar="CP", help="skip it")
    parser.add_argument("--order", help="walk in this order: CP1,CP3,CP2")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--every", type=float, help="seconds between round starts")
    parser.add_argument("--upload-after", type=float, default=5.0, help="handheld upload delay")
    parser.add_argument("--gateway", default="127.0.0.1", help="the gateway's address")
    parser.add_argument("--linger", type=float, default=5.0, help="keep stations up this long")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        cfg = load_config(args.config)
        return asyncio.run(_run(cfg, args))
    except (ConfigError, ValueError, KeyError, OSError, ReaderLinkError) as exc:
        print(f"campus-sim patrol: {exc}", file=sys.stderr)
        return 2


async def _run(cfg: GatewayConfig, args: argparse.Namespace) -> int:
    if not cfg.patrol.routes:
        raise ValueError("the config has no [[patrol.routes]]")
    route = args.route or cfg.patrol.routes[0].id
    walk = Walk.of(
        cfg,
        route,
        args.guard,
        pace_s=args.pace,
        late_s=args.late,
        skip=frozenset(args.skip),
        order=tuple(args.order.split(",")) if args.order else None,
    )
    tz = ZoneInfo(cfg.site.timezone)
    async with contextlib.AsyncExitStack() as stack:
        devices = await _devices(cfg, args.gateway, tz, stack)
        every = args.every or args.pace * len(walk.route.stops) + 60
        start = utcnow()
        for n in range(args.rounds):
            steps = await walk_round(
                walk, devices, start + dt.timedelta(seconds=every * n), via=args.via, now=utcnow
            )
            for line in devices.log:
                print(line)
            devices.log.clear()
            if devices.handheld is not None and devices.handheld.memory and steps:
                await asyncio.sleep(args.upload_after)
                print(await devices.upload())
        await asyncio.sleep(args.linger)  # let the gateway poll the stations
    return 0


async def _devices(
    cfg: GatewayConfig, gateway: str, tz: ZoneInfo, stack: contextlib.AsyncExitStack
) -> PatrolDevices:
    devices = PatrolDevices()
    for reader in station_configs(cfg):
        if not isinstance(reader.transport, TcpTransport):
            continue
        station = SimulatedStation(
            station_id=reader.station_id or 1,
            tz=tz,
            host=reader.transport.host,
            port=reader.transport.port,
            unit=reader.unit,
        )
        await stack.enter_async_context(station)
        devices.stations[reader.checkpoint] = station
        print(f"station {reader.id} at {reader.checkpoint} on {station.host}:{station.port}")
    for r in cfg.patrol.readers:
        if isinstance(r, NetworkReaderConfig) and devices.app is None:
            devices.app = PhoneApp(gateway, r.listen.port, key=r.key(), reader_id=r.id)
            stack.push_async_callback(devices.app.close)
        if isinstance(r, HandheldReaderConfig) and devices.handheld is None:
            devices.handheld = Handheld(r.device_number or 1, tz, key=r.key(), reader_id=r.id)
            devices.handheld_address = (gateway, r.listen.port)
    return devices


if __name__ == "__main__":
    sys.exit(main())
