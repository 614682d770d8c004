"""Ending helper tasks without losing the caller's own cancellation."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any


async def cancel_and_wait(tasks: Iterable[asyncio.Future[Any]]) -> None:
    """Cancel every task of ``tasks`` not yet done and wait until each has ended.

    The usual ``task.cancel()`` then ``with suppress(CancelledError): await task``
    swallows a cancellation of the *caller* that arrives during the await: the
    caller's loop then goes on waiting as if nothing happened, and a daemon's stop
    hangs until its grace time runs out (seen in CI: the uplink's send loop, cancelled
    just as a PUBACK woke it, kept the outbox's lock, so the restarted daemon could
    not open it). Here the caller's cancellation is raised as usual.

    What the tasks raised while ending is not re-raised: they were told to stop.

    Raises:
        asyncio.CancelledError: the caller was cancelled while it waited.
    """
    pending = [task for task in tasks if not task.done()]
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending)
