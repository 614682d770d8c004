"""``campus-gateway status`` and ``--version``: what a technician types on the box.

The daemon runs as its own process; its broker is down the whole time (nothing
listens on the configured port), so everything shown comes from the box itself.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.ops.client import format_status
from gateway.runtime.version import gateway_version
from tests.fault_support import PANIC, daemon_process, module, stored_ids, wait_until
from tests.helpers import REPO_ROOT, free_port
from tests.ops_support import ops_config

pytestmark = pytest.mark.timeout(90)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        capture_output=True, text=True, check=False, cwd=REPO_ROOT,
    )  # fmt: skip


def test_version_is_the_installed_one() -> None:
    out = _cli("--version")
    assert out.returncode == 0
    assert out.stdout.strip() == f"campus-gateway {gateway_version()}"
    assert gateway_version()[0].isdigit() and gateway_version() != "0+unknown"


async def test_status_works_with_the_broker_down(tmp_path: Path) -> None:
    async with module() as sim:
        path, _ = ops_config(tmp_path, broker_port=free_port(), module_port=sim.port)
        outbox = tmp_path / "outbox.sqlite"
        async with daemon_process(path, tmp_path / "gateway.log"):
            await wait_until(lambda: stored_ids(outbox, "gateway.started"), 30, "daemon up")
            sim.press(PANIC[0])
            await wait_until(lambda: stored_ids(outbox, "alarm.panic"), 10, "panic stored")

            async def answered() -> bool:
                return (await asyncio.to_thread(_cli, "status", str(path))).returncode == 0

            await wait_until(answered, 15, "status answers")
            shown = await asyncio.to_thread(_cli, "status", str(path))
            raw = json.loads((await asyncio.to_thread(_cli, "status", str(path), "--json")).stdout)
            # Another site's config on the same [metrics] port: refused, not shown as its own.
            other = tmp_path / "other.toml"
            text = path.read_text(encoding="utf-8")
            other.write_text(text.replace('id = "fault-school"', 'id = "other-school"', 1))
            foreign = await asyncio.to_thread(_cli, "status", str(other))
    text = shown.stdout
    assert f"campus-gateway {gateway_version()}" in text
    assert "uplink   disconnected" in text
    assert "devices  1" in text and "online   modbus_io     io" in text
    assert "in alarm 1" in text and "P10" in text and "alarm.panic" in text
    assert "gateway.started" in text and "pending" in text
    assert raw["uplink"]["state"] == "disconnected"
    assert raw["outbox"]["depth"] >= 2  # gateway.started and the panic, at least
    assert raw["alarms"][0]["zone"] == "P10"
    assert [e["type"] for e in raw["recent"]].count("alarm.panic") == 1
    assert len(raw["recent"]) <= 10
    assert foreign.returncode == 1 and foreign.stdout == ""
    assert "the status of fault-school/gw1, not of other-school/gw1" in foreign.stderr
    # A long subject (a camera's names its video source) keeps the columns aligned.
    raw["recent"][0]["subject"] = "gate-cam/VideoSourceConfig_1"
    shown_lines = format_status(raw).split("\n")
    first = shown_lines.index(f"last {len(raw['recent'])} events") + 1
    events = shown_lines[first : first + len(raw["recent"])]
    columns = {line.index(f" {e['state']} ") for line, e in zip(events, raw["recent"], strict=True)}
    assert len(columns) == 1, events


def test_status_without_a_daemon_says_so(tmp_path: Path) -> None:
    path, port = ops_config(tmp_path, broker_port=free_port(), module_port=free_port())
    out = _cli("status", str(path))
    assert out.returncode == 1
    assert f"127.0.0.1:{port}/status" in out.stderr and "is campus-gateway running?" in out.stderr
