"""A private Debian mosquitto for tests and test benches.

Each :class:`MosquittoBroker` owns one ``mosquitto`` process listening on
``127.0.0.1`` and a port the caller chose (or a free one), with its config file,
log and persistence database in a directory the caller gave. It can be stopped
cleanly (SIGTERM: mosquitto saves its database), killed (SIGKILL: a real crash,
anything since the last autosave is lost) and started again on the same port.

While it is down the port stays reserved (:class:`PortGuard`): clients trying to
reconnect are refused, never connected to themselves (Linux's TCP simultaneous open
when a client's ephemeral source port equals the empty port it dials), and no other
process is handed the port, so the broker can always start on it again.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import os
import pwd
import shutil
import signal
import socket
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from simulators.lifetime import StartStop

DEBIAN_MOSQUITTO = "/usr/sbin/mosquitto"


@dataclass(frozen=True, slots=True)
class TlsListener:
    """A second, TLS listener: its port and the PEM files mosquitto serves it with."""

    port: int
    cafile: Path
    certfile: Path
    keyfile: Path


class BrokerError(RuntimeError):
    """The broker could not be started or stopped as asked."""


class BrokerNotInstalled(BrokerError):
    """No ``mosquitto`` executable on this machine."""


def find_mosquitto() -> str:
    """Path of the mosquitto executable: ``$PATH`` first, then Debian's ``/usr/sbin``.

    Raises:
        BrokerNotInstalled: neither is there.
    """
    found = shutil.which("mosquitto")
    if found:
        return found
    if os.access(DEBIAN_MOSQUITTO, os.X_OK):
        return DEBIAN_MOSQUITTO
    raise BrokerNotInstalled(
        "mosquitto not found on PATH nor at /usr/sbin/mosquitto: "
        "install it with `apt-get install mosquitto`"
    )


def pick_free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that was free a moment ago (bind to port 0, read, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class PortGuard:
    """Holds a TCP port reserved: a socket bound to it with ``SO_REUSEADDR``, never listening.

    A connection to the port is refused while nothing listens (a SYN to a bound,
    non-listening socket gets a RST); ``connect()`` never picks it as an ephemeral
    source port (Linux skips ports bound explicitly), so a client dialling the empty
    port cannot connect to itself; ``bind(port 0)`` elsewhere never returns it. A
    listener with ``SO_REUSEADDR`` (mosquitto sets it) binds the port all the same.

    ``held`` is False when the port could not be reserved (something listens on it,
    or holds it without ``SO_REUSEADDR``); :meth:`MosquittoBroker.start` then says why.
    """

    def __init__(self, host: str, port: int) -> None:
        self._sock: socket.socket | None = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._sock.bind((host, port))
        except OSError:
            self.release()
        self.port: int = port if self._sock is None else self._sock.getsockname()[1]
        self._finalizer = weakref.finalize(self, _close_quietly, self._sock)

    @property
    def held(self) -> bool:
        """True while the port is reserved."""
        return self._sock is not None

    def release(self) -> None:
        """Give the port up (idempotent)."""
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()


def _close_quietly(sock: socket.socket | None) -> None:
    if sock is not None:
        sock.close()


class MosquittoBroker(StartStop):
    """One private mosquitto process on ``127.0.0.1``.

    Use as ``async with MosquittoBroker(tmp_path) as broker:`` or call
    :meth:`start` / :meth:`stop` yourself. The port stays the same across
    restarts, so clients can reconnect to it.

    Args:
        workdir: directory for ``mosquitto.conf``, ``mosquitto.log``, the
            captured stdout/stderr and the persistence database (created if missing).
        port: TCP port to listen on; a free one is picked when omitted. It is
            reserved from here until :meth:`close` (or the end of ``async with``),
            also while the broker is down (:class:`PortGuard`).
        persistence: keep sessions and queued QoS>0 messages in
            ``workdir/mosquitto.db`` across restarts.
        autosave_interval: seconds between database saves (mosquitto's own
            default is 1800); a :meth:`stop` always saves, a :meth:`kill` does not.
        max_inflight_messages: per-client QoS>0 in-flight window (mosquitto's
            Receive Maximum to clients).
        max_queued_messages: per-client queue beyond the in-flight window; large
            so that a test never sees the broker drop anything.
        tcp_nodelay: disable Nagle's algorithm on client sockets (``set_tcp_nodelay``);
            without it a QoS 1 round trip on loopback costs ~40 ms of delayed ACKs.
        start_timeout: seconds :meth:`start` waits for the port to accept TCP.
        executable: mosquitto binary; found with :func:`find_mosquitto` when omitted.
        tls: also listen with TLS on this port and these PEM files.
        acl_file: mosquitto ACL file (``topic deny …``, ``topic readwrite …``) that
            applies to every client; :meth:`reload` reads it again.

    Raises:
        BrokerNotInstalled: no mosquitto executable (``apt-get install mosquitto``).
    """

    host = "127.0.0.1"

    def __init__(
        self,
        workdir: Path,
        *,
        port: int | None = None,
        persistence: bool = False,
        autosave_interval: int = 1800,
        max_inflight_messages: int = 20,
        max_queued_messages: int = 100_000,
        tcp_nodelay: bool = True,
        start_timeout: float = 10.0,
        executable: str | None = None,
        tls: TlsListener | None = None,
        acl_file: Path | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self._guard = PortGuard(self.host, port if port is not None else 0)
        self._port = self._guard.port or pick_free_port(self.host)
        self.persistence = persistence
        self.autosave_interval = autosave_interval
        self.max_inflight_messages = max_inflight_messages
        self.max_queued_messages = max_queued_messages
        self.tcp_nodelay = tcp_nodelay
        self.tls = tls
        self.acl_file = acl_file
        self.start_timeout = start_timeout
        self.executable = executable or find_mosquitto()
        self._proc: asyncio.subprocess.Process | None = None

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop, and give the reserved port up."""
        try:
            await self.stop()
        finally:
            self.close()

    def close(self) -> None:
        """Give the reserved port up (after :meth:`stop`; ``async with`` does both)."""
        self._guard.release()

    @property
    def port_reserved(self) -> bool:
        """True while the port is held for this broker (see :class:`PortGuard`)."""
        return self._guard.held

    @property
    def port(self) -> int:
        """The TCP port the broker listens on (the same across restarts)."""
        return self._port

    @property
    def running(self) -> bool:
        """True while the mosquitto process is alive."""
        return self._proc is not None and self._proc.returncode is None

    @property
    def config_path(self) -> Path:
        """The config file written by :meth:`start`."""
        return self.workdir / "mosquitto.conf"

    @property
    def log_path(self) -> Path:
        """mosquitto's own log file."""
        return self.workdir / "mosquitto.log"

    @property
    def output_path(self) -> Path:
        """The process's stdout and stderr (startup errors land here)."""
        return self.workdir / "mosquitto.out"

    def config_text(self) -> str:
        """The mosquitto.conf this broker runs with."""
        # Run as whoever we are: as root, mosquitto would otherwise switch to the
        # `mosquitto` user and lose write access to a test's tmp_path.
        user = pwd.getpwuid(os.getuid()).pw_name
        lines = [
            f"listener {self._port} {self.host}",
            "allow_anonymous true",
            f"user {user}",
            f"persistence {'true' if self.persistence else 'false'}",
            f"persistence_location {self.workdir}/",
            "persistence_file mosquitto.db",
            f"autosave_interval {self.autosave_interval}",
            f"max_inflight_messages {self.max_inflight_messages}",
            f"max_queued_messages {self.max_queued_messages}",
            "max_queued_bytes 0",
            f"set_tcp_nodelay {'true' if self.tcp_nodelay else 'false'}",
            f"log_dest file {self.log_path}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
            "log_timestamp true",
            "log_timestamp_format %Y-%m-%dT%H:%M:%S",
        ]
        if self.acl_file is not None:
            lines.append(f"acl_file {self.acl_file}")
        if self.tls is not None:
            lines += [
                f"listener {self.tls.port} {self.host}",
                f"cafile {self.tls.cafile}",
                f"certfile {self.tls.certfile}",
                f"keyfile {self.tls.keyfile}",
            ]
        return "\n".join(lines) + "\n"

    def log_tail(self, lines: int = 30) -> str:
        """The last ``lines`` lines of the broker's log and captured output."""
        parts = []
        for path in (self.log_path, self.output_path):
            if path.exists():
                text = path.read_text(encoding="utf-8", errors="replace").splitlines()
                parts.append(f"--- {path.name} ---\n" + "\n".join(text[-lines:]))
        return "\n".join(parts) or "(no broker log written)"

    async def start(self) -> None:
        """Write the config, start mosquitto and wait until its port accepts TCP.

        Raises:
            BrokerError: already running, another process listens on the port,
                the process exited, or the port did not open within
                ``start_timeout``; the message carries the log tail.
        """
        if self.running:
            raise BrokerError(f"mosquitto on port {self._port} is already running")
        if _listening(self.host, self._port):
            # Checked first: a listener already there would answer _wait_accepting's
            # probe before our process has failed to bind, under load.
            raise BrokerError(
                f"cannot start mosquitto on {self.host}:{self._port}: Address already in use"
            )
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.config_text(), encoding="utf-8")
        with self.output_path.open("ab") as out:
            self._proc = await asyncio.create_subprocess_exec(
                self.executable,
                "-c",
                str(self.config_path),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )
        try:
            await self._wait_accepting()
        except BrokerError:
            await self._terminate(signal.SIGKILL)
            raise

    async def _wait_accepting(self) -> None:
        """Poll the port until it accepts a TCP connection from our live process."""
        proc = self._proc
        assert proc is not None
        deadline = time.monotonic() + self.start_timeout
        while True:
            if proc.returncode is not None:
                raise BrokerError(
                    f"mosquitto exited with status {proc.returncode} while starting on "
                    f"port {self._port}\n{self.log_tail()}"
                )
            try:
                _, writer = await asyncio.open_connection(self.host, self._port)
            except OSError:
                pass
            else:
                writer.close()
                await writer.wait_closed()
                # Someone else may own the port: make sure our process survived binding.
                await asyncio.sleep(0.02)
                if proc.returncode is None:
                    return
                continue
            if time.monotonic() > deadline:
                raise BrokerError(
                    f"mosquitto did not accept TCP on {self.host}:{self._port} within "
                    f"{self.start_timeout} s\n{self.log_tail()}"
                )
            await asyncio.sleep(0.02)

    async def stop(self, grace: float = 10.0) -> None:
        """Stop cleanly with SIGTERM (mosquitto saves its database) and wait.

        Falls back to SIGKILL when the process outlives ``grace`` seconds. Does nothing
        when not running.
        """
        await self._terminate(signal.SIGTERM, grace)

    def reload(self) -> None:
        """SIGHUP: mosquitto reads its ACL file again (for every later publish).

        Raises:
            BrokerError: not running.
        """
        self._signal(signal.SIGHUP)

    def freeze(self) -> None:
        """SIGSTOP: the broker keeps its sockets open and reads nothing, so what clients
        send fills the kernel's buffers (a hung broker host). :meth:`thaw` resumes it.

        Raises:
            BrokerError: not running.
        """
        self._signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT after :meth:`freeze`.

        Raises:
            BrokerError: not running.
        """
        self._signal(signal.SIGCONT)

    def _signal(self, sig: signal.Signals) -> None:
        if self._proc is None or self._proc.returncode is not None:
            raise BrokerError(f"mosquitto on port {self._port} is not running")
        self._proc.send_signal(sig)

    async def kill(self) -> None:
        """Crash the broker with SIGKILL: nothing is saved, clients see the socket drop."""
        await self._terminate(signal.SIGKILL)

    async def restart(self, down_seconds: float = 0.0, *, crash: bool = False) -> None:
        """Stop (or, with ``crash``, kill), stay down ``down_seconds``, start again.

        Raises:
            BrokerError: as :meth:`start`.
        """
        if crash:
            await self.kill()
        else:
            await self.stop()
        if down_seconds > 0:
            await asyncio.sleep(down_seconds)
        await self.start()

    async def _terminate(self, sig: signal.Signals, grace: float = 10.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            return
        proc.send_signal(sig)
        try:
            await asyncio.wait_for(proc.wait(), grace)
        except TimeoutError:
            proc.kill()
            await proc.wait()
        except asyncio.CancelledError:
            proc.kill()  # never leave a broker behind
            raise

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"MosquittoBroker({self.host}:{self._port}, {state}, workdir={self.workdir})"


def _listening(host: str, port: int) -> bool:
    """True when a socket listens on ``host:port`` (a bind with SO_REUSEADDR fails only then,
    not for connections of an earlier broker left in TIME_WAIT)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL it when the process that started it dies.

    A test run that is itself killed must not leave brokers behind (Linux
    ``prctl(PR_SET_PDEATHSIG)``; elsewhere nothing is done).
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass
