"""Evidence pictures made in processes of their own: a small pool the cameras share.

Why apart from the gateway: OpenCV and FFmpeg parse what a camera sends (its
JPEG, its RTSP or MJPEG stream) in native code. In the gateway's process a
picture that crashed the decoder would take the alarm path down with it until
systemd restarted the daemon, a grab that FFmpeg never gave back would hold a
worker thread for good (a thread cannot be stopped), and OpenCV with numpy
(about 31 MiB) stayed in the gateway's memory from the first picture to the
next restart (issue 14: the demo campus after its scenario, 152 MiB). Here:

* a :class:`PicturePool` of ``size`` processes (2 by default) serves every
  camera of the gateway; a process is started when a picture needs one and ends
  by itself about ``idle_exit_s`` (60 s) after its last (the gateway stops
  using it then, it ends 5 s later), so a gateway at rest carries none and a
  site with many cameras carries at most ``size`` (about 50 MiB each while they
  live: Python, OpenCV, numpy); it dies with the gateway, also mid-picture;
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
import functools
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any

from drivers.onvif_camera import picture_wire
from gateway.errors import DeviceProtocolError, DeviceUnavailable, LibraryUnavailable

WORKER = "drivers.onvif_camera.picture_worker"
IDLE_EXIT_S = 60.0
POOL_SIZE = 2  # one per core of the usual box; pictures wait their turn beyond that
_ENDING_S = 1.0  # from its pipe closing to its exit status
_IDLE_MARGIN_S = 5.0  # the process ends idle this much later than the gateway stops using it


@dataclass(frozen=True, slots=True)
class Made:
    """A picture the process made: JPEG bytes, pixel size, when it was taken (UTC)."""

    jpeg: bytes
    width: int
    height: int
    taken: datetime


class PictureProcess:
    """One picture process: ``made = await process.make(request, body, within)``,
    one request at a time (the :class:`PicturePool` gives each to one caller).

    Args:
        idle_exit_s: the process ends after this many seconds without a picture.

    Attributes:
        started: processes started; ``stopped``: stopped for taking too long;
            ``ended``: ended during a picture (a crash, a kill).
    """

    def __init__(self, *, idle_exit_s: float = IDLE_EXIT_S) -> None:
        self.idle_exit_s = idle_exit_s
        self.started = 0
        self.stopped = 0
        self.ended = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._last = 0.0  # monotonic: its start or its last answer
        self._lock = asyncio.Lock()
        self._exchanges = 0  # the last exchange handed to a thread
        self._answering = 0  # the exchange whose request the process has, 0: none

    @property
    def pid(self) -> int | None:
        """The running process's pid, None when there is none."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    @property
    def in_flight(self) -> bool:
        """A request has been handed to the process and its answer not read yet."""
        return self._answering != 0 and self._answering == self._exchanges

    async def make(self, request: Mapping[str, Any], body: bytes, within: float) -> Made:
        """Send ``request`` (see :mod:`drivers.onvif_camera.picture_worker`; its
        ``device_id`` names the camera in errors) and wait for the picture, at most
        ``within`` seconds.

        Raises:
            DeviceUnavailable: not made within ``within`` (the process is stopped),
                no process can be started, or the request's own (no frame, the
                stream did not open).
            DeviceProtocolError: the process ended during it, or the request's own
                (not a picture, does not fit ``max_bytes``).
            LibraryUnavailable: OpenCV cannot be loaded.
        """
        frame = picture_wire.encode(request, body)
        device_id = str(request.get("device_id", ""))
        async with self._lock:
            try:
                proc = self._running()
            except OSError as exc:  # no fork (EAGAIN, ENOMEM), no interpreter
                raise DeviceUnavailable(
                    f"the picture process cannot be started: {exc}", device_id=device_id
                ) from exc
            try:
                async with asyncio.timeout(within):
                    self._exchanges += 1
                    exchange = functools.partial(self._exchange, proc, frame, self._exchanges)
                    reply, jpeg = await asyncio.to_thread(exchange)
            except TimeoutError as exc:
                self._stop(proc)
                self.stopped += 1
                raise DeviceUnavailable(
                    f"picture not made within {within:g} s: its process was stopped",
                    device_id=device_id,
                ) from exc
            except _Ended as exc:
                self._stop(proc)
                self.ended += 1
                raise DeviceProtocolError(
                    f"the picture process ended during this picture ({_how(exc.code)})",
                    device_id=device_id,
                    raw=exc.why,
                ) from exc
            except BaseException:  # cancelled: the answer would be read by no one
                self._stop(proc)
                raise
            self._last = time.monotonic()
        return _made(reply, jpeg, device_id)

    def close(self) -> None:
        """End the process now (SIGKILL: it holds nothing that must be saved)."""
        if self._proc is not None:
            self._stop(self._proc)

    def _running(self) -> subprocess.Popen[bytes]:
        """The process, started when there is none, it has ended, or it is about to
        end idle: it waits ``_IDLE_MARGIN_S`` longer than this side, so a request
        never reaches a process that stopped reading (a review: an exit status 0
        taken for a crash, the picture lost)."""
        proc = self._proc
        idle = time.monotonic() - self._last
        if proc is not None and (proc.poll() is not None or idle >= self.idle_exit_s):
            self._stop(proc)
            proc = None
        if proc is None:
            proc = self._start()
            self._proc = proc
            self._last = time.monotonic()
            self.started += 1
        return proc

    def _start(self) -> subprocess.Popen[bytes]:
        """Start a process (about 0.5 ms on the loop: ``vfork`` and ``exec``). It is
        started from the loop's thread because it asks to be killed when the thread
        that started it ends (``PR_SET_PDEATHSIG``): a gateway killed mid-picture
        leaves no process behind. ``-P``: nothing is imported from the working
        directory. A thread of its own reaps it whenever it ends."""
        idle_s = self.idle_exit_s + _IDLE_MARGIN_S
        proc = subprocess.Popen(  # our own interpreter and module
            [sys.executable, "-P", "-m", WORKER, f"{idle_s:g}", str(os.getpid())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            close_fds=True,
        )
        threading.Thread(target=proc.wait, name="picture-reaper", daemon=True).start()
        return proc

    def _exchange(
        self, proc: subprocess.Popen[bytes], frame: bytes, number: int
    ) -> tuple[dict[str, Any], bytes]:
        """On a worker thread: write the request, read the answer.

        Raises:
            _Ended: the process ended (or broke the protocol) before answering.
        """
        try:
            stdin, stdout = _pipes(proc)
            stdin.write(frame)
            stdin.flush()
            self._answering = number
            head_len, body_len = picture_wire.lengths(_read(stdout, picture_wire.PREFIX.size))
            return picture_wire.header(_read(stdout, head_len)), _read(stdout, body_len)
        except (OSError, ValueError, EOFError) as exc:  # ValueError: a closed pipe, a bad frame
            try:  # its pipe closes as it ends: its status follows at once (not on the loop)
                code: int | None = proc.wait(timeout=_ENDING_S)
            except subprocess.TimeoutExpired:
                code = None
            raise _Ended(code, f"{type(exc).__name__}: {exc}") from exc
        finally:
            if self._answering == number:  # a later exchange's is not ours to clear
                self._answering = 0

    def _stop(self, proc: subprocess.Popen[bytes]) -> None:
        """Kill ``proc`` unless it has ended and close its pipes (its reaper thread
        collects its exit status: never a wait on the event loop)."""
        if self._proc is proc:
            self._proc = None
        if proc.poll() is None:
            proc.kill()
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()


def _made(reply: dict[str, Any], jpeg: bytes, device_id: str) -> Made:
    if reply.get("ok") is True:
        try:
            taken = datetime.fromisoformat(str(reply["taken"]))
            return Made(jpeg, int(reply["width"]), int(reply["height"]), taken)
        except (KeyError, TypeError, ValueError) as exc:
            raise DeviceProtocolError(
                f"the picture process answered {reply!r}", device_id=device_id
            ) from exc
    kind, message = reply.get("kind"), str(reply.get("message", ""))
    if kind == "library":
        raise LibraryUnavailable(message)
    if kind == "unavailable":
        raise DeviceUnavailable(message, device_id=device_id)
    raise DeviceProtocolError(message, device_id=device_id, raw=str(reply.get("raw", "")))


class PicturePool:
    """The picture processes the gateway's cameras share:
    ``made = await pool.make(request, body, within)``.

    A request waits for a free process (the most recently used first, so the
    others can end idle), then has ``within`` seconds; see
    :meth:`PictureProcess.make` for its errors. Grabs from a stream take at most
    ``size - 1`` processes at once (one when ``size`` is 1): a grab may wait
    ``timeout_s`` on a camera that never answers, and two such grabs held both
    processes, so a healthy camera's picture, milliseconds of work, waited 10 s
    behind them (a review). Decodes may always use every process.

    Args:
        size: at most this many processes at once.
        idle_exit_s: each ends after this many seconds without a picture.
    """

    def __init__(self, size: int = POOL_SIZE, *, idle_exit_s: float = IDLE_EXIT_S) -> None:
        self.processes = [PictureProcess(idle_exit_s=idle_exit_s) for _ in range(size)]
        self._grab_slots = max(1, size - 1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._free: asyncio.LifoQueue[PictureProcess] = asyncio.LifoQueue()
        self._grabs = asyncio.Semaphore(self._grab_slots)

    async def make(self, request: Mapping[str, Any], body: bytes, within: float) -> Made:
        """One picture from a free process (see the class)."""
        self._bind()
        async with self._grabs if request.get("op") == "grab" else contextlib.nullcontext():
            process = await self._free.get()
            try:
                return await process.make(request, body, within)
            finally:
                self._free.put_nowait(process)

    def _bind(self) -> None:
        """asyncio's queue and semaphore belong to the loop that first waits on
        them: a pool used from another loop (a test's, an embedder's) gets its own."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop = loop
            self._free = asyncio.LifoQueue()
            for process in reversed(self.processes):
                self._free.put_nowait(process)
            self._grabs = asyncio.Semaphore(self._grab_slots)

    @property
    def pids(self) -> list[int]:
        """The pids of the processes running now."""
        return [pid for p in self.processes if (pid := p.pid) is not None]

    @property
    def in_flight(self) -> bool:
        """Some process has a request and has not answered it yet."""
        return any(p.in_flight for p in self.processes)

    @property
    def started(self) -> int:
        """Processes started, in all."""
        return sum(p.started for p in self.processes)

    @property
    def stopped(self) -> int:
        """Processes stopped for taking too long, in all."""
        return sum(p.stopped for p in self.processes)

    @property
    def ended(self) -> int:
        """Processes that ended during a picture, in all."""
        return sum(p.ended for p in self.processes)

    def close(self) -> None:
        """End every process now (a picture in flight fails as its process ended);
        a later picture starts a fresh one (the evidence task restarted)."""
        for process in self.processes:
            process.close()


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
