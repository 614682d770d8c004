"""The demo campus at rest: the gateway's CPU and memory with nothing happening.

Issue 14's goal for the demo campus (5 modules, 2 cameras, the patrol, the DC-09
receiver): at most 1.5 % of a core and 100 MiB at rest.

Real parts: the demo campus exactly as ``scripts/demo.sh`` runs it (``campus-sim
campus``: Debian's mosquitto, the simulated I/O modules, cameras and panel, the
center console, and the gateway as its own process with ``config/demo.toml``), in
its quiet mode (``--no-scenario``, nothing pressed) or after its scripted scenario
(``--scenario``: the window starts ``--settle-s`` after the start, once it is over).

Method: find the gateway's process (``gateway.cli run``), wait ``--settle-s``, then
read its CPU (utime + stime of every thread, ``/proc/<pid>/stat``) over
``--window-s`` and its memory (``VmRSS`` now, ``VmHWM`` the peak since start); and,
beside it, the resident memory of its picture processes at the window's start and
end (``drivers/onvif_camera/picture_process.py``), which the gateway's own figure
does not include.

    .venv/bin/python bench/at_rest.py --window-s 60
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

from contact_latency import cpu_seconds, memory_kib  # noqa: E402


def gateway_pid(campus: subprocess.Popen[bytes], within: float) -> int:
    """The pid of the gateway process the campus started (a child running
    ``gateway.cli run``); RuntimeError when it is not up within ``within`` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if campus.poll() is not None:
            raise RuntimeError(f"the campus ended (exit {campus.returncode}) before the gateway")
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                cmdline = (proc / "cmdline").read_bytes().split(b"\0")
                status = (proc / "status").read_text()
            except OSError:
                continue
            ppid = next((int(v.split()[1]) for v in status.splitlines() if v[:5] == "PPid:"), 0)
            if ppid == campus.pid and b"gateway.cli" in cmdline and b"run" in cmdline:
                return int(proc.name)
        time.sleep(0.2)
    raise RuntimeError(f"no gateway process within {within} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--window-s", type=float, default=60.0)
    parser.add_argument("--settle-s", type=float, default=45.0)
    parser.add_argument("--scenario", action="store_true", help="run the scripted scenario first")
    parser.add_argument(
        "--config", default="config/demo.toml", help="another campus (e.g. without cameras)"
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-at-rest-"))
    print(
        f"settings: demo campus ({args.config}), "
        f"{'after its scenario' if args.scenario else 'quiet (--no-scenario)'}, settle "
        f"{args.settle_s:g} s, window {args.window_s:g} s, load average "
        f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs"
    )
    command = [str(ROOT / ".venv" / "bin" / "campus-sim"), "campus", "--config", args.config]
    command += [] if args.scenario else ["--no-scenario"]
    command += ["--duration", str(args.settle_s + args.window_s + 30)]
    with (work / "campus.log").open("wb") as log:
        campus = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=log)
        try:
            pid = gateway_pid(campus, 60)
            time.sleep(args.settle_s)
            pictures_before = picture_memory(pid)
            cpu0, t0 = cpu_seconds(pid), time.monotonic()
            time.sleep(args.window_s)
            cpu, wall = cpu_seconds(pid) - cpu0, time.monotonic() - t0
            mem = memory_kib(pid)
            pictures_after = picture_memory(pid)
        finally:
            campus.send_signal(signal.SIGINT)
            try:
                campus.wait(30)
            except subprocess.TimeoutExpired:
                campus.kill()
                campus.wait()
    print(f"  gateway CPU at rest: {cpu / wall * 100:.2f} % of one core [≤ 1.5 %]")
    print(
        f"  gateway memory: now (VmRSS) {mem.get('VmRSS', 0) / 1024:.1f} MiB, peak since "
        f"start (VmHWM) {mem.get('VmHWM', 0) / 1024:.1f} MiB [≤ 100 MiB]"
    )
    print(
        "  beside it, picture processes (each ends about a minute after the last picture): "
        f"at the window's start {pictures_before[0]}, {pictures_before[1]:.1f} MiB resident; "
        f"at its end {pictures_after[0]}, {pictures_after[1]:.1f} MiB"
    )
    print(f"  load average after: {os.getloadavg()[0]:.2f}; campus log: {work / 'campus.log'}")


def picture_memory(gateway: int) -> tuple[int, float]:
    """How many picture processes the gateway runs now (children running
    ``drivers.onvif_camera.picture_worker``) and their resident memory in MiB: what
    the gateway's own figure leaves out."""
    count, kib = 0, 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            parent = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if parent != gateway:
                continue
            if b"drivers.onvif_camera.picture_worker" in (proc / "cmdline").read_bytes():
                kib += memory_kib(int(proc.name)).get("VmRSS", 0)
                count += 1
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
    return count, kib / 1024


if __name__ == "__main__":
    main()
