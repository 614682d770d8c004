"""``campus-sim camera``: simulated ONVIF cameras for the ``[[cameras]]`` of a config, and control.

    campus-sim camera serve --config config/demo.toml [--control-port 15090]
    campus-sim camera ctl state
    campus-sim camera ctl trigger gate-cam motion [--clear]
    campus-sim camera ctl reboot gate-cam 5
    campus-sim camera ctl clock gate-cam 3600
    campus-sim camera ctl fail gate-cam Renew fault [COUNT]
    campus-sim camera ctl snapshot gate-cam http500   (http401, hang, empty; ok: pictures again)
    campus-sim camera ctl replay gate-cam ../shared/realdata/onvif/misc/….xml …

Each camera listens on the host and port its ``[[cameras]]`` entry names, with
the user and the password (``password_file``) the gateway will use.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from pathlib import Path

from gateway.config.root import load_config
from gateway.errors import ConfigError
from simulators.camera.control import CameraControl
from simulators.camera.fleet import simulated_cameras
from simulators.modbus_control import ControlError, control_request

DEFAULT_CONTROL_PORT = 15090


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="campus-sim camera",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve every [[cameras]] of a config")
    serve.add_argument("--config", type=Path, required=True)
    serve.add_argument("--control-port", type=int, default=DEFAULT_CONTROL_PORT)
    serve.add_argument(
        "--no-events",
        action="append",
        default=[],
        metavar="CAMERA",
        help="serve this camera without an events service (pictures only), like IPyCam",
    )
    ctl = sub.add_parser("ctl", help="drive the simulated cameras")
    ctl.add_argument(
        "action", choices=["state", "trigger", "reboot", "clock", "fail", "snapshot", "replay"]
    )
    ctl.add_argument("camera", nargs="?")
    ctl.add_argument("args", nargs="*")
    ctl.add_argument("--clear", action="store_true", help="trigger: end the condition")
    ctl.add_argument("--control-port", type=int, default=DEFAULT_CONTROL_PORT)
    return parser


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "serve":
            return asyncio.run(_serve(args.config, args.control_port, set(args.no_events)))
        return asyncio.run(_ctl(args))
    except (ConfigError, ValueError, OSError, ControlError) as exc:
        print(f"campus-sim camera: {exc}", file=sys.stderr)
        return 2


async def _serve(config: Path, control_port: int, no_events: set[str]) -> int:
    cfg = load_config(config)
    if not cfg.cameras:
        raise ValueError(f"{config} has no [[cameras]]")
    unknown = no_events - {c.id for c in cfg.cameras}
    if unknown:
        raise ValueError(f"--no-events: no camera {', '.join(sorted(unknown))} in {config}")
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    async with (
        simulated_cameras(cfg, without_events=no_events) as cameras,
        CameraControl(cameras, port=control_port) as ctl,
    ):
        for camera_id, cam in cameras.items():
            print(f"camera {camera_id} on {cam.base_url}/onvif/device_service")
        print(f"control endpoint http://127.0.0.1:{ctl.port}  (campus-sim camera ctl …)")
        await stop.wait()
    return 0


async def _ctl(args: argparse.Namespace) -> int:
    port, rest = args.control_port, list(args.args)
    if args.action == "state":
        answer = await control_request("127.0.0.1", port, "GET", "/cameras")
    else:
        if not args.camera:
            raise ValueError(f"ctl {args.action} needs a camera id")
        body: dict[str, object]
        if args.action == "trigger" and len(rest) == 1:
            body = {"event": rest[0], "active": not args.clear}
        elif args.action == "reboot" and len(rest) == 1:
            body = {"off_seconds": float(rest[0])}
        elif args.action == "clock" and len(rest) == 1:
            body = {"offset_s": float(rest[0])}
        elif args.action == "fail" and len(rest) in (2, 3):
            body = {"operation": rest[0], "mode": rest[1], "count": int([*rest, "1"][2])}
        elif args.action == "snapshot" and len(rest) == 1:
            body = {"fault": None if rest[0] == "ok" else rest[0]}
        elif args.action == "replay" and rest:
            body = {"files": [str(Path(f).resolve()) for f in rest]}
        else:
            raise ValueError(f"ctl {args.action}: wrong arguments {rest} (see --help)")
        path = f"/cameras/{args.camera}/{args.action}"
        answer = await control_request("127.0.0.1", port, "POST", path, body)
    print(json.dumps(answer, ensure_ascii=False, indent=2))
    return 0
