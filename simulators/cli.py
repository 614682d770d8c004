"""``campus-sim``: simulators for technicians' test benches and for the demo.

Subcommands: ``campus`` (everything), ``modbus`` (simulated I/O modules of a
config with their control endpoint), ``ctl`` (drive those modules), ``center``
(the duty-center console), ``patrol`` (guards walking tour routes), ``camera``
(simulated ONVIF cameras), ``panel`` (an alarm panel reporting over SIA DC-09).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import signal
import sys
from pathlib import Path

import aiomqtt

from gateway.config.root import GatewayConfig, load_config
from gateway.errors import ConfigError
from simulators import center_cli, panel_cli, patrol_cli
from simulators.camera import cli as camera_cli
from simulators.camera.cli import DEFAULT_CONTROL_PORT as DEFAULT_CAMERA_CONTROL_PORT
from simulators.campus import (
    DEFAULT_BROKER_PORT,
    DEFAULT_CONFIG,
    DEFAULT_CONTROL_PORT,
    DEFAULT_SCENARIO,
    run_campus,
)
from simulators.center_commands import CommandSender
from simulators.modbus_control import ControlError, ControlServer, control_request
from simulators.modules import simulated_modules


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="campus-sim", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    camp = sub.add_parser("campus", help="run the whole simulated campus with the gateway")
    camp.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    camp.add_argument("--scenario", type=Path, default=DEFAULT_SCENARIO)
    camp.add_argument("--no-scenario", action="store_true", help="start quiet; drive with ctl")
    camp.add_argument("--duration", type=float, metavar="SECONDS", help="stop after this long")
    camp.add_argument("--events-jsonl", type=Path, metavar="FILE", help="write received events")
    camp.add_argument("--broker", metavar="HOST:PORT", help="use this broker, start none")
    camp.add_argument("--control-port", type=int, default=DEFAULT_CONTROL_PORT)
    camp.add_argument(
        "--camera-control-port", type=int, default=DEFAULT_CAMERA_CONTROL_PORT,
        help="the simulated cameras' control endpoint (campus-sim camera ctl)",
    )  # fmt: skip
    camp.add_argument(
        "--workdir",
        type=Path,
        help="where logs and the outbox go (default: var/demo, cleared at start)",
    )

    mod = sub.add_parser("modbus", help="simulated I/O modules for every [[modules]] of a config")
    mod.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    mod.add_argument("--control-port", type=int, default=DEFAULT_CONTROL_PORT)

    ctl = sub.add_parser("ctl", help="drive simulated modules through their control endpoint")
    ctl.add_argument(
        "action",
        choices=["press", "release", "open", "close", "power-cycle", "analog", "state"],
    )
    ctl.add_argument("module", nargs="?", help="module id (all modules for state)")
    ctl.add_argument("value", nargs="?", type=float, help="channel, or seconds for power-cycle")
    ctl.add_argument("--raw", type=int, help="analog: the raw value 0..65535 to set")
    ctl.add_argument("--control-port", type=int, default=DEFAULT_CONTROL_PORT)

    cmd = sub.add_parser("cmd", help="send a signed command to the gateway as the center does")
    cmd.add_argument("name", help="arm, disarm, bypass, unbypass, reset, ack, output, ...")
    cmd.add_argument("params", nargs="*", metavar="KEY=VALUE", help="e.g. zone=Z01 force=true")
    cmd.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="site, gateway, key")
    cmd.add_argument("--broker", default=f"127.0.0.1:{DEFAULT_BROKER_PORT}", metavar="HOST:PORT")
    cmd.add_argument("--operator", default="technician")

    sub.add_parser("center", help="the duty-center console (see campus-sim center --help)")
    sub.add_parser("patrol", help="guards walking tour routes (see campus-sim patrol --help)")
    sub.add_parser("camera", help="simulated ONVIF cameras (see campus-sim camera --help)")
    sub.add_parser("panel", help="an alarm panel over SIA DC-09 (see campus-sim panel --help)")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["center"]:
        return center_cli.main(argv[1:])
    if argv[:1] == ["patrol"]:
        return patrol_cli.main(argv[1:])
    if argv[:1] == ["camera"]:
        return camera_cli.main(argv[1:])
    if argv[:1] == ["panel"]:
        return panel_cli.main(argv[1:])
    args = _parser().parse_args(argv)
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(encoding="utf-8")
    try:
        if args.command == "campus":
            return asyncio.run(
                run_campus(
                    config=args.config,
                    scenario=None if args.no_scenario else args.scenario,
                    duration=args.duration,
                    events_jsonl=args.events_jsonl,
                    broker=args.broker,
                    control_port=args.control_port,
                    camera_control_port=args.camera_control_port,
                    workdir=args.workdir,
                )
            )
        if args.command == "modbus":
            return asyncio.run(_serve_modules(args.config, args.control_port))
        if args.command == "cmd":
            return asyncio.run(_command(args))
        return asyncio.run(_ctl(args))
    except (ConfigError, ValueError, OSError, ControlError, aiomqtt.MqttError) as exc:
        print(f"campus-sim: {exc}", file=sys.stderr)
        return 2


async def _serve_modules(config: Path, control_port: int) -> int:
    cfg = load_config(config)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    async with simulated_modules(cfg) as modules, ControlServer(modules, port=control_port) as ctl:
        for module_id, sim in modules.items():
            print(f"module {module_id} ({sim.profile.name}) on {sim.host}:{sim.port}")
        print(f"control endpoint http://127.0.0.1:{ctl.port}  (campus-sim ctl …)")
        await stop.wait()
    return 0


async def _command(args: argparse.Namespace) -> int:
    """Send one command (signed with the config's site key) and print its result."""
    cfg = load_config(args.config)
    params: dict[str, object] = {}
    for item in args.params:
        key, sep, text = item.partition("=")
        if not sep:
            raise ValueError(f"parameter {item!r} is not KEY=VALUE")
        try:
            params[key] = json.loads(text)
        except ValueError:
            params[key] = text
    host, _, port = args.broker.rpartition(":")
    try:
        sender = await _connected_sender(host, int(port), cfg)
    except (OSError, aiomqtt.MqttError) as exc:
        message = f"cannot reach the broker at {args.broker} (is the demo running?): {exc}"
        raise OSError(message) from exc
    async with sender as center:
        result = await center.send(args.name, params, operator=args.operator)
    print(json.dumps(result, ensure_ascii=False))
    return 0 if result.get("status") == "ok" else 1


async def _connected_sender(host: str, port: int, cfg: GatewayConfig) -> CommandSender:
    """A sender whose broker answers a TCP connect (so a dead demo gives a clear error)."""
    _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
    writer.close()
    return CommandSender(host, port, cfg.site.id, cfg.site.gateway, key=cfg.commands.key())


async def _ctl(args: argparse.Namespace) -> int:
    port = args.control_port
    if args.action == "state":
        path = f"/modules/{args.module}" if args.module else "/modules"
        answer = await control_request("127.0.0.1", port, "GET", path)
    else:
        if args.module is None or args.value is None:
            raise ValueError(f"ctl {args.action} needs a module id and a number")
        if args.action == "analog":
            if args.raw is None:
                raise ValueError("ctl analog needs --raw VALUE (0..65535)")
            path = f"/modules/{args.module}/analog/{int(args.value)}"
            answer = await control_request("127.0.0.1", port, "POST", path, {"value": args.raw})
        elif args.action == "power-cycle":
            body = {"off_seconds": args.value}
            answer = await control_request(
                "127.0.0.1", port, "POST", f"/modules/{args.module}/power-cycle", body
            )
        else:
            closed = args.action in ("press", "close")
            path = f"/modules/{args.module}/inputs/{int(args.value)}"
            answer = await control_request("127.0.0.1", port, "POST", path, {"closed": closed})
    if "power_cycle" in answer:
        print(f"{answer['module']} powered off for {answer['power_cycle']['off_seconds']} s")
        return 0
    for state in answer.get("modules", {answer.get("id"): answer}).values():
        print(_one_line(state))
    return 0


def _one_line(state: dict[str, object]) -> str:
    """``gate-io adam-6050 tcp 127.0.0.1:15020 up  DI 1000 0000 0000  DO 0000 00``."""

    def bits(values: object) -> str:
        flags = "".join("1" if v else "0" for v in values) if isinstance(values, list) else ""
        return " ".join(flags[i : i + 4] for i in range(0, len(flags), 4)) or "-"

    up = "up" if state.get("running") else "DOWN"
    where = f"{state.get('id')} {state.get('profile')} {state.get('transport')}"
    io = f"DI {bits(state.get('inputs'))}  DO {bits(state.get('outputs'))}"
    analog = state.get("analog")
    if isinstance(analog, list) and analog:
        io += "  AI " + " ".join(str(v) for v in analog)
    return f"{where} {state.get('address')} {up}  {io}"


if __name__ == "__main__":
    sys.exit(main())
