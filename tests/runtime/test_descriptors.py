"""Descriptors for the outbox: the open-files limit raised at start, and accepts that
failed for want of descriptors reported once a minute, not once a second with a
traceback (review of 2026-12-05: 76,000 such lines in 25 s)."""

from __future__ import annotations

import asyncio
import errno
import resource
import socket
import subprocess
import sys

from structlog.testing import capture_logs

from gateway.runtime.descriptors import quiet_loop_errors


def test_the_soft_open_files_limit_goes_up_to_the_hard_one() -> None:
    """In a child process started with a soft limit of 256 (the parent's stays)."""
    script = (
        "import resource\n"
        "from gateway.runtime.descriptors import raise_open_files_limit\n"
        "print(*raise_open_files_limit(), *resource.getrlimit(resource.RLIMIT_NOFILE))\n"
    )
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]

    def low() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))

    out = subprocess.run(
        [sys.executable, "-c", script], preexec_fn=low, capture_output=True, check=True, text=True
    ).stdout.split()
    assert [int(v) for v in out] == [hard] * 4


async def test_an_accept_out_of_descriptors_is_reported_once_a_minute_per_listener() -> None:
    loop = asyncio.get_running_loop()
    before = loop.get_exception_handler()
    first, second = socket.socket(), socket.socket()
    try:
        quiet_loop_errors(loop)
        with capture_logs() as logs:
            for _ in range(100):
                for sock in (first, second):
                    loop.call_exception_handler({
                        "message": "socket.accept() out of system resource",
                        "exception": OSError(errno.EMFILE, "Too many open files"),
                        "socket": sock,
                    })  # fmt: skip
            loop.call_exception_handler({"message": "something else entirely"})
        accepts = [e for e in logs if e["event"] == "descriptors.accept_failed"]
        assert len(accepts) == 2 and all(e["left_out"] == 0 for e in accepts)
    finally:
        loop.set_exception_handler(before)
        first.close()
        second.close()


async def test_a_protocol_failing_on_a_devices_bytes_is_reported_once_a_minute() -> None:
    """A module answering with the wrong function code made pymodbus raise in
    ``data_received`` at every reply: a traceback each time (review of 2026-12-05)."""
    loop = asyncio.get_running_loop()
    before = loop.get_exception_handler()
    try:
        quiet_loop_errors(loop)
        with capture_logs() as logs:
            for _ in range(50):
                loop.call_exception_handler({
                    "message": "Fatal error: protocol.data_received() call failed.",
                    "exception": KeyError(0x83),
                    "protocol": asyncio.Protocol(),
                })  # fmt: skip
        failed = [e for e in logs if e["event"] == "loop.protocol_failed"]
        assert len(failed) == 1 and failed[0]["protocol"] == "Protocol"
    finally:
        loop.set_exception_handler(before)
