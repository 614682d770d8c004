"""The garbage collector's settings for a long-running daemon on a small box.

Measured on ``bench/outbox_bench.py drain`` (100,000 rows, 2-core machine, issue 14),
CPython 3.11's defaults cost the alarm path twice:

* every full collection walked every object the start-up built (modules, config,
  pydantic and structlog internals): 75-95 ms each, about 40 of them in a 30 s
  drain. The event loop stood still that long, and a panic's commit with it
  (p99 of a 10 ms sleep's overshoot: 80 ms);
* young collections every 700 allocations promoted the uplink's short-lived
  objects (rows in flight, futures, marks waiting for their commit) to the older
  generations, whose collections then had to walk them: GC was 15-20 % of the
  drain's time on the loop.

Once ready, the daemon process (``gateway.daemon.serve``, not a ``Gateway`` embedded
in a test) collects once and *freezes* what survives
(``gc.freeze``, the permanent generation collections never walk), and collects
the young generation every ``YOUNG`` allocations instead. With both, the same drain
ran 3,300 -> 5,400 rows/s, its loop lag p99 80 -> 24 ms.

What a frozen object costs: one that later becomes cyclic garbage is never freed.
Start-up objects live as long as the daemon does, so this is a bounded few bytes
at most; objects freed by their reference count are freed as always.
"""

from __future__ import annotations

import gc

YOUNG = 10_000
"""Allocations of container objects between young collections (CPython: 700)."""

OLDER = 20
"""Young collections per middle one, and middle ones per full one (CPython: 10)."""


def settle() -> int:
    """Collect once, freeze what the start-up left, and space out young collections.

    Call when the daemon is ready (and again after anything big is loaded for good,
    which it then adds to the frozen set). Returns the objects now frozen.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG, OLDER, OLDER)
    return gc.get_freeze_count()


def describe() -> str:
    """``gc frozen=48196 threshold=(10000, 20, 20)``: what benchmarks print in their settings."""
    return f"gc frozen={gc.get_freeze_count()} threshold={gc.get_threshold()}"
