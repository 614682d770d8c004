"""``campus-sim center``: the duty-center console on the command line."""

from __future__ import annotations

import argparse
import asyncio
import io
import sys
from pathlib import Path

from gateway.config.keys import read_key
from gateway.errors import ConfigError
from simulators.center import CenterConsole


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``campus-sim center``."""
    parser = argparse.ArgumentParser(
        prog="campus-sim center",
        description="Simulated police-linked duty center: prints, checks and acks events.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="broker host (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=1883, help="broker port (default 1883)")
    parser.add_argument("--no-ack", action="store_true", help="never ack (a center that is down)")
    parser.add_argument(
        "--watch",
        action="store_true",
        help="a second console beside the real center: prints and checks, never acks",
    )
    parser.add_argument("--jsonl", type=Path, metavar="FILE", help="append accepted events here")
    parser.add_argument("--duration", type=float, metavar="SECONDS", help="stop after this long")
    parser.add_argument("--identifier", help="MQTT client id (default: random)")
    parser.add_argument(
        "--key-file",
        type=Path,
        metavar="FILE",
        help="the site key the acks are signed with (a gateway ignores unsigned acks "
        "unless its config says allow_unsigned = true)",
    )
    parser.add_argument(
        "--key-encoding",
        choices=["hex", "base64", "raw"],
        default="hex",
        help="how FILE holds the key, as [commands] hmac_key_encoding (default hex)",
    )
    parser.add_argument(
        "--persistent", action="store_true", help="keep the MQTT session across restarts"
    )
    return parser


async def run_center_cli(args: argparse.Namespace) -> int:
    """Run a console as ``args`` say; print a summary at the end.

    Returns:
        0 when every event was valid and no ``seq`` is missing, else 1.

    Raises:
        ConfigError: ``--key-file`` cannot be read or is not in ``--key-encoding``.
    """
    key = None
    if args.key_file is not None:
        key = read_key(args.key_file, args.key_encoding, "--key-file")
    else:
        print("campus-sim center: no --key-file: acks are unsigned", file=sys.stderr)
    console = CenterConsole(
        args.host,
        args.port,
        identifier=args.identifier,
        ack=not args.no_ack,
        watch=args.watch,
        persistent=args.persistent,
        jsonl_path=args.jsonl,
        key=key,
    )
    console.start()
    try:
        if args.duration is None:
            await asyncio.Event().wait()
        else:
            await asyncio.sleep(args.duration)
    finally:
        await console.close()
        console.say(f"SUMMARY {console.summary()}")
    return 0 if console.invalid == 0 and not console.gaps else 1


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (130 on Ctrl-C)."""
    args = build_parser().parse_args(argv)
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(encoding="utf-8")
    try:
        return asyncio.run(run_center_cli(args))
    except ConfigError as exc:
        print(f"campus-sim center: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
