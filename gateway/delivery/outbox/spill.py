"""Held rows spilled beside the outbox while it cannot commit, taken back at the next start.

A row the outbox has accepted but not committed is *held* in memory
(``held.py``) and sent from there; until now a process that ended with rows held
lost them from the record and never re-sent them: a stop whose 2 s grace found the
file still locked or failing, SIGKILL, the OOM killer (a review of 2026-12-05: two
panics the center never acked were never sent again after the restart).

So while commits fail the outbox writes every held row to a **spill file**, again
at each try (at most once a second), and at a stop that could not store them. The
next start that can write the outbox inserts the rows it does not have, with their
own ``id``, ``stream`` and ``seq`` and a new row key, in one transaction, and only
then deletes the spill; they go out again as any stored row (the center knows them
by ``id``). A row already in the file (committed after the spill was written) is
left as it is: ``id`` and ``(stream, seq)`` are unique, and the insert ignores it.

Where: the service's runtime directory under systemd (``RuntimeDirectory=``, a
tmpfs a failing disk does not touch, kept across restarts), else beside the
outbox file. Each file is named after the outbox and the stream that held its
rows: ``<outbox file name>.held-<stream>.jsonl``, one JSON object per row, with the
state kept with it (``keep``: an open-alarm record), applied with the row when it
is taken back.

Limits: a tmpfs is empty after a power cut; rows held since the last write (under
a second) are lost to a SIGKILL; a start that cannot write the outbox, or finds it
without tables (new, quarantined) or of a version before streams, leaves the spill
for a later one.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import json
import os
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import aiosqlite
import structlog

from gateway.delivery.outbox import kept
from gateway.delivery.outbox.capacity import OutboxStats
from gateway.runtime.durable import write_transaction
from gateway.runtime.onthread import run_on
from gateway.runtime.state import Kind, StateWrite

log = structlog.get_logger(__name__)

_INSERT = (
    "INSERT OR IGNORE INTO messages (n, seq, stream, id, type, priority, topic, payload,"
    " size, track_ack, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_FIELDS = ("seq", "stream", "id", "type", "priority", "topic")


def directory(outbox: Path) -> Path:
    """Where ``outbox``'s spill files go: ``$RUNTIME_DIRECTORY`` (systemd's
    ``RuntimeDirectory=``; the first, if it names several), else its own directory."""
    runtime = os.environ.get("RUNTIME_DIRECTORY", "").split(":")[0]
    return Path(runtime) if runtime else outbox.parent


def _prefix(outbox: Path) -> str:
    """``<file name>-<8 hex of its absolute path>``: two outboxes of one name in
    different directories never share a runtime directory's spill (a review of
    2026-12-05 had one gateway store another's panics)."""
    where = hashlib.sha256(str(outbox.absolute()).encode()).hexdigest()[:8]
    return f"{outbox.name}-{where}"


def path_for(outbox: Path, stream: str) -> Path:
    """The spill file of ``outbox``'s rows held in ``stream``."""
    return directory(outbox) / f"{_prefix(outbox)}.held-{stream}.jsonl"


def found(outbox: Path) -> list[Path]:
    """Spill files ``outbox``'s earlier processes left (regular files only: a FIFO of
    that name would hang the start), oldest stream name first."""
    names = directory(outbox).glob(f"{_prefix(outbox)}.held-*.jsonl")
    return sorted(p for p in names if p.is_file())


def write(path: Path, held: Iterable[tuple[Sequence[Any], Sequence[StateWrite]]]) -> int:
    """Replace ``path`` with these ``sql.INSERT`` rows and the state kept with each,
    durably (written aside, synced, renamed). Returns the rows written.

    Raises:
        OSError: the directory cannot be written.
    """
    lines = []
    for r, keep in held:
        body = dict(zip(_FIELDS, r[1:7], strict=True))
        body["payload"] = base64.b64encode(bytes(r[7])).decode()
        body["track_ack"] = bool(r[9])
        body["created_at"] = r[10]
        if keep:
            body["keep"] = [[w.kind, w.key, w.data] for w in keep]
        lines.append(json.dumps(body, ensure_ascii=False))
    aside = path.with_name(path.name + ".new")
    with aside.open("w", encoding="utf-8") as f:
        f.write("".join(line + "\n" for line in lines))
        f.flush()
        os.fsync(f.fileno())
    os.replace(aside, path)
    return len(lines)


Spilled = tuple[tuple[Any, ...], tuple[StateWrite, ...]]
"""A spilled row: its ``sql.INSERT`` row without the row key, and the state kept with it."""


