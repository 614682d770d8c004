"""The alarm system's persisted state: arming per area, bypasses, open alarms.

GB 50394 (commentary): after power returns the previous arming state is
restored. The state lives in its own SQLite file beside the outbox
(``<outbox>-state.sqlite``), WAL journal, ``synchronous=FULL``, one writer task
committing whatever is queued in one transaction (group commit). Arming states,
bypasses and ``meta`` are written *before* they are reported: those calls return
once the commit is on disk (an ``area.armed`` event never describes a state a
power cut can undo). Open alarms are written behind: their events in the outbox
are the durable record, so an alarm transition never waits for this file; a crash
before the commit at worst repeats an ``active`` or a ``cleared`` after restart.

Schema: one table ``state (kind TEXT, key TEXT, value TEXT, PRIMARY KEY (kind, key))``
where ``kind`` is ``area``, ``bypass``, ``alarm`` or ``meta`` and ``value`` is JSON:

* ``area``/``<area id>``: ``{"armed": bool, "since": RFC 3339, "by": who}``
* ``bypass``/``<zone id>``: ``{"until": RFC 3339 | null, "by": who, "reason": text,
  "incident": id of its zone.bypassed event}``
  (``until`` null: until the zone's area is disarmed)
* ``alarm``/``<zone id>/<condition>``: an active alarm, tamper or line fault
  (``{"type": event type, "incident": id, "since": RFC 3339, "detail": text}``), kept until its
  ``cleared`` event, so a restart neither repeats nor forgets it
* ``meta``/``<name>``: any JSON (``schedule_checked_at``, ``commands_seen``, ``walk_test``,
  ``walk_test_reports``)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import aiosqlite
import structlog

from gateway.errors import StateError
from gateway.events.model import rfc3339

log = structlog.get_logger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS state (
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (kind, key)
);
"""


@dataclass(frozen=True, slots=True)
class AreaRecord:
    """An area's arming state. ``by``: an operator, ``schedule`` or ``initial``."""

    armed: bool
    since: datetime
    by: str


@dataclass(frozen=True, slots=True)
class BypassRecord:
    """A bypassed zone. ``until`` None: until its area is disarmed."""

    until: datetime | None
    by: str
    reason: str = ""
    incident: str = ""


@dataclass(frozen=True, slots=True)
class AlarmRecord:
    """An active condition: its event type, incident id, start time and detail
    (``cut``/``short`` for a line fault)."""

    type: str
    incident: str
    since: datetime
    detail: str = ""


def state_path(outbox_path: Path) -> Path:
    """Where the alarm state of the outbox at ``outbox_path`` is kept."""
    return outbox_path.with_name(outbox_path.stem + "-state.sqlite")


