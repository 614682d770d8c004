"""How the gateway's SQLite files commit: a persistent rollback journal, fully synced.

Both files that hold what must survive a power cut (the outbox and the state store)
open their connections through :func:`make_durable`:

* **A rollback journal, not WAL.** WAL keeps its index in ``-shm``, a shared memory
  map, and a write into that map on a file turned unwritable (``chattr +i``, a
  failing device) kills the process with SIGBUS (issue 11). A rollback journal
  writes with ``write()``, whose failures are ordinary errors that are retried.
* **``journal_mode=PERSIST``, not ``DELETE``.** In ``DELETE`` mode a transaction
  commits when its journal is unlinked, and under ``synchronous=FULL`` SQLite does
  not sync the directory after that unlink (only ``EXTRA`` does: SQLite's
  ``PRAGMA synchronous`` documentation, "EXTRA provides additional durability if
  the commit is followed closely by a power loss"). A power cut within the file
  system's commit interval could bring the journal back, and the next start would
  roll back an alarm already reported stored. In ``PERSIST`` mode the commit zeroes
  the journal's header and syncs it (a write and an fdatasync, no directory
  change), so a commit that returned survives a power cut. It is also cheaper than
  creating and unlinking a file per commit: 0.33 against 0.40 ms of CPU and 0.97
  against 1.4 ms per small commit on the development box's ext4.
* **``synchronous=FULL``**: the journal and the file are synced at every commit.
* **``journal_size_limit``**: the journal left between commits is truncated to
  :data:`JOURNAL_LIMIT_BYTES` when a large transaction (a drain's thousand marks)
  made it grow.

The journal file (``<file>-journal``) therefore stays beside the database; a
zeroed header marks it as holding nothing to roll back. Whoever moves a database
aside moves its journal with it (:func:`quarantine`).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import aiosqlite
import structlog

log = structlog.get_logger(__name__)

JOURNAL_MODE = "persist"
JOURNAL_LIMIT_BYTES = 1 << 20


async def make_durable(db: aiosqlite.Connection, path: Path) -> str | None:
    """Set ``db``, a connection to ``path``, to commit durably (module docstring).

    Returns:
        None when the journal mode is :data:`JOURNAL_MODE`; otherwise why not (the
        mode the file kept, and SQLite's error). A file in WAL mode (written by a
        version before issue 11) cannot leave it while another connection has it
        open, or while it cannot be written; it then runs in WAL, with the SIGBUS
        risk above: logged here (``storage.not_durable``), and the caller must
        say so (``fault.storage``) rather than carry on as if durable. A read-only
        file in a rollback mode switches (the rollback modes are per connection),
        and a write finds the disk's refusal.

    Raises:
        sqlite3.Error: the connection cannot run a pragma at all.
    """
    mode = await _journal_mode(db, "PRAGMA journal_mode")
    error = ""
    if mode != JOURNAL_MODE:
        try:
            mode = await _journal_mode(db, f"PRAGMA journal_mode={JOURNAL_MODE}")
        except sqlite3.Error as exc:
            error = f": {exc}"
    await db.execute("PRAGMA synchronous=FULL")
    await db.execute(f"PRAGMA journal_size_limit={JOURNAL_LIMIT_BYTES}")
    if mode == JOURNAL_MODE:
        return None
    reason = f"journal_mode is {mode}, not {JOURNAL_MODE}{error}"
    log.error("storage.not_durable", path=str(path), reason=reason)
    return reason


async def _journal_mode(db: aiosqlite.Connection, pragma: str) -> str:
    """The journal mode ``pragma`` answers (SQLite answers the mode in force after it)."""
    async with db.execute(pragma) as cur:
        row = await cur.fetchone()
    return "" if row is None else str(row[0]).lower()


async def connect_durable(
    path: Path, *, busy_s: float, pragmas: tuple[str, ...] = ()
) -> tuple[aiosqlite.Connection, str | None]:
    """A connection to ``path`` set up in full (:func:`make_durable`, then ``pragmas``),
    with why it is not durable (or None); never a half-set-up one: on any failure it
    is closed and the error raised. One whose set-up failed (a lock held by another
    process) would commit in SQLite's default ``DELETE`` mode.

    Raises:
        sqlite3.Error, OSError: the file cannot be opened or set up.
    """
    db = await aiosqlite.connect(path, isolation_level=None, timeout=busy_s)
    try:
        reason = await make_durable(db, path)
        for pragma in pragmas:
            await db.execute(pragma)
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            await db.close()
        raise
    return db, reason


@contextlib.contextmanager
def write_transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """One write transaction on ``conn``, on the connection's own thread: ``BEGIN
    IMMEDIATE`` before the block, ``COMMIT`` after it, ``ROLLBACK`` if anything in it
    (or the commit) raises; a rollback that fails too is left to the reconnect that
    follows a failure.

    Raises:
        sqlite3.Error, OSError: whatever the block or the commit raised.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        raise


def not_durable_files(files: Iterable[tuple[Path, str | None]]) -> str:
    """``"<path>: <why>; …"`` of the files among ``(path, not_durable)`` that do not
    commit durably, or ``""`` (for ``fault.storage`` and ``/status``)."""
    return "; ".join(f"{path}: {why}" for path, why in files if why is not None)


def quarantine(path: Path) -> Path:
    """Move a corrupt database and its journal (or WAL/SHM) aside; returns the new
    database path (``<name>.corrupt-<UTC time>``, never an earlier one's). The journal
    persists between commits (above): it belongs with the file a technician examines,
    not beside the new one.

    Raises:
        OSError: a file cannot be renamed (it is then left where it was).
    """
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while target.exists():  # twice in a second (a restart loop): never over an earlier one
        n += 1
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    for suffix in ("", "-journal", "-wal", "-shm"):
        source = Path(f"{path}{suffix}")
        if source.exists():
            source.rename(Path(f"{target}{suffix}"))
    return target
