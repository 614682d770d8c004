"""A small test campus for the delivery-fault tests: one 16-input module, fast polling.

Channels 0-9 are intrusion zones ``Z00``..``Z09`` (normally open), channels 10-15
panic buttons ``P10``..``P15``. The config is written as a real TOML file so the
same campus runs in-process (:func:`gateway.daemon.running`) or as a daemon process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any

from drivers.modbus_io.poller import ModulePoller
from gateway.config.modbus_profiles import PROFILES
from gateway.config.root import GatewayConfig, load_config
from simulators.center import CenterConsole
from simulators.modbus_module import SimulatedModule
from tests.helpers import TEST_KEY_FILE
from tests.power_cut_support import MODULE, Daemon

INTRUSION = list(range(10))
PANIC = list(range(10, 16))

_TEMPLATE = (
    """
[commands]
hmac_key_file = "{key_file}"

[site]
id = "fault-school"
gateway = "gw1"
name = "故障测试学校"

[broker]
host = "127.0.0.1"
port = {broker_port}
window = {window}
publish_timeout = {publish_timeout}
reconnect_min = 0.1
reconnect_max = {reconnect_max}
heartbeat_s = {heartbeat_s}
{keepalive}

[outbox]
path = "{outbox}"
ack_timeout_s = {ack_timeout_s}
max_rows = {max_rows}
alarm_reserve_rows = {alarm_reserve_rows}
ballast_mb = {ballast_mb}
{outbox_extra}

[logging]
level = "warning"

[metrics]
port = {metrics_port}

[bench]
port = {bench_port}
"""
    + MODULE
)

_ZONE = """
[[zones]]
id = "{id}"
name = "{name}"
type = "{type}"
module = "io"
input = {input}
"""


def loop_disk_missing(tools: Iterable[str], root_for: str) -> str | None:
    """Why a test on a loop-mounted disk image cannot run here, or None: it needs
    root (for ``root_for``), ``tools`` installed and a free loop device."""
    if os.geteuid() != 0:
        return f"needs root ({root_for})"
    for tool in tools:
        if shutil.which(tool) is None:
            return f"{tool} is not installed (e2fsprogs, util-linux)"
    found = subprocess.run(["losetup", "-f"], capture_output=True, text=True, check=False)
    if found.returncode != 0:
        return f"no free loop device: {found.stderr.strip()}"
    return None


def write_config(directory: Path, *, broker_port: int, module_port: int, **overrides: Any) -> Path:
    """Write the test campus config; ``overrides`` replace ``[broker]``/``[outbox]`` values
    (``keepalive`` is left to its default unless given), ``metrics_port`` and ``bench_port``;
    ``outbox_extra`` is more TOML for ``[outbox]``, ``extra`` more TOML at the end.

    The local endpoints take free ports (``[metrics]`` and ``[bench]`` port 0) unless
    ``metrics_port`` or ``bench_port`` is given: tests running side by side, or beside a
    demo, never fight over the fixed default ports."""
    values: dict[str, Any] = {
        "window": 20,
        "publish_timeout": 5.0,
        "reconnect_max": 1.0,
        "heartbeat_s": 10.0,
        "keepalive": None,
        "outbox": directory / "outbox.sqlite",
        "ack_timeout_s": 30.0,
        "max_rows": 1_000_000,
        "alarm_reserve_rows": 1000,
        "ballast_mb": 0,
        "outbox_extra": "",
        "extra": "",
        "metrics_port": 0,
        "bench_port": 0,
    }
    values.update(overrides)
    keepalive = values["keepalive"]
    values["keepalive"] = "" if keepalive is None else f"keepalive = {keepalive}"
    text = _TEMPLATE.format(
        broker_port=broker_port, module_port=module_port, key_file=TEST_KEY_FILE, **values
    )
    for channel in INTRUSION:
        text += _ZONE.format(
            id=f"Z{channel:02d}", name=f"教室{channel}", type="intrusion", input=channel
        )
    for channel in PANIC:
        text += _ZONE.format(
            id=f"P{channel}", name=f"报警按钮{channel}", type="panic", input=channel
        )
    text += values["extra"]
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "gateway.toml"
    path.write_text(text, encoding="utf-8")
    return path


def campus_config(directory: Path, **kwargs: Any) -> GatewayConfig:
    """:func:`write_config` then load it."""
    return load_config(write_config(directory, **kwargs))


def module() -> SimulatedModule:
    """The simulated 16-input module (start it with ``async with``)."""
    return SimulatedModule(PROFILES["generic"])


async def toggle(sim: SimulatedModule, channels: list[int], times: int, gap: float = 0.15) -> int:
    """Flip each channel ``times`` times, ``gap`` seconds apart; returns transitions made."""
    state = {c: sim.inputs[c] for c in channels}
    for _ in range(times):
        for channel in channels:
            state[channel] = not state[channel]
            sim.set_input(channel, closed=state[channel])
        await asyncio.sleep(gap)
    return times * len(channels)


async def toggle_polled(
    sim: SimulatedModule, poller: ModulePoller, channels: list[int], times: int
) -> int:
    """Flip each channel ``times`` times, each round only once ``poller`` has reported the
    last (as fast as the gateway reads, and no flip lost to a late poll on a loaded
    machine); returns transitions made.

    The first flip waits for the poller's first read (a flip before it is no transition).

    Raises:
        AssertionError: the module not read, or a round not reported, within 10 s.
    """
    await wait_until(lambda: None not in poller.inputs, 10, "module read")
    for _ in range(times):
        want = {c: not sim.inputs[c] for c in channels}
        for channel, closed in want.items():
            sim.set_input(channel, closed=closed)
        await wait_until(
            lambda want=want: all(poller.inputs[c] is v for c, v in want.items()),
            10,
            "flips polled",
        )
    return times * len(channels)


async def wait_until(predicate: Callable[[], Any], within: float, what: str) -> None:
    """Poll ``predicate`` (sync or async) every 50 ms until true.

    Raises:
        AssertionError: not true within ``within`` seconds.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        if loop.time() > deadline:
            raise AssertionError(f"not within {within} s: {what}")
        await asyncio.sleep(0.05)