class StateStore:
    """Use as ``async with StateStore(path) as store``; everything is loaded on entry.

    Attributes:
        areas, bypasses: the persisted records by area/zone id.
        alarms: active conditions by ``<zone id>/<condition>``.

    Raises:
        StateError: from ``__aenter__`` and from every write, when the file cannot
            be opened, read or written (the message names the file).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: aiosqlite.Connection | None = None
        self.areas: dict[str, AreaRecord] = {}
        self.bypasses: dict[str, BypassRecord] = {}
        self.alarms: dict[str, AlarmRecord] = {}
        self._meta: dict[str, Any] = {}
        self._queued: dict[tuple[str, str], str | None] = {}  # (kind, key) -> JSON, None: delete
        self._waiters: list[asyncio.Future[None]] = []
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self.commits = 0

    async def __aenter__(self) -> Self:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = await aiosqlite.connect(self.path, isolation_level=None)
            await self._db.execute("PRAGMA journal_mode=WAL")
            await self._db.execute("PRAGMA synchronous=FULL")
            await self._db.executescript(_SCHEMA)
            async with self._db.execute("SELECT kind, key, value FROM state") as cursor:
                rows = await cursor.fetchall()
            for kind, key, value in rows:
                self._load(str(kind), str(key), json.loads(value))
        except (sqlite3.Error, OSError, ValueError, KeyError, TypeError) as exc:
            await self._close()
            raise StateError(f"cannot open alarm state {self.path}: {exc}") from exc
        self._writer = asyncio.create_task(self._write_loop(), name="alarm-state-writer")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Commit what is queued (bounded by SQLite's own locking), then close."""
        if self._writer is not None:
            with contextlib.suppress(StateError):
                await self._submit(None, wait=True)
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            self._writer = None
        await self._close()

    def meta(self, key: str) -> Any:
        """A ``meta`` value, or None."""
        return self._meta.get(key)

    async def put_area(self, area_id: str, record: AreaRecord) -> None:
        """Persist an area's arming state (on disk when this returns).

        Raises:
            StateError: the commit failed (the state in memory is unchanged).
        """
        value = {"armed": record.armed, "since": rfc3339(record.since), "by": record.by}
        await self._submit(("area", area_id, value), wait=True)
        self.areas[area_id] = record

    async def put_bypass(self, zone_id: str, record: BypassRecord | None) -> None:
        """Persist a bypass, or its end (None); on disk when this returns.

        Raises:
            StateError: the commit failed (the state in memory is unchanged).
        """
        value: dict[str, Any] | None = None
        if record is not None:
            until = rfc3339(record.until) if record.until is not None else None
            value = {"until": until, "by": record.by, "reason": record.reason}
            value["incident"] = record.incident
        await self._submit(("bypass", zone_id, value), wait=True)
        if record is None:
            self.bypasses.pop(zone_id, None)
        else:
            self.bypasses[zone_id] = record

    async def put_alarm(self, key: str, record: AlarmRecord | None) -> None:
        """Record an active condition, or its end (None): at once in memory, on disk
        with the next commit (write-behind; a failed commit is retried with the next)."""
        value: dict[str, Any] | None = None
        if record is None:
            self.alarms.pop(key, None)
        else:
            value = {"type": record.type, "incident": record.incident}
            value.update(since=rfc3339(record.since), detail=record.detail)
            self.alarms[key] = record
        await self._submit(("alarm", key, value), wait=False)

    async def put_meta(self, key: str, value: Any) -> None:
        """Persist a ``meta`` value (JSON-serialisable); on disk when this returns.

        Raises:
            StateError: the commit failed.
        """
        await self._submit(("meta", key, value), wait=True)
        self._meta[key] = value

    def _load(self, kind: str, key: str, value: Any) -> None:
        if kind == "area":
            self.areas[key] = AreaRecord(
                bool(value["armed"]), datetime.fromisoformat(value["since"]), str(value["by"])
            )
        elif kind == "bypass":
            until = datetime.fromisoformat(value["until"]) if value["until"] else None
            self.bypasses[key] = BypassRecord(
                until, str(value["by"]), str(value["reason"]), str(value.get("incident", ""))
            )
        elif kind == "alarm":
            since = datetime.fromisoformat(value["since"])
            detail = str(value.get("detail", ""))
            self.alarms[key] = AlarmRecord(
                str(value["type"]), str(value["incident"]), since, detail
            )
        elif kind == "meta":
            self._meta[key] = value

    async def _submit(self, write: tuple[str, str, Any] | None, *, wait: bool) -> None:
        """Queue one write (``(kind, key, value)``, value None deletes; None: nothing)
        and, with ``wait``, return once a commit holding it is on disk."""
        if self._writer is None or self._writer.done():
            raise StateError(f"alarm state {self.path} is not open")
        if write is not None:
            kind, key, value = write
            text = None if value is None else json.dumps(value, ensure_ascii=False)
            self._queued.pop((kind, key), None)
            self._queued[(kind, key)] = text
        self._wake.set()
        if wait:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(future)
            await future

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._queued = self._queued, {}
            waiters, self._waiters = self._waiters, []
            try:
                await self._commit(batch)
            except StateError as exc:
                log.error("alarm_state.commit_failed", error=str(exc), writes=len(batch))
                for item, text in batch.items():  # retried with the next commit
                    self._queued.setdefault(item, text)
                for future in waiters:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for future in waiters:
                if not future.done():
                    future.set_result(None)

    async def _commit(self, batch: dict[tuple[str, str], str | None]) -> None:
        db = self._db
        if db is None:
            raise StateError(f"alarm state {self.path} is not open")
        if not batch:
            return
        try:
            await db.execute("BEGIN IMMEDIATE")
            for (kind, key), text in batch.items():
                if text is None:
                    await db.execute("DELETE FROM state WHERE kind = ? AND key = ?", (kind, key))
                else:
                    await db.execute(
                        "INSERT OR REPLACE INTO state (kind, key, value) VALUES (?, ?, ?)",
                        (kind, key, text),
                    )
            await db.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                await db.execute("ROLLBACK")
            raise StateError(f"cannot write alarm state {self.path}: {exc}") from exc
        self.commits += 1

    async def _close(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            with contextlib.suppress(sqlite3.Error):
                await db.close()
