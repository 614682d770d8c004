"""``campus-sim panel``: an intrusion panel reporting to the gateway over SIA DC-09.

The panel is one ``[[panels]]`` of a config (the first, or ``--panel``): its
account, its key (``key_file``) and the gateway's ``[dc09] listen`` address; any
of them can be given instead. It obeys the answers as a real panel does (a NAK
sets its clock and it sends again; no answer: sent again; see
:mod:`simulators.dc09_panel`). Examples::

    campus-sim panel --config config/demo.toml cid 1120 --zone 3 --partition 1   # a panic
    campus-sim panel --config config/demo.toml sia BA --zone 5 --area 1          # burglary
    campus-sim panel --config config/demo.toml packet CID:1130:1:5 CID:3130:1:5 SIA:PA:1:3
    campus-sim panel --config config/demo.toml null --every 30                   # link tests
    campus-sim panel --config config/demo.toml --clock-offset -300 cid 1120 --zone 3
    campus-sim panel --config … --plain --crc-with-cr cid 1602                   # Eldes-style
    campus-sim panel --port 15030 replay ../shared/realdata/dc09/*.txt          # real frames

Exit status: 0 when every message was acknowledged (replay: always, it reports).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from pathlib import Path

from drivers.dc09.frame import FrameError, parse_frame
from gateway.config.panels import PanelConfig
from gateway.config.root import load_config
from gateway.errors import ConfigError
from simulators.dc09_link import PanelLink
from simulators.dc09_panel import Message, Outcome, SimulatedPanel, sia_payload

DEFAULT_PORT = 15030


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="campus-sim panel",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", type=Path, help="the gateway's TOML config")
    parser.add_argument("--panel", help="[[panels]] id (default: the first)")
    parser.add_argument("--host", default=None, help="the gateway (default: its listen host)")
    parser.add_argument("--port", type=int, help="the gateway's DC-09 port")
    parser.add_argument("--udp", action="store_true", help="send over UDP (default TCP)")
    parser.add_argument("--account", help="the panel's account (default: the config's)")
    parser.add_argument("--plain", action="store_true", help="send unencrypted despite a key")
    parser.add_argument("--receiver", help="R number to send (hex)")
    parser.add_argument("--line", default="0", help="L number to send (hex)")
    parser.add_argument("--clock-offset", type=float, default=0.0, metavar="S",
                        help="the panel's clock is this far off (a NAK corrects it)")  # fmt: skip
    parser.add_argument("--ack-timeout", type=float, default=3.0, metavar="S")
    parser.add_argument("--retries", type=int, default=3)
    parser.add_argument("--crc-with-cr", action="store_true", help="Eldes: CR in CRC and length")
    parser.add_argument("--decimal-length", action="store_true", help="length in decimal")
    parser.add_argument("--binary-pad", action="store_true", help="Ajax: random binary pad")
    sub = parser.add_subparsers(dest="action", required=True)
    cid = sub.add_parser("cid", help="one Contact ID event: QEEE (1120 new panic, 3130 restore)")
    cid.add_argument("event", help="qualifier and code: 1120, 3130, 1401 …")
    cid.add_argument("--partition", type=int, default=1)
    cid.add_argument("--zone", type=int, default=0, help="zone or user number")
    sia = sub.add_parser("sia", help="one SIA event: BA, PA, CL …")
    sia.add_argument("code")
    sia.add_argument("--zone", type=int, help="zone, user or area number")
    sia.add_argument("--area", type=int, help="ri: the partition")
    sia.add_argument("--text", default="")
    packet = sub.add_parser("packet", help="several messages in one packet (as Ajax sends)")
    packet.add_argument("messages", nargs="+", metavar="CID:QEEE:GG:ZZZ|SIA:CODE:AREA:NUM")
    null = sub.add_parser("null", help="NULL link tests")
    null.add_argument("--every", type=float, help="seconds between them (default: send one)")
    null.add_argument("--count", type=int, help="stop after this many (with --every)")
    replay = sub.add_parser("replay", help="send the lines of capture files as frames")
    replay.add_argument("files", nargs="+", type=Path)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return asyncio.run(_run(args))
    except (ConfigError, ValueError, OSError) as exc:
        print(f"campus-sim panel: {exc}", file=sys.stderr)
        return 2


async def _run(args: argparse.Namespace) -> int:
    if args.action == "replay":
        host, port = _address(args, None)
        return await _replay(host, port, args)
    panel = _panel_config(args)
    host, port = _address(args, args.config)
    key = None if args.plain or panel is None else panel.key()
    account = args.account or (panel.account if panel is not None else None)
    if account is None:
        raise ValueError("give --config (a [[panels]] entry) or --account")
    sim = SimulatedPanel(
        host, port, account, key=key, transport="udp" if args.udp else "tcp",
        receiver=args.receiver, line=args.line, clock_offset_s=args.clock_offset,
        ack_timeout_s=args.ack_timeout, retries=args.retries, binary_pad=args.binary_pad,
        crc_with_cr=args.crc_with_cr, decimal_length=args.decimal_length,
    )  # fmt: skip
    async with sim:
        outcomes = await _act(sim, args)
    return 0 if all(o.acked for o in outcomes) else 1


async def _act(sim: SimulatedPanel, args: argparse.Namespace) -> list[Outcome]:
    if args.action == "cid":
        messages: list[Message] = [("ADM-CID", _cid(args.event, args.partition, args.zone))]
    elif args.action == "sia":
        messages = [("SIA-DCS", sia_payload(args.code, args.zone, area=args.area, text=args.text))]
    elif args.action == "packet":
        messages = [_message(text) for text in args.messages]
    else:
        return await _link_tests(sim, args.every, args.count)
    started = time.monotonic()
    outcomes = await sim.send_packet(messages)
    for (token, payload), outcome in zip(messages, outcomes, strict=True):
        _say(sim, token, payload, outcome, time.monotonic() - started)
    return outcomes


async def _link_tests(sim: SimulatedPanel, every: float | None, count: int | None) -> list[Outcome]:
    outcomes: list[Outcome] = []
    while True:
        started = time.monotonic()
        outcome = await sim.link_test()
        _say(sim, "NULL", None, outcome, time.monotonic() - started)
        outcomes.append(outcome)
        if every is None or (count is not None and len(outcomes) >= count):
            return outcomes
        await asyncio.sleep(every)


def _say(
    sim: SimulatedPanel, token: str, payload: str | None, outcome: Outcome, took: float
) -> None:
    what = f"{token} {payload}" if payload else token
    answer = outcome.answer or "no answer"
    extra = f", clock now {sim.clock_offset_s:+.1f} s" if sim.clock_offset_s else ""
    bad = f", {sim.malformed} malformed answer(s)" if sim.malformed else ""
    print(f"seq {outcome.seq} {what}: {answer} after {outcome.attempts} attempt(s), "
          f"{took * 1000:.0f} ms{extra}{bad}", flush=True)  # fmt: skip


def _cid(event: str, partition: int, zone: int) -> str:
    if len(event) != 4 or not event.isdigit() or event[0] not in "136":
        raise ValueError(f"Contact ID event {event!r} is Q (1, 3 or 6) and a 3-digit code")
    return f"{event} {partition:02d} {zone:03d}"


def _message(text: str) -> Message:
    """``CID:1120:1:3`` or ``SIA:BA:1:5`` (area, then number) or ``NULL``."""
    kind, *rest = text.split(":")
    if kind.upper() == "NULL":
        return ("NULL", None)
    if kind.upper() == "CID" and len(rest) == 3:
        return ("ADM-CID", _cid(rest[0], int(rest[1]), int(rest[2])))
    if kind.upper() == "SIA" and 1 <= len(rest) <= 3:
        area = int(rest[1]) if len(rest) > 1 and rest[1] else None
        number = int(rest[2]) if len(rest) > 2 and rest[2] else None
        return ("SIA-DCS", sia_payload(rest[0], number, area=area))
    raise ValueError(f"message {text!r} is not CID:QEEE:GG:ZZZ, SIA:CODE:AREA:NUM or NULL")


def _panel_config(args: argparse.Namespace) -> PanelConfig | None:
    if args.config is None:
        return None
    panels = load_config(args.config).panels
    for panel in panels:
        if args.panel in (None, panel.id):
            return panel
    raise ValueError(f"{args.config}: no [[panels]] {args.panel or ''}".rstrip())


def _address(args: argparse.Namespace, config: Path | None) -> tuple[str, int]:
    host, port = args.host, args.port
    if config is not None and (host is None or port is None):
        protocol = "udp" if args.udp else "tcp"
        for listen in load_config(config).dc09.listen:
            if listen.protocol == protocol:
                listen_host = "127.0.0.1" if listen.host in ("0.0.0.0", "::", "") else listen.host
                host, port = host or listen_host, port or listen.port
                break
    return host or "127.0.0.1", port or DEFAULT_PORT


async def _replay(host: str, port: int, args: argparse.Namespace) -> int:
    """Send each line of each file as one frame and print the answer (or none).

    Each line goes over a connection (or socket) of its own, so an answer that
    comes late is never taken for the next line's.
    """
    for path in args.files:
        for n, line in enumerate(path.read_text(encoding="latin-1").splitlines(), 1):
            if not line.strip():
                continue
            link = PanelLink(host, port, "udp" if args.udp else "tcp")
            try:
                await link.send(b"\n" + line.encode("latin-1") + b"\r")
                answer = await link.next_answer(args.ack_timeout)
            finally:
                with contextlib.suppress(OSError):
                    await link.close()
            print(f"{path.name}:{n} {line[:60]} → {_describe(answer)}", flush=True)
    return 0


def _describe(answer: bytes | None) -> str:
    if answer is None:
        return "no answer"
    try:
        frame = parse_frame(answer)
    except FrameError as exc:
        return f"malformed answer ({exc})"
    return ("*" if frame.encrypted else "") + f"{frame.token} seq {frame.seq}"
