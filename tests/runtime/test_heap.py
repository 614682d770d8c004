"""heap.settle: start-up objects leave the collected generations; young collections
are spaced out. (The daemon process calls it once ready: ``gateway.daemon.serve``.)"""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from gateway.runtime import heap


@pytest.fixture
def restored_gc() -> Iterator[None]:
    """The test process's collector as it was: unfrozen, default thresholds."""
    threshold = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


def _in_collected_generations(obj: object) -> bool:
    return any(o is obj for o in gc.get_objects())


def test_settle_freezes_what_start_up_built_and_spaces_young_collections(
    restored_gc: None,
) -> None:
    built_at_start = {"config": ["zones"]}
    assert _in_collected_generations(built_at_start)
    frozen = heap.settle()
    assert frozen >= 1 and frozen == gc.get_freeze_count()
    assert not _in_collected_generations(built_at_start)  # no collection walks it again
    assert gc.get_threshold() == (heap.YOUNG, heap.OLDER, heap.OLDER)
    made_later = {"row": [1]}
    assert _in_collected_generations(made_later)  # what comes after is collected as ever
    assert "frozen=" in heap.describe()
