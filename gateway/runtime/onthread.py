"""Whole units of SQLite work on an aiosqlite connection's own thread: one hop each.

aiosqlite runs every call of a connection on one worker thread, and each call is a
round trip: the event loop queues it, the thread runs it, and the loop is woken
through its self-pipe. The outbox's commit was about a dozen such calls (BEGIN,
the inserts, each mark, the kept state, the meta, COMMIT), and the uplink's read
of due rows three more; py-spy showed the hops' wake-ups, not the SQL, as much of
the daemon's CPU per contact change (issue 14). :func:`run_on` runs one plain
function, which issues all its statements on the ``sqlite3`` connection itself,
as a single call.

aiosqlite has no public call for this: ``Connection._execute`` (queue a callable
on the connection's thread) and ``Connection._conn`` (the ``sqlite3``
connection, to be touched only from that thread) are what its own methods use
(aiosqlite/core.py). Both are used here and nowhere else, with the version pinned
in ``pyproject.toml``; an upgrade that changes them fails every outbox and state
store test. Users: the outbox (``gateway/delivery/outbox/``: its commits and page
reads) and the state store (``gateway/runtime/state_store.py``: its commits).

A function given to :func:`run_on` runs on another thread: it must touch nothing
but the connection and its arguments (no event-loop objects, no shared state).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar, cast

import aiosqlite

T = TypeVar("T")


async def run_on(db: aiosqlite.Connection, work: Callable[[sqlite3.Connection], T]) -> T:
    """``work(connection)`` on ``db``'s thread, in turn with its other calls.

    Raises:
        ValueError: ``db`` is closed (as every aiosqlite call).
        sqlite3.Error, OSError: what ``work`` raised.
    """

    def call() -> T:
        return work(db._conn)

    return cast(T, await cast(Any, db)._execute(call))


def select_chunks(conn: sqlite3.Connection, query: str, keys: list[Any], *first: Any) -> list[Any]:
    """Rows of ``query`` (with ``{marks}`` for an ``IN`` list) over ``keys`` in chunks
    below SQLite's variable limit; ``first`` are parameters before the list."""
    rows: list[Any] = []
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        marks = ",".join("?" * len(chunk))
        rows += conn.execute(query.format(marks=marks), (*first, *chunk)).fetchall()
    return rows
