"""The alarm system's persisted state: arming per area, bypasses, open alarms.

GB 50394 (commentary): after power returns the previous arming state is
restored. The state lives in its own SQLite file beside the outbox
(``<outbox>-state.sqlite``), WAL journal, ``synchronous=FULL``: every write
returns only once it is on disk, and the rules write *before* they report
(an ``area.armed`` event never describes a state a power cut can undo).

Schema: one table ``state (kind TEXT, key TEXT, value TEXT, PRIMARY KEY (kind, key))``
where ``kind`` is ``area``, ``bypass``, ``alarm`` or ``meta`` and ``value`` is JSON:

* ``area``/``<area id>``: ``{"armed": bool, "since": RFC 3339, "by": who}``
* ``bypass``/``<zone id>``: ``{"until": RFC 3339 | null, "by": who, "reason": text,
  "incident": id of its zone.bypassed event}``
  (``until`` null: until the zone's area is disarmed)
* ``alarm``/``<zone id>/<condition>``: an active alarm, tamper or line fault
  (``{"type": event type, "incident": id, "since": RFC 3339}``), kept until its
  ``cleared`` event, so a restart neither repeats nor forgets it
* ``meta``/``<name>``: any JSON (``schedule_checked_at``)
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import aiosqlite

from gateway.errors import StateError
from gateway.schema import rfc3339

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
    """An active condition: its event type, incident id and start time."""

    type: str
    incident: str
    since: datetime


def state_path(outbox_path: Path) -> Path:
    """Where the alarm state of the outbox at ``outbox_path`` is kept."""
    return outbox_path.with_name(outbox_path.stem + "-state.sqlite")


class AlarmStore:
    """Use as ``async with AlarmStore(path) as store``; everything is loaded on entry.

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
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._close()

    def meta(self, key: str) -> Any:
        """A ``meta`` value, or None."""
        return self._meta.get(key)

    async def put_area(self, area_id: str, record: AreaRecord) -> None:
        """Persist an area's arming state (on disk when this returns)."""
        value = {"armed": record.armed, "since": rfc3339(record.since), "by": record.by}
        await self._put("area", area_id, value)
        self.areas[area_id] = record

    async def put_bypass(self, zone_id: str, record: BypassRecord | None) -> None:
        """Persist a bypass, or its end (None)."""
        if record is None:
            await self._delete("bypass", zone_id)
            self.bypasses.pop(zone_id, None)
            return
        until = rfc3339(record.until) if record.until is not None else None
        value = {"until": until, "by": record.by, "reason": record.reason}
        await self._put("bypass", zone_id, {**value, "incident": record.incident})
        self.bypasses[zone_id] = record

    async def put_alarm(self, key: str, record: AlarmRecord | None) -> None:
        """Persist an active condition, or its end (None)."""
        if record is None:
            await self._delete("alarm", key)
            self.alarms.pop(key, None)
            return
        value = {"type": record.type, "incident": record.incident, "since": rfc3339(record.since)}
        await self._put("alarm", key, value)
        self.alarms[key] = record

    async def put_meta(self, key: str, value: Any) -> None:
        """Persist a ``meta`` value (JSON-serialisable)."""
        await self._put("meta", key, value)
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
            self.alarms[key] = AlarmRecord(
                str(value["type"]), str(value["incident"]), datetime.fromisoformat(value["since"])
            )
        elif kind == "meta":
            self._meta[key] = value

    async def _put(self, kind: str, key: str, value: Any) -> None:
        text = json.dumps(value, ensure_ascii=False)
        await self._write(
            "INSERT OR REPLACE INTO state (kind, key, value) VALUES (?, ?, ?)", (kind, key, text)
        )

    async def _delete(self, kind: str, key: str) -> None:
        await self._write("DELETE FROM state WHERE kind = ? AND key = ?", (kind, key))

    async def _write(self, sql: str, args: tuple[str, ...]) -> None:
        if self._db is None:
            raise StateError(f"alarm state {self.path} is not open")
        try:
            await self._db.execute(sql, args)
        except sqlite3.Error as exc:
            raise StateError(f"cannot write alarm state {self.path}: {exc}") from exc

    async def _close(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            with contextlib.suppress(sqlite3.Error):
                await db.close()
