"""The local alarm record, read back for the school's safety office (痕迹化管理).

``campus-gateway records CONFIG [--outbox PATH] [--since T] [--until T] [--type P]
[--csv]`` prints the events the outbox holds, oldest first: every event the gateway
stored and has not purged (delivered rows are kept ``retention_days``, at least 30;
nothing the center has not acked is ever purged). By default one JSON object per
line, each event exactly as the center received it (CloudEvents, ``docs/center-
protocol.md``); with ``--csv`` a table for a spreadsheet, times in the site's time
zone: who armed and disarmed (``by``), alarms and their ends (``state``,
``incident``), commands and their operators, patrol rounds.

The outbox is read through a read-only connection in chunks of :data:`CHUNK` rows,
each a statement of its own: the daemon's commits (an alarm's among them) never wait
behind a long read (a rollback journal's reader holds the file's shared lock only
while a statement runs).
"""

from __future__ import annotations

import contextlib
import csv
import json
import sqlite3
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO
from zoneinfo import ZoneInfo

from gateway.errors import GatewayError
from gateway.events.model import rfc3339

CHUNK = 500
"""Rows per read statement."""

COLUMNS = (
    "time", "type", "priority", "subject", "state", "name", "location", "by",
    "incident", "id", "stream", "seq",
)  # fmt: skip
"""The ``--csv`` columns (``by``: ``data.by``, else ``data.operator``)."""

_SELECT = (
    "SELECT n, CAST(payload AS TEXT) FROM messages WHERE n > ? AND type != 'blob'"
    " AND type LIKE ? ESCAPE '\\' ORDER BY n LIMIT ?"
)


def read_events(
    outbox: Path, *, since: str | None = None, until: str | None = None, kind: str = ""
) -> Iterator[dict[str, Any]]:
    """The events of ``outbox``, oldest first (by the order they were stored).

    Args:
        outbox: the outbox file.
        since, until: RFC 3339 UTC bounds on the event's ``time`` (inclusive, exclusive).
        kind: a prefix of the event type (``alarm.``, ``area.``); empty for all.

    Raises:
        GatewayError: the file cannot be opened or read (missing, not readable by
            this user, not an outbox).
    """
    if not outbox.is_file():
        raise GatewayError(f"{outbox}: no outbox file here (give --outbox)")
    pattern = kind.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    try:
        with contextlib.closing(
            sqlite3.connect(f"file:{outbox}?mode=ro", uri=True, timeout=10)
        ) as db:
            after = 0
            while True:
                rows = db.execute(_SELECT, (after, pattern, CHUNK)).fetchall()
                if not rows:
                    return
                for n, payload in rows:
                    after = n
                    event = json.loads(payload)
                    time = str(event.get("time", ""))
                    if (since is None or time >= since) and (until is None or time < until):
                        yield event
    except (sqlite3.Error, ValueError) as exc:
        raise GatewayError(f"{outbox}: cannot read the record: {exc}") from exc


def utc_bound(text: str, timezone: str) -> str:
    """``2026-12-01`` or ``2026-12-01T08:30`` in the site's time zone (or with an
    offset, or ``Z``) as the RFC 3339 UTC form events carry.

    Raises:
        GatewayError: not an ISO 8601 date or time.
    """
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise GatewayError(
            f"{text!r} is not a date or time (2026-12-01, 2026-12-01T08:30)"
        ) from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(timezone))
    return rfc3339(moment)


def write_jsonl(events: Iterator[dict[str, Any]], out: TextIO) -> int:
    """One event per line, as the center received it; returns how many."""
    count = 0
    for event in events:
        out.write(json.dumps(event, ensure_ascii=False, separators=(",", ":")) + "\n")
        count += 1
    return count


def write_csv(events: Iterator[dict[str, Any]], out: TextIO, timezone: str) -> int:
    """:data:`COLUMNS` as CSV with a header, times in ``timezone``; returns how many."""
    zone = ZoneInfo(timezone)
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    count = 0
    for event in events:
        found = event.get("data")
        data: dict[str, Any] = found if isinstance(found, dict) else {}
        writer.writerow(
            [
                _local(str(event.get("time", "")), zone),
                event.get("type", ""),
                event.get("priority", ""),
                event.get("subject", ""),
                data.get("state", ""),
                data.get("name", ""),
                data.get("location", ""),
                data.get("by") or data.get("operator") or "",
                data.get("incident", ""),
                event.get("id", ""),
                event.get("stream", ""),
                event.get("seq", ""),
            ]
        )
        count += 1
    return count


def _local(time: str, zone: ZoneInfo) -> str:
    try:
        moment = datetime.fromisoformat(time.replace("Z", "+00:00"))
    except ValueError:
        return time
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")
