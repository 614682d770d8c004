"""Helpers shared by the tests (imported by ``conftest.py`` and by test modules).

Import them as ``from tests.helpers import free_port, assert_valid_event`` (the
tests run from the repository root: ``python -m pytest``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import socket
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from simulators.broker import MosquittoBroker
from simulators.center import CenterConsole

REPO_ROOT = Path(__file__).resolve().parents[1]
EVENT_SCHEMA_PATH = REPO_ROOT / "gateway" / "events" / "event.schema.json"
REALDATA_PATH = REPO_ROOT.parent / "shared" / "realdata"
FIXTURES_PATH = REPO_ROOT / "tests" / "fixtures"
TEST_KEY_FILE = REPO_ROOT / "config" / "demo-center.key"
"""The site key of the demo and of every test config (hex): one key, so a test's
center console acks any gateway the tests start."""
TEST_KEY = bytes.fromhex(TEST_KEY_FILE.read_text(encoding="ascii"))
SIGNED_COMMANDS: dict[str, Any] = {"hmac_key_file": str(TEST_KEY_FILE)}
"""``[commands]`` of a test config: signed with :data:`TEST_KEY`."""
SIGNED_COMMANDS_TOML = f'[commands]\nhmac_key_file = "{TEST_KEY_FILE}"\n'

BrokerFactory = Callable[..., Awaitable[MosquittoBroker]]
"""What the ``mosquitto_factory`` fixture yields: ``await factory(persistence=True)``."""


_CONSOLES: list[CenterConsole] = []
"""The consoles made by :func:`signed_center` in the running test (``conftest.py``
checks after each test that none of them rejected an event, then forgets them)."""


def signed_center(*args: Any, **kwargs: Any) -> CenterConsole:
    """A :class:`CenterConsole` whose acks are signed with :data:`TEST_KEY`.

    Every event it receives is validated against ``gateway/events/event.schema.json``;
    the ``every_event_validates`` fixture fails the test when one was rejected.
    """
    kwargs.setdefault("key", TEST_KEY)
    console = CenterConsole(*args, **kwargs)
    _CONSOLES.append(console)
    return console


def take_consoles() -> list[CenterConsole]:
    """The consoles :func:`signed_center` made since the last call (and forget them)."""
    consoles = list(_CONSOLES)
    _CONSOLES.clear()
    return consoles


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that was free a moment ago (bind to port 0, read, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def broken_copy(source: Path, tmp_path: Path, old: str, new: str) -> Path:
    """A copy of the config ``source`` as ``tmp_path/broken.toml``, its first ``old`` made ``new``.

    Raises:
        AssertionError: ``old`` is not in ``source``.
    """
    text = source.read_text(encoding="utf-8")
    assert old in text, old
    path = tmp_path / "broken.toml"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


def line_of(path: Path, needle: str, occurrence: int = 1) -> int:
    """The 1-based number of the ``occurrence``-th line of ``path`` containing ``needle``.

    Raises:
        AssertionError: fewer lines than ``occurrence`` contain ``needle``.
    """
    hits = [
        n
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if needle in line
    ]
    assert len(hits) >= occurrence, needle
    return hits[occurrence - 1]


def event_validator() -> Draft202012Validator:
    """A validator for ``gateway/events/event.schema.json`` as it is in the work tree."""
    schema = json.loads(EVENT_SCHEMA_PATH.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def assert_valid_event(event: dict[str, Any]) -> None:
    """Check ``event`` against ``gateway/events/event.schema.json``.

    Raises:
        AssertionError: listing every validation error with its path in the event.
    """
    errors = sorted(event_validator().iter_errors(event), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [
            f"  {'/'.join(str(p) for p in error.absolute_path) or '(event)'}: {error.message}"
            for error in errors
        ]
        raise AssertionError(
            f"event {event.get('id', '?')} does not match {EVENT_SCHEMA_PATH.name}:\n"
            + "\n".join(lines)
        )


async def eventually(predicate: Callable[[], bool], within: float = 10.0) -> None:
    """Poll ``predicate`` every 20 ms until it is true.

    Raises:
        TimeoutError: still false after ``within`` seconds.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    for _ in itertools.count():
        if predicate():
            return
        if loop.time() > deadline:
            raise TimeoutError(f"not true within {within} s")
        await asyncio.sleep(0.02)


_LOCKER = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.read()
"""


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Another process holds ``path``'s exclusive lock until the block ends."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _LOCKER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    try:
        yield
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(10)


@contextlib.asynccontextmanager
async def lock_held(path: Path) -> AsyncIterator[threading.Event]:
    """Another process holds ``path``'s exclusive lock (:func:`locked`) until the block
    ends or the event it yields is set (a timer may set it while the loop waits)."""
    taken, release = threading.Event(), threading.Event()

    def hold() -> None:
        with locked(path):
            taken.set()
            release.wait(60)

    task = asyncio.create_task(asyncio.to_thread(hold))
    try:
        assert await asyncio.to_thread(taken.wait, 10), "the lock was not taken"
        yield release
    finally:
        release.set()
        await task


class ManualClock:
    """Monotonic seconds that move only when a test moves them (``clock.now += 60``)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now
