"""Evidence pictures made in a process of their own, one per camera.

Why apart from the gateway: OpenCV and FFmpeg parse what a camera sends (its
JPEG, its RTSP or MJPEG stream) in native code. In the gateway's process a
picture that crashed the decoder would take the alarm path down with it until
systemd restarted the daemon, a grab that FFmpeg never gave back would hold a
worker thread for good (a thread cannot be stopped), and OpenCV with numpy
(about 31 MiB) stayed in the gateway's memory from the first picture to the
next restart (issue 14: the demo campus after its scenario, 152 MiB). Here:

* the process is started at the camera's first picture and ends by itself
  after ``idle_exit_s`` (60 s) without one, so a gateway at rest carries none;
* a picture not made within its time (``within``) stops the process (SIGKILL)
  and is a :class:`~gateway.errors.DeviceUnavailable`; a process that ends
  during a picture (a crash) is a :class:`~gateway.errors.DeviceProtocolError`
  naming the signal; either way the next picture starts a fresh process;
* an OpenCV that cannot be loaded there is a
  :class:`~gateway.errors.LibraryUnavailable`, as it was in the gateway.

The request and its answer cross pipes (:mod:`drivers.onvif_camera.picture_wire`)
from a worker thread, so the event loop never blocks on them; the process is a
plain :class:`subprocess.Popen`, tied to no event loop. Its stderr is the
gateway's (the journal).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any

from drivers.onvif_camera import picture_wire
from gateway.errors import DeviceProtocolError, DeviceUnavailable, LibraryUnavailable

WORKER = "drivers.onvif_camera.picture_worker"
IDLE_EXIT_S = 60.0
_ENDING_S = 1.0  # from its pipe closing to its exit status


@dataclass(frozen=True, slots=True)
class Made:
    """A picture the process made: JPEG bytes, pixel size, when it was taken (UTC)."""

    jpeg: bytes
    width: int
    height: int
    taken: datetime


class PictureProcess:
    """One camera's picture process: ``made = await pictures.make(request, body, within)``.

    Args:
        device_id: the camera, for errors.
        idle_exit_s: the process ends after this many seconds without a picture.

    Attributes:
        started: processes started; ``stopped``: stopped for taking too long;
            ``ended``: ended during a picture (crashed).
    """

    def __init__(self, device_id: str, *, idle_exit_s: float = IDLE_EXIT_S) -> None:
        self.device_id = device_id
        self.idle_exit_s = idle_exit_s
        self.started = 0
        self.stopped = 0
        self.ended = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = asyncio.Lock()
        self._in_flight = threading.Event()

    @property
    def pid(self) -> int | None:
        """The running process's pid, None when there is none."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    @property
    def in_flight(self) -> bool:
        """A request has been handed to the process and its answer not read yet."""
        return self._in_flight.is_set()

    async def make(self, request: Mapping[str, Any], body: bytes, within: float) -> Made:
        """Send ``request`` (see :mod:`drivers.onvif_camera.picture_worker`) and wait
        for the picture, at most ``within`` seconds; one request at a time.

        Raises:
            DeviceUnavailable: not made within ``within`` (the process is stopped),
                or the request's own (no frame, the stream did not open).
            DeviceProtocolError: the process ended during it, or the request's own
                (not a picture, does not fit ``max_bytes``).
            LibraryUnavailable: OpenCV cannot be loaded.
        """
        frame = picture_wire.encode(request, body)
        async with self._lock:
            proc = await self._running()
            try:
                async with asyncio.timeout(within):
                    reply, jpeg = await asyncio.to_thread(self._exchange, proc, frame)
            except TimeoutError as exc:
                self._stop(proc)
                self.stopped += 1
                raise DeviceUnavailable(
                    f"picture not made within {within:g} s: its process was stopped",
                    device_id=self.device_id,
                ) from exc
            except _Ended as exc:
                self._stop(proc)
                self.ended += 1
                raise DeviceProtocolError(
                    f"the picture process ended during this picture ({_how(exc.code)})",
                    device_id=self.device_id,
                    raw=exc.why,
                ) from exc
            except BaseException:  # cancelled: the answer would be read by no one
                self._stop(proc)
                raise
        return self._made(reply, jpeg)

    def close(self) -> None:
        """End the process now (its stdin closes; it is killed if it does not end)."""
        if self._proc is not None:
            self._stop(self._proc)

    async def _running(self) -> subprocess.Popen[bytes]:
        proc = self._proc
        if proc is None or proc.poll() is not None:  # never started, or ended idle
            proc = await asyncio.to_thread(self._start)  # fork and exec off the loop
            self._proc = proc
            self.started += 1
        return proc

    def _start(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(  # our own interpreter and module
            [sys.executable, "-m", WORKER, f"{self.idle_exit_s:g}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            close_fds=True,
        )

    def _exchange(
        self, proc: subprocess.Popen[bytes], frame: bytes
    ) -> tuple[dict[str, Any], bytes]:
        """On a worker thread: write the request, read the answer.

        Raises:
            _Ended: the process ended (or broke the protocol) before answering.
        """
        try:
            stdin, stdout = _pipes(proc)
            stdin.write(frame)
            stdin.flush()
            self._in_flight.set()
            head_len, body_len = picture_wire.lengths(_read(stdout, picture_wire.PREFIX.size))
            return picture_wire.header(_read(stdout, head_len)), _read(stdout, body_len)
        except (OSError, ValueError, EOFError) as exc:  # ValueError: a closed pipe, a bad frame
            try:  # its pipe closes as it ends: its status follows at once (not on the loop)
                code: int | None = proc.wait(timeout=_ENDING_S)
            except subprocess.TimeoutExpired:
                code = None
            raise _Ended(code, f"{type(exc).__name__}: {exc}") from exc
        finally:
            self._in_flight.clear()

    def _stop(self, proc: subprocess.Popen[bytes]) -> None:
        """Kill ``proc`` unless it has ended, close its pipes, and reap it on a thread
        of its own (never waiting on the event loop)."""
        if self._proc is proc:
            self._proc = None
        if proc.poll() is None:
            proc.kill()
            threading.Thread(target=proc.wait, name="picture-reaper", daemon=True).start()
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()

    def _made(self, reply: dict[str, Any], jpeg: bytes) -> Made:
        if reply.get("ok") is True:
            try:
                taken = datetime.fromisoformat(str(reply["taken"]))
                return Made(jpeg, int(reply["width"]), int(reply["height"]), taken)
            except (KeyError, TypeError, ValueError) as exc:
                raise DeviceProtocolError(
                    f"the picture process answered {reply!r}", device_id=self.device_id
                ) from exc
        kind, message = reply.get("kind"), str(reply.get("message", ""))
        if kind == "library":
            raise LibraryUnavailable(message)
        if kind == "unavailable":
            raise DeviceUnavailable(message, device_id=self.device_id)
        raise DeviceProtocolError(message, device_id=self.device_id, raw=str(reply.get("raw", "")))


class _Ended(Exception):
    """The picture process ended (or broke the protocol) before answering."""

    def __init__(self, code: int | None, why: str) -> None:
        self.code = code
        self.why = why
        super().__init__(why)


def _pipes(proc: subprocess.Popen[bytes]) -> tuple[IO[bytes], IO[bytes]]:
    if proc.stdin is None or proc.stdout is None:
        raise EOFError("the picture process has no pipes")
    return proc.stdin, proc.stdout


def _read(stream: IO[bytes], size: int) -> bytes:
    data = stream.read(size)
    if len(data) < size:
        raise EOFError(f"the picture process closed its answer after {len(data)} of {size} bytes")
    return data


def _how(code: int | None) -> str:
    """``killed by SIGSEGV``, ``exit status 1``, or ``still running``."""
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"
