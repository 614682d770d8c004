"""``campus-gateway``: run the daemon, or check a configuration file.

Exit codes: 0 ok, 2 bad configuration (the message names file, line and field),
1 any other start-up failure (outbox locked or unreadable).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from gateway.config.root import GatewayConfig, load_config
from gateway.errors import ConfigError, GatewayError
from gateway.runtime.logsetup import configure_logging


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="campus-gateway", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the gateway daemon")
    run.add_argument("config", type=Path, help="TOML configuration file")
    run.add_argument("--broker", metavar="HOST:PORT", help="override [broker] host and port")
    run.add_argument("--outbox", type=Path, help="override [outbox] path")
    run.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    run.add_argument("--log-json", action="store_true", default=None, help="force JSON logs")
    check = sub.add_parser("check-config", help="validate a configuration file")
    check.add_argument("config", type=Path)
    return parser


def with_broker(cfg: GatewayConfig, broker: str) -> GatewayConfig:
    """A copy of ``cfg`` whose broker is ``HOST:PORT``.

    Raises:
        ConfigError: ``broker`` is not ``HOST:PORT``.
    """
    host, _, port = broker.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--broker {broker!r} is not HOST:PORT", file="(command line)")
    return cfg.model_copy(
        update={"broker": cfg.broker.model_copy(update={"host": host, "port": int(port)})}
    )


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        cfg = load_config(args.config)
        for panel in cfg.panels:
            panel.key()  # each panel's key is read now: a bad one stops the start here
        if args.command == "check-config":
            panels = f", {len(cfg.panels)} panels" if cfg.panels else ""
            print(
                f"{args.config}: ok — site {cfg.site.id}/{cfg.site.gateway}, "
                f"{len(cfg.modules)} modules, {len(cfg.zones)} zones{panels}"
            )
            return 0
        if args.broker:
            cfg = with_broker(cfg, args.broker)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    configure_logging(args.log_level or cfg.logging.level, json=args.log_json)
    from gateway.daemon import serve

    try:
        asyncio.run(serve(cfg, outbox_path=args.outbox))
    except GatewayError as exc:
        print(f"campus-gateway: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