def read(path: Path) -> tuple[list[Spilled], int]:
    """The rows of a spill file with the state kept with each, and the number of lines
    that are not a spilled row (skipped: one bad line must not cost the others, a
    review of 2026-12-05).

    Raises:
        OSError: it cannot be read.
    """
    rows: list[Spilled] = []
    bad = 0
    for line in path.read_bytes().decode("utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            body = json.loads(line)
            keep = tuple(StateWrite(str(k), str(key), v) for k, key, v in body.get("keep", ()))
            rows.append((_row(body), keep))
        except (ValueError, KeyError, TypeError, AttributeError):
            bad += 1
    return rows, bad


def _row(body: dict[str, Any]) -> tuple[Any, ...]:
    payload = base64.b64decode(body["payload"], validate=True)
    seq = None if body["seq"] is None else int(body["seq"])
    stream = None if body["stream"] is None else str(body["stream"])
    return (seq, stream, str(body["id"]), str(body["type"]), int(body["priority"]),
            str(body["topic"]), payload, len(payload), bool(body["track_ack"]),
            float(body["created_at"]))  # fmt: skip


UNCHECKED: Kind[bool] = Kind("outbox.spill", bool, bool)
"""Kept ``outbox.spill``/``unchecked``: events came back from a spill without the kept
state their commit would have carried, and the kept open alarms have not been checked
against them yet (``gateway/delivery/reports.py`` deletes it with the records it ends,
in one commit: a start that dies before that commit checks again)."""


def restore(conn: sqlite3.Connection, rows: Sequence[Spilled]) -> int:
    """Insert ``rows`` (from :func:`read`) the file does not have, after every row it
    holds, with the state kept with each one inserted (in order, as their commit
    would have), in one transaction on ``conn`` (its own thread), with
    :data:`UNCHECKED` when any was. Returns the rows inserted.

    A row the file has already was committed with its state: its state is not
    applied again (a later commit may have changed it since).

    Raises:
        sqlite3.Error: nothing was inserted.
    """
    with write_transaction(conn):
        (last,) = conn.execute("SELECT coalesce(max(n), 0) FROM messages").fetchone()
        inserted = 0
        writes: list[StateWrite] = []
        for i, (row, keep) in enumerate(rows, start=1):
            if conn.execute(_INSERT, (last + i, *row)).rowcount:
                inserted += 1
                writes += keep
        if inserted:
            conn.execute(kept.SCHEMA)
            kept.apply(conn, *kept.statements(writes))
            conn.execute(kept.PUT, (UNCHECKED.name, "unchecked", "true"))
    return inserted


class Spill:
    """One outbox's spill file: what it holds is the outbox's held rows
    (``HeldRows.inserts``), as they were at the last write.

    Args:
        outbox: the outbox file.
        stats: counts ``spill_failures``.
    """

    def __init__(self, outbox: Path, stats: OutboxStats) -> None:
        self._outbox = outbox
        self._stats = stats
        self._keys: frozenset[int] | None = None  # row keys the file holds
        self._written: Path | None = None
        self._error: str | None = None

    async def write(
        self, stream: str, held: list[tuple[tuple[Any, ...], tuple[StateWrite, ...]]]
    ) -> None:
        """Write ``held`` (the held ``sql.INSERT`` rows with the state kept with each) to
        ``stream``'s spill file (on a thread: thousands of rows are milliseconds of
        JSON) unless they are what it holds already. A failure is logged once and
        counted (``spill_failures``); the rows stay held."""
        keys = frozenset(r[0] for r, _ in held)
        if not keys or keys == self._keys:
            return
        path = path_for(self._outbox, stream)
        try:
            count = await asyncio.to_thread(write, path, held)
        except OSError as exc:
            self._stats.spill_failures += 1
            if self._error is None:
                log.error("outbox.spill_failed", path=str(path), error=str(exc))
            self._error = str(exc)
            return
        if self._written is None:
            log.warning("outbox.spilled", path=str(path), rows=count)
        self._written, self._keys, self._error = path, keys, None

    def clear(self, held: int) -> None:
        """A commit succeeded (``held`` rows are still held): the spill file, if
        written, goes. Rows still held were
        accepted while commits succeed and go in the next one (if commits fail again
        the next try spills them afresh); a spill kept longer would only grow stale,
        and a start much later would store rows acked and purged since."""
        if self._written is None:
            return
        try:
            self._written.unlink(missing_ok=True)
        except OSError as exc:  # the commit stands: a stale spill only repeats stored rows
            self._stats.spill_failures += 1
            log.error("outbox.spill_not_cleared", path=str(self._written), error=str(exc))
        else:
            log.info("outbox.spill_cleared", path=str(self._written), held=held)
        self._written = self._keys = None  # what is still held goes in the next spill


async def take_back(db: aiosqlite.Connection, outbox: Path, stats: OutboxStats) -> int:
    """Insert the rows earlier processes spilled that the file does not have, and
    delete each spill file once its rows are committed; returns how many were
    inserted. A file that cannot be read is
    logged, counted (``spill_failures``) and left where it is; one that cannot be
    stored now waits for a later start; lines that are not rows are skipped, counted,
    and their file is kept aside as ``<name>.unreadable`` once its rows are in.
    """
    total = 0
    for path in found(outbox):
        try:
            rows, bad = await asyncio.to_thread(read, path)  # a big one is seconds of JSON
        except OSError as exc:
            stats.spill_failures += 1
            log.error("outbox.spill_unreadable", path=str(path), error=str(exc))
            continue
        try:
            inserted = await run_on(db, functools.partial(restore, rows=rows))
        except sqlite3.Error as exc:
            log.error("outbox.spill_kept", path=str(path), rows=len(rows), error=str(exc))
            continue
        total += inserted
        log.warning(
            "outbox.spill_restored", path=str(path), rows=len(rows), inserted=inserted,
            unreadable_lines=bad,
        )  # fmt: skip
        try:
            if bad:
                stats.spill_failures += 1
                path.rename(path.with_name(path.name + ".unreadable"))
            else:
                path.unlink()
        except OSError as exc:  # its rows are in: a later start finds them there
            stats.spill_failures += 1
            log.error("outbox.spill_not_cleared", path=str(path), error=str(exc))
    return total


def waiting(outbox: Path) -> list[str]:
    """Spill files a start could not take back: what waits in them, for the log."""
    return [str(p) for p in found(outbox)]