def stored_ids(outbox: Path, type_prefix: str = "alarm.") -> list[str]:
    """Event ids in an outbox file, in the order stored (seq order within a stream; the
    daemon may be running)."""
    return _stored(outbox, type_prefix, "id")


def stored_states(outbox: Path, type_prefix: str = "") -> list[str]:
    """``data.state`` of the events in an outbox file, in seq order (read-only)."""
    with contextlib.closing(sqlite3.connect(f"file:{outbox}?mode=rw", uri=True, timeout=5)) as db:
        rows = db.execute(
            "SELECT payload FROM messages WHERE seq IS NOT NULL AND type LIKE ? ORDER BY n",
            (type_prefix + "%",),
        ).fetchall()
    return [str(json.loads(bytes(p))["data"].get("state")) for (p,) in rows]


def stored_types(outbox: Path, type_prefix: str = "") -> list[str]:
    """Event types in an outbox file, in seq order (read-only)."""
    return _stored(outbox, type_prefix, "type")


ESCALATION = "alarm.unacknowledged"
"""The gateway's own escalation of an alarm the center has not acked: not an alarm of the
campus, so the helpers here leave it out unless it is asked for by name."""


def _stored(outbox: Path, type_prefix: str, column: str) -> list[str]:
    if not outbox.exists():
        return []
    with contextlib.closing(sqlite3.connect(f"file:{outbox}?mode=rw", uri=True, timeout=5)) as db:
        try:
            rows = db.execute(
                f"SELECT {column} FROM messages WHERE seq IS NOT NULL AND type LIKE ?"
                " AND (type != ? OR ? = ?) ORDER BY n",
                (type_prefix + "%", ESCALATION, type_prefix, ESCALATION),
            ).fetchall()
        except sqlite3.OperationalError:  # created a moment ago, no schema yet
            return []
    return [str(r[0]) for r in rows]


def row_states(outbox: Path, type_prefix: str = "") -> list[tuple[str, str, bool, bool]]:
    """(type, id, sent, acked) of every event row whose type starts with ``type_prefix``,
    in seq order (read-only; the daemon may be running)."""
    with contextlib.closing(sqlite3.connect(f"file:{outbox}?mode=rw", uri=True, timeout=5)) as db:
        rows = db.execute(
            "SELECT type, id, sent_at IS NOT NULL, acked_at IS NOT NULL FROM messages"
            " WHERE seq IS NOT NULL AND type LIKE ? ORDER BY n",
            (type_prefix + "%",),
        ).fetchall()
    return [(t, i, bool(s), bool(a)) for t, i, s, a in rows]


def puback_counts(outbox: Path) -> dict[str, int]:
    """Event id → how many PUBACKs its row has seen (more than one: published again after
    its ack timeout), read-only."""
    with contextlib.closing(sqlite3.connect(f"file:{outbox}?mode=rw", uri=True, timeout=5)) as db:
        rows = db.execute("SELECT id, attempts FROM messages WHERE seq IS NOT NULL").fetchall()
    return {str(i): int(n) for i, n in rows}


def alarms(center: CenterConsole, type_: str = "alarm.") -> list[dict[str, Any]]:
    """The center's accepted events whose type starts with ``type_`` (``alarm.unacknowledged``
    only when ``type_`` names it)."""
    return [
        e
        for e in center.events
        if e["type"].startswith(type_) and (e["type"] != ESCALATION or type_ == ESCALATION)
    ]


@contextlib.asynccontextmanager
async def daemon_process(
    config: Path, log: Path, env: dict[str, str] | None = None
) -> AsyncIterator[asyncio.subprocess.Process]:
    """``campus-gateway run CONFIG`` as a real process (``env`` added to its environment);
    SIGTERM (then SIGKILL) on exit."""
    async with Daemon(config, log.parent, env) as daemon:
        yield await daemon.start(log)
