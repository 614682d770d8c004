"""State kept in the outbox database, committed in the same transaction as an event.

Table ``kept (kind, key, value)``, ``value`` JSON, as in the state store
(:mod:`gateway.runtime.state_store`). It holds what must never be separated from
an event by a power cut: an open alarm's record and its ``active`` event, an
evidence request and the alarm it documents, a
camera incident and its ``active``/``cleared`` event, a request and the
``camera.snapshot`` event that fulfils it (which deletes it). Kinds are
:class:`~gateway.runtime.state.Kind` objects of the domain that owns them
(``gateway/camera/memory.py``, ``alarm`` of ``gateway/runtime/state.py``); the
outbox only stores their JSON.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from typing import Any

import aiosqlite
import structlog

from gateway.runtime.state import StateWrite

log = structlog.get_logger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS kept (
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (kind, key)
);
"""
PUT = "INSERT OR REPLACE INTO kept (kind, key, value) VALUES (?, ?, ?)"
_DELETE = "DELETE FROM kept WHERE kind = ? AND key = ?"


async def load(db: aiosqlite.Connection) -> dict[str, dict[str, Any]]:
    """Every kept value: kind → key → JSON data. A value that is not JSON is left out
    and logged (``outbox.kept_row_unreadable``): one damaged row must neither stop
    the start nor hide the others (a review of 2026-12-06)."""
    out: dict[str, dict[str, Any]] = {}
    async with db.execute("SELECT kind, key, value FROM kept") as cursor:
        for kind, key, value in await cursor.fetchall():
            try:
                data = json.loads(value)
            except (TypeError, ValueError) as exc:
                log.error(
                    "outbox.kept_row_unreadable", kind=str(kind), key=str(key), error=str(exc)
                )
                continue
            out.setdefault(str(kind), {})[str(key)] = data
    return out


def statements(
    writes: Iterable[StateWrite],
) -> tuple[list[tuple[str, str]], list[tuple[str, str, str]]]:
    """``writes`` as rows to delete and rows to put, as if applied in order (the last
    write of a key wins), for :func:`apply`. Made on the event loop (the JSON of
    state the loop owns)."""
    last = {(w.kind, w.key): w.data for w in writes}
    puts = [
        (kind, key, json.dumps(data, ensure_ascii=False))
        for (kind, key), data in last.items()
        if data is not None
    ]
    deletes = [(kind, key) for (kind, key), data in last.items() if data is None]
    return deletes, puts


def apply(
    conn: sqlite3.Connection, deletes: list[tuple[str, str]], puts: list[tuple[str, str, str]]
) -> None:
    """Apply :func:`statements` in the caller's open transaction, in two statements
    whatever their number (one commit may hold the alarms of a whole burst)."""
    if deletes:
        conn.executemany(_DELETE, deletes)
    if puts:
        conn.executemany(PUT, puts)


def remember(memory: dict[str, dict[str, Any]], writes: Iterable[StateWrite]) -> None:
    """Apply committed ``writes`` to the copy in memory."""
    for w in writes:
        if w.data is None:
            memory.get(w.kind, {}).pop(w.key, None)
        else:
            memory.setdefault(w.kind, {})[w.key] = w.data
