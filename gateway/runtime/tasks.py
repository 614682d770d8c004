"""Ending helper tasks without losing the caller's own cancellation."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any


async def cancel_and_wait(
    tasks: Iterable[asyncio.Future[Any]], *, again_after: float | None = None
) -> None:
    """Cancel every task of ``tasks`` not yet done and wait until each has ended.

    The usual ``task.cancel()`` then ``with suppress(CancelledError): await task``
    swallows a cancellation of the *caller* that arrives during the await: the
    caller's loop then goes on waiting as if nothing happened, and a daemon's stop
    hangs until its grace time runs out (seen in CI: the uplink's send loop, cancelled
    just as a PUBACK woke it, kept the outbox's lock, so the restarted daemon could
    not open it). Here the caller's cancellation is raised as usual.

    With ``again_after``, a task still running that many seconds after it was
    cancelled is cancelled again, until it ends: on Python 3.11 ``asyncio.wait_for``
    drops a cancellation that arrives in the same instant as the reply it waits for
    (gh-86296, fixed in 3.12), and the task then goes on as if never told (seen in
    CI: the center console's ack loop, cancelled as a PUBACK came in, waited for
    the next ack forever, and the test hung until its 240 s timeout). Only for
    tasks whose ending may be cut short: a second cancellation also interrupts a
    task's own clean-up (an outbox storing what it holds, an aiosqlite connection
    closing, whose worker thread then outlives the loop and holds the process
    open at exit), so the default cancels once.

    What the tasks raised while ending is not re-raised: they were told to stop.

    Raises:
        asyncio.CancelledError: the caller was cancelled while it waited.
    """
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=again_after)
