"""A state file the disk cannot read for a while is never taken for a corrupt one.

The state file lives on a small ext4 image on a loop device. The image is cut
short from the file's last extent and the loop device resized (``losetup -c``):
with the page cache dropped, reading the file's tail fails with EIO, which SQLite
reports as pages it cannot get (``quick_check``) or as a malformed image. Quarantining
it then would move an intact file aside and start the next run without its arming
(a review reproduced exactly that). The store must run unread, leave the file where
it is, and the next start, once the disk is whole again, reads it. Root only (loop
devices, mount, dropping the page cache); skipped with the reason otherwise.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.runtime.state import AreaRecord
from gateway.runtime.state_store import StateStore
from tests.fault_support import loop_disk_missing

BLOCK = 4096
ARMED = AreaRecord(True, datetime(2026, 12, 4, 7, 0, tzinfo=UTC), "duty-1")


def _why_not() -> str | None:
    return loop_disk_missing(
        ("mkfs.ext4", "losetup", "mount", "filefrag", "fallocate"), "losetup, mount, drop_caches"
    )


pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(_why_not() is not None, reason=str(_why_not())),
]


def _run(*args: str | Path) -> str:
    return subprocess.run([str(a) for a in args], check=True, capture_output=True, text=True).stdout


def _drop_caches() -> None:
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


@contextlib.contextmanager
def loop_disk(tmp_path: Path) -> Iterator[tuple[Path, Path, str]]:
    """A 64 MiB ext4 image (no journal) on a loop device, mounted; yields (image,
    mount point, loop device)."""
    image, mount = tmp_path / "disk.img", tmp_path / "disk"
    mount.mkdir()
    with image.open("wb") as fh:
        fh.truncate(64 << 20)
    _run("mkfs.ext4", "-q", "-F", "-O", "^has_journal", "-b", str(BLOCK), image)
    device = _run("losetup", "-f", "--show", image).strip()
    try:
        _run("mount", "-o", "noatime", device, mount)
        try:
            yield image, mount, device
        finally:
            subprocess.run(["umount", "-l", str(mount)], check=False, capture_output=True)
    finally:
        subprocess.run(["losetup", "-d", device], check=False, capture_output=True)


def _last_extent_block(path: Path) -> int:
    """The physical block where ``path``'s last extent starts (``filefrag -v``)."""
    rows = re.findall(r"^\s*\d+:\s+\d+\.\.\s*\d+:\s+(\d+)\.\.", _run("filefrag", "-v", path), re.M)
    assert rows, f"no extents for {path}"
    return int(rows[-1])


async def test_a_state_file_the_disk_cannot_read_for_a_while_stays_where_it_is(
    tmp_path: Path,
) -> None:
    with loop_disk(tmp_path) as (image, mount, device):
        _run("fallocate", "-l", "40M", mount / "filler")
        state = mount / "outbox-state.sqlite"
        async with StateStore(state) as store:
            await store.put_area("PERIM", ARMED)
            for n in range(60):  # a file of a few hundred KiB, several extents' worth
                await store.put_area(f"A{n:03d}", AreaRecord(True, ARMED.since, "x" * 4000))
        cut = _last_extent_block(state) + 1  # the file's tail is beyond the cut
        assert cut * BLOCK < image.stat().st_size
        tail = image.read_bytes()[cut * BLOCK :]
        _drop_caches()
        with image.open("r+b") as fh:
            fh.truncate(cut * BLOCK)
        _run("losetup", "-c", device)
        try:
            with pytest.raises(OSError):  # the fault is real: the tail cannot be read
                state.read_bytes()
            async with StateStore(state) as store:
                # moved aside at once, a new file would read fine: both wrong
                assert (store.unread is not None, store.quarantined) == (True, None)
        finally:
            with image.open("r+b") as fh:
                fh.seek(cut * BLOCK)
                fh.write(tail)
            _run("losetup", "-c", device)
            _drop_caches()
        assert sorted(p.name for p in mount.iterdir() if "corrupt" in p.name) == []
        async with StateStore(state) as store:
            assert store.unread is None and store.areas["PERIM"] == ARMED
