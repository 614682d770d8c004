"""Where each checkpoint station's record log was read up to, kept across restarts.

A small JSON file ``{"<reader id>": <next record index>, ...}``, replaced
atomically (write a temporary file, fsync, rename) after every batch of records
the engine has taken. Without it a restarted gateway would either re-report a
station's whole ring or skip what was written while it was down.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)


class PositionStore:
    """Next record index per station; in memory only when ``path`` is None.

    Args:
        path: the JSON file (created on the first save). An unreadable or
            malformed file is logged and treated as empty: the stations are then
            read from the oldest record they still hold (duplicates, not losses).
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._next: dict[str, int] = {}
        self._lock = asyncio.Lock()
        if path is not None and path.exists():
            try:
                loaded = json.loads(path.read_text(encoding="utf-8"))
                self._next = {str(k): int(v) for k, v in dict(loaded).items()}
            except (OSError, ValueError, TypeError) as exc:
                log.warning("patrol.positions_unreadable", path=str(path), error=str(exc))

    def get(self, reader_id: str) -> int | None:
        """The next record index to read from ``reader_id``, or None if never read."""
        return self._next.get(reader_id)

    async def save(self, reader_id: str, next_index: int) -> None:
        """Remember ``next_index`` for ``reader_id`` (durably when there is a file).

        Raises:
            OSError: the file cannot be written (the caller logs it and goes on:
                the position is still kept in memory).
        """
        async with self._lock:
            self._next[reader_id] = next_index
            if self.path is not None:
                await asyncio.to_thread(_write_atomically, self.path, dict(self._next))


def _write_atomically(path: Path, data: dict[str, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        json.dump(data, fh, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)
