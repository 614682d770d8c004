"""cancel_and_wait: helper tasks end, and the caller's own cancellation is never lost."""

from __future__ import annotations

import asyncio
import sys

import pytest

from gateway.runtime.tasks import cancel_and_wait


async def test_a_caller_cancelled_while_its_helpers_end_stays_cancelled() -> None:
    """The CI hang of 2026-12-03: a send loop cancelled while it ended its waits went on."""
    helper_cancelled = asyncio.Event()
    release = asyncio.Event()

    async def slow_to_end() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            helper_cancelled.set()
            await release.wait()  # ends a few steps after it was told to

    async def loop_body() -> str:
        helper = asyncio.create_task(slow_to_end())
        await asyncio.sleep(0)  # the helper starts waiting
        await cancel_and_wait([helper])
        return "went on waiting"

    caller = asyncio.create_task(loop_body())
    await helper_cancelled.wait()  # the caller is now waiting for its helper to end
    caller.cancel()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert caller.cancelled()


async def test_helpers_are_cancelled_and_have_ended_on_return() -> None:
    async def forever() -> None:
        await asyncio.Event().wait()

    async def raises_when_cancelled() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            raise ValueError("while ending")

    async def done_already() -> int:
        return 7

    finished = asyncio.create_task(done_already())
    await finished
    helpers = [asyncio.create_task(forever()), asyncio.create_task(raises_when_cancelled())]
    await asyncio.sleep(0)
    await cancel_and_wait([*helpers, finished])
    assert helpers[0].cancelled()
    assert isinstance(helpers[1].exception(), ValueError)
    assert finished.result() == 7  # a finished task is left as it was


async def test_a_task_that_swallowed_its_cancellation_is_cancelled_again() -> None:
    """Python 3.11's ``asyncio.wait_for`` returns the reply and drops a cancellation that
    comes in the same instant (gh-86296): the CI hang of the center console's ack loop."""
    reply: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    went_on = asyncio.Event()

    async def ack_loop() -> None:
        await asyncio.wait_for(reply, 10)
        went_on.set()  # the cancellation was lost here (3.11)
        await asyncio.Event().wait()  # the next ack, which never comes

    task = asyncio.create_task(ack_loop())
    await asyncio.sleep(0)  # waiting for its reply
    reply.set_result(1)  # the reply and the stop in the same instant
    async with asyncio.timeout(5):
        await cancel_and_wait([task], again_after=0.05)
    assert task.cancelled()
    assert went_on.is_set() or sys.version_info >= (3, 12), "the race did not happen"


async def test_by_default_a_task_is_cancelled_once_and_its_clean_up_runs_to_its_end() -> None:
    """A second cancellation would cut a clean stop short: an outbox storing what it
    holds, an aiosqlite connection closing (its thread then holds the process open)."""
    cleaned = asyncio.Event()

    async def slow_clean_up() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(0.3)  # e.g. the last commit, then close
            cleaned.set()

    task = asyncio.create_task(slow_clean_up())
    await asyncio.sleep(0)
    await cancel_and_wait([task])
    assert cleaned.is_set()
