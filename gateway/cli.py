"""``campus-gateway``: run the daemon, check a configuration, or show a running one's status.

Exit codes: 0 ok, 2 bad configuration (each message names file, line and field),
1 any other failure (outbox locked or unreadable; ``status``: no daemon answered).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import sys
from collections.abc import Sized
from pathlib import Path

import structlog

from gateway.config.advice import config_warnings
from gateway.config.files import center_key, check_files, reader_keys
from gateway.config.root import GatewayConfig, load_config
from gateway.errors import ConfigError, GatewayError
from gateway.runtime.logsetup import configure_logging
from gateway.runtime.version import gateway_version


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="campus-gateway", description=__doc__)
    parser.add_argument(
        "--version", action="version", version=f"campus-gateway {gateway_version()}"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the gateway daemon")
    run.add_argument("config", type=Path, help="TOML configuration file")
    run.add_argument("--broker", metavar="HOST:PORT", help="override [broker] host and port")
    run.add_argument("--outbox", type=Path, help="override [outbox] path")
    run.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    run.add_argument("--log-json", action="store_true", default=None, help="force JSON logs")
    check = sub.add_parser(
        "check-config", help="validate a configuration file and every file it points to"
    )
    check.add_argument("config", type=Path)
    status = sub.add_parser(
        "status", help="the running daemon's status (from its local [metrics] endpoint)"
    )
    status.add_argument("config", type=Path, help="the config the daemon runs with")
    status.add_argument("--json", action="store_true", help="print the raw JSON")
    records = sub.add_parser(
        "records",
        help="the local alarm record: the events the outbox holds, oldest first",
    )
    records.add_argument("config", type=Path, help="the config the daemon runs with")
    records.add_argument(
        "--outbox", type=Path, help="the outbox file (the unit's: /var/lib/campus-gateway/...)"
    )
    records.add_argument("--since", help="from this date or time (site time zone)")
    records.add_argument("--until", help="before this date or time (site time zone)")
    records.add_argument("--type", default="", help="event types starting with this (alarm.)")
    records.add_argument("--csv", action="store_true", help="a table, times in the site's zone")
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


def secrets_of(cfg: GatewayConfig) -> list[str]:
    """The secret values ``cfg`` points to (for the log redactor); unreadable ones skipped."""
    paths = [cfg.broker.password_file, cfg.commands.hmac_key_file]
    paths += [c.password_file for c in cfg.cameras]
    paths += [p.key_file for p in cfg.panels]
    out: list[str] = []
    for path in paths:
        if path is None:
            continue
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        out += [text.strip(), text.rstrip("\r\n")]
    return [s for s in out if s]


def _check(config: Path, cfg: GatewayConfig) -> int:
    problems = check_files(cfg, config)
    for problem in problems:
        print(f"config error: {problem}", file=sys.stderr)
    if problems:
        return 2
    if cfg.cameras:
        missing = [name for name in ("cv2", "numpy") if not _installed(name)]
        if missing:  # a warning, not an error: the alarm path must still start
            print(
                f"warning: {config}: cameras are configured but {', '.join(missing)} "
                "(OpenCV) is not installed: every picture will be reported not taken",
                file=sys.stderr,
            )
    for warning in config_warnings(cfg, config):
        print(f"warning: {warning}", file=sys.stderr)
    if cfg.commands.insecure:
        print(
            f"warning: {config}: [commands] allow_unsigned = true: commands and acks are not "
            "authenticated (a bench only)",
            file=sys.stderr,
        )
    print(
        f"{config}: ok — site {cfg.site.id}/{cfg.site.gateway}, "
        f"{_count(cfg.modules, 'module')}, {_count(cfg.zones, 'zone')}, "
        f"{_count(cfg.cameras, 'camera')}"
        + (f", {_count(cfg.panels, 'panel')}" if cfg.panels else "")
    )
    return 0


def _count(items: Sized, noun: str) -> str:
    """``"1 zone"``, ``"3 zones"``."""
    return f"{len(items)} {noun}{'' if len(items) == 1 else 's'}"


def _installed(module: str) -> bool:
    """Whether ``module`` can be found (without importing it: check-config runs
    before every start, and OpenCV costs 0.3 s and 31 MiB)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _status(cfg: GatewayConfig, raw: bool) -> int:
    from gateway.ops.client import fetch_status, format_status

    try:
        status = fetch_status(cfg.metrics, expect=(cfg.site.id, cfg.site.gateway))
    except GatewayError as exc:
        print(f"campus-gateway status: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(status, ensure_ascii=False, indent=2) if raw else format_status(status))
    return 0


def _records(cfg: GatewayConfig, args: argparse.Namespace) -> int:
    from gateway.ops import records

    tz = cfg.site.timezone
    try:
        since = None if args.since is None else records.utc_bound(args.since, tz)
        until = None if args.until is None else records.utc_bound(args.until, tz)
        events = records.read_events(
            args.outbox or cfg.outbox.path, since=since, until=until, kind=args.type
        )
        if args.csv:
            records.write_csv(events, sys.stdout, tz)
        else:
            records.write_jsonl(events, sys.stdout)
    except GatewayError as exc:
        print(f"campus-gateway records: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # piped into head: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        cfg = load_config(args.config)
        for panel in cfg.panels:
            panel.key()  # each panel's key is read now: a bad one stops the start here
        if args.command == "run":
            center_key(cfg, args.config)  # the center's key too (its encoding and length)
            reader_keys(cfg, args.config)  # and the patrol readers' (named by config line)
        if args.command == "check-config":
            return _check(args.config, cfg)
        if args.command == "status":
            return _status(cfg, args.json)
        if args.command == "records":
            return _records(cfg, args)
        if args.broker:
            cfg = with_broker(cfg, args.broker)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    configure_logging(args.log_level or cfg.logging.level, json=args.log_json,
                      secrets=secrets_of(cfg))  # fmt: skip
    for warning in config_warnings(cfg, args.config):
        structlog.get_logger("gateway.cli").warning("config.warning", warning=warning)
    from gateway.daemon import serve

    try:
        asyncio.run(serve(cfg, outbox_path=args.outbox))
    except GatewayError as exc:
        print(f"campus-gateway: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
