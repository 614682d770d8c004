"""The outbox's files: the single-daemon lock and the ballast.

* Lock: an exclusive ``flock`` on ``<db>.lock``; a second daemon on the same data
  directory is refused (the lock dies with the process, also on SIGKILL).
* Quarantine of a corrupt database is the state store's too:
  :func:`gateway.runtime.durable.quarantine`.
* Ballast: a file of zeros beside the database, written while there is room and
  given up when the disk fills, so that alarms can still be committed while a
  technician frees space.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from pathlib import Path

from gateway.errors import OutboxError


def lock(path: Path) -> int | None:
    """Take the exclusive lock of the database at ``path``; returns the descriptor.

    On a disk that refuses writes the lock file is opened read-only (``flock``
    needs no write access); when it does not exist and cannot be made, None is
    returned: nothing can be written there by anyone, and the start goes on
    (issue 11: the daemon still starts its devices).

    Raises:
        OutboxError: another process holds it.
    """
    name = f"{path}.lock"
    try:
        fd = os.open(name, os.O_RDWR | os.O_CREAT, 0o640)
    except OSError:
        try:
            fd = os.open(name, os.O_RDONLY)
        except OSError:
            return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        os.close(fd)
        raise OutboxError(f"outbox {path} is in use by another campus-gateway process") from exc
    return fd


def unlock(fd: int | None) -> None:
    """Release a lock taken by :func:`lock` (None is ignored)."""
    if fd is not None:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


class Ballast:
    """Reserve disk space next to the database (see module docstring).

    Args:
        path: the ballast file.
        size: bytes to reserve; 0 disables it.
    """

    def __init__(self, path: Path, size: int) -> None:
        self.path = path
        self.size = size

    @property
    def present(self) -> bool:
        return self.size > 0 and self.path.exists() and self.path.stat().st_size >= self.size

    def ensure(self) -> bool:
        """Write the ballast when missing and the disk has room for it twice over.

        Returns True when the ballast is in place afterwards.
        """
        if self.size <= 0 or self.present:
            return self.present
        if shutil.disk_usage(self.path.parent).free < 2 * self.size:
            return False
        try:
            with self.path.open("wb") as fh:
                chunk = b"\0" * (1 << 20)
                left = self.size
                while left > 0:
                    left -= fh.write(chunk[: min(left, len(chunk))])
                fh.flush()
                os.fsync(fh.fileno())
        except OSError:
            self.release()
            return False
        return True

    def release(self) -> bool:
        """Delete the ballast; True when there was one to give up."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        return True
