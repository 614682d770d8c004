"""``campus-sim panel`` as a technician runs it, against the daemon over real sockets."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from gateway.config.root import load_config
from tests.helpers import REPO_ROOT, SIGNED_COMMANDS_TOML, free_port
from tests.panels_support import KEY_TEXT, listening

pytestmark = pytest.mark.timeout(90)

CONFIG = (
    SIGNED_COMMANDS_TOML.replace("{", "{{").replace("}", "}}")
    + """
[site]
id = "cli-school"
gateway = "gw1"

[broker]
port = {broker}

[[areas]]
id = "TEACH"
name = "教学行政区"

[dc09]
listen = [{{ protocol = "tcp", host = "127.0.0.1", port = {tcp} }},
          {{ protocol = "udp", host = "127.0.0.1", port = {udp} }}]

[[panels]]
id = "east-panel"
name = "东教学楼报警主机"
account = "1234"
key_file = "panel.key"
supervision_s = 600

[[panels.zones]]
number = 3
id = "E03"
name = "东门红外"

[[panels]]
id = "eldes"
account = "9999"
supervision_s = 600
"""
)


async def _sim(*args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "simulators.cli", "panel", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=REPO_ROOT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode()


def _write(tmp_path: Path) -> Path:
    (tmp_path / "panel.key").write_text(KEY_TEXT + "\n", encoding="utf-8")
    path = tmp_path / "site.toml"
    path.write_text(
        CONFIG.format(broker=free_port(), tcp=free_port(), udp=free_port()), encoding="utf-8"
    )
    return path


async def test_campus_sim_panel_sends_what_a_technician_asks(tmp_path: Path) -> None:
    config = _write(tmp_path)
    cfg = load_config(config)
    async with listening(cfg, tmp_path / "outbox.sqlite") as gateway:
        assert gateway.panels is not None
        code, out = await _sim("--config", str(config), "cid", "1120", "--zone", "3")
        assert code == 0 and "ACK after 1 attempt(s)" in out, out
        code, out = await _sim("--config", str(config), "--udp", "packet",
                               "CID:1130:1:5", "SIA:BH:1:5", "NULL")  # fmt: skip
        assert code == 0 and out.count(": ACK") == 3, out
        code, out = await _sim("--config", str(config), "--clock-offset", "-600", "sia", "PA")
        assert code == 0 and "after 2 attempt(s)" in out and "clock now" in out, out
        code, out = await _sim("--config", str(config), "--panel", "eldes", "--crc-with-cr",
                               "--decimal-length", "cid", "1602")  # fmt: skip
        assert code == 0 and "ACK" in out, out
        code, out = await _sim("--config", str(config), "--account", "7777", "--plain",
                               "--retries", "0", "null")  # fmt: skip
        assert code == 1 and "DUH" in out, out
        counts = gateway.panels.receiver.counts
    assert (counts["accepted"], counts["null"], counts["duh"], counts["nak"]) == (5, 1, 1, 1)


async def test_campus_sim_panel_replays_the_real_captures(tmp_path: Path, realdata: Path) -> None:
    config = _write(tmp_path)
    cfg = load_config(config)
    async with listening(cfg, tmp_path / "outbox.sqlite") as gateway:
        assert gateway.panels is not None
        tcp = cfg.dc09.listen[0].port
        code, out = await _sim("--port", str(tcp), "--ack-timeout", "3", "replay",
                               str(realdata / "dc09" / "eldes_adm_cid.txt"),
                               str(realdata / "dc09" / "fioletoven_dc09_tests.txt"))  # fmt: skip
    lines = out.splitlines()
    assert code == 0 and len(lines) == 7, out
    assert all("→ ACK" in line for line in lines[:4]), out  # Eldes: its account is configured
    assert "→ DUH" in lines[4] and "→ DUH" in lines[5], out  # account 1234 has a key: plain refused
    assert "→ no answer" in lines[6], out  # a NAK sent to a receiver is not answered
