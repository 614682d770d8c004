"""Logs for journald: one JSON object per line, a syslog priority journald understands,
and no secret in any line.

journald reads a service's stdout/stderr as a stream and takes a leading ``<N>``
as the line's priority (sd-daemon(3)); systemd tells the service which stream is
the journal's with ``JOURNAL_STREAM=<dev>:<inode>`` (systemd.exec(5)). The tests
give the daemon a file as stderr and name that file in ``JOURNAL_STREAM``.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fault_support import daemon_process, module, wait_until
from tests.helpers import REPO_ROOT, TEST_KEY_FILE, free_port
from tests.ops_support import ops_config

pytestmark = pytest.mark.timeout(90)

_EMIT = """
import logging, structlog
from gateway.runtime.logsetup import configure_logging
configure_logging("info", json=True, secrets=["hunter2/secret"])
log = structlog.get_logger("t")
log.info("plain.info", n=1)
log.warning("a.warning", password="hunter2/secret")
log.error("an.error", url="rtsp://admin:hunter2/secret@cam/1")
logging.getLogger("paho").warning("library warning %s", "hunter2%2Fsecret")
try:
    1 / 0
except ZeroDivisionError:
    log.exception("with.traceback")
"""


_LIBRARIES = """
import asyncio, threading, warnings
from gateway.runtime.logsetup import configure_logging
configure_logging("info", json=True)
warnings.warn("a library's warning", RuntimeWarning)
loop = asyncio.new_event_loop()
loop.call_exception_handler({"message": "an asyncio complaint"})
loop.close()
t = threading.Thread(target=lambda: 1 / 0, name="paho-connect")
t.start()
t.join()
"""


def test_library_warnings_asyncio_and_thread_crashes_are_json_lines(tmp_path: Path) -> None:
    """Issue 11: aiomqtt's warnings.warn(...) wrote plain text into the JSON log."""
    done = subprocess.run(
        [sys.executable, "-c", _LIBRARIES],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        check=True,
    )
    bodies = [json.loads(line) for line in done.stderr.splitlines()]  # every line is JSON
    assert len(bodies) == 3, done.stderr
    warning, complaint, crash = bodies
    assert warning["level"] == "warning" and "a library's warning" in warning["event"]
    assert "RuntimeWarning" in warning["event"]
    assert complaint["level"] == "error" and complaint["event"] == "an asyncio complaint"
    assert (crash["event"], crash["thread"]) == ("thread.crashed", "paho-connect")
    assert "ZeroDivisionError" in crash["exception"]


def _emit(tmp_path: Path, journal: bool) -> list[str]:
    out = tmp_path / "journal.stream"
    with out.open("w") as stream:
        st = os.fstat(stream.fileno())
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        env.pop("JOURNAL_STREAM", None)
        if journal:
            env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
        subprocess.run([sys.executable, "-c", _EMIT], stderr=stream, env=env, check=True)
    return out.read_text().splitlines()


def test_under_journald_each_line_has_its_priority_and_one_json_object(tmp_path: Path) -> None:
    lines = _emit(tmp_path, journal=True)
    assert len(lines) == 5, lines
    priorities = [line[: line.index(">") + 1] for line in lines]
    assert priorities == ["<6>", "<4>", "<3>", "<4>", "<3>"]
    bodies = [json.loads(line[len(p) :]) for line, p in zip(lines, priorities, strict=True)]
    assert [b["event"] for b in bodies[:3]] == ["plain.info", "a.warning", "an.error"]
    assert bodies[3]["event"] == "library warning ***"  # the stdlib's lines too, redacted
    assert "ZeroDivisionError" in bodies[4]["exception"]
    assert all("hunter2" not in line for line in lines)


def test_without_journald_lines_are_bare_json(tmp_path: Path) -> None:
    lines = _emit(tmp_path, journal=False)
    assert [json.loads(line)["level"] for line in lines] == [
        "info", "warning", "error", "warning", "error",
    ]  # fmt: skip


async def test_no_secret_in_the_log_of_a_run_with_failed_connects(tmp_path: Path) -> None:
    secrets = {
        "broker.password": "Br0ker-pa55word-XYZ",
        "center.key": "c0ffee5ec7e7" * 5 + "abcd",  # 32 bytes in hex
        "camera.password": "Cam3ra-secret-pw",
    }
    for name, value in secrets.items():
        (tmp_path / name).write_text(value + "\n")
    cam_port = free_port()
    extra = f"""
[[cameras]]
id = "gate-cam"
host = "127.0.0.1"
port = {cam_port}
username = "admin"
password_file = "camera.password"
"""
    async with module() as sim:
        path, _ = ops_config(tmp_path, broker_port=free_port(), module_port=sim.port, extra=extra)
        text = path.read_text().replace('[broker]\n', '[broker]\nusername = "gw"\n'
                                        'password_file = "broker.password"\n', 1)  # fmt: skip
        text = text.replace('level = "warning"', 'level = "debug"')
        text = text.replace(f'hmac_key_file = "{TEST_KEY_FILE}"', 'hmac_key_file = "center.key"')
        assert 'hmac_key_file = "center.key"' in text
        path.write_text(text)
        log = tmp_path / "gateway.log"
        async with daemon_process(path, log):
            await wait_until(
                lambda: log.exists() and log.read_text().count("uplink.connect_failed") >= 2,
                20,
                "connects failing",
            )
            await wait_until(lambda: "gate-cam" in log.read_text(), 20, "camera failing")
        check = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "gateway.cli", "check-config", str(path)],
            capture_output=True, text=True, check=False, cwd=REPO_ROOT,
        )  # fmt: skip
    written = log.read_text() + check.stdout + check.stderr
    assert "uplink.connect_failed" in written
    for name, value in secrets.items():
        assert value not in written, f"{name} leaked into the log"


def test_console_tracebacks_are_plain_python_ones() -> None:
    """A console log (``run`` without ``--log-json``) renders a crash as Python's plain
    traceback, never rich's with each frame's locals: that costs the event loop
    hundreds of milliseconds per crash on a loaded box, and shows every local."""
    import io

    import structlog

    from gateway.runtime.logsetup import configure_logging

    out = io.StringIO()
    configure_logging("info", json=False, stream=out)
    marker = "a-local-value-never-shown"
    try:
        local = marker
        raise OSError(f"bind failed ({len(local)})")
    except OSError:
        structlog.get_logger("t").exception("task.crashed")
    text = out.getvalue()
    assert "Traceback (most recent call last):" in text and "OSError: bind failed" in text
    assert marker not in text  # no frame's local variables
    assert "╭" not in text and "│" not in text  # no rich panels
