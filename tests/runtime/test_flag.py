"""``gateway.runtime.flag``: the send loop's one-future wait for the first of its wakes."""

from __future__ import annotations

import asyncio

import pytest

from gateway.runtime.flag import Flag, first_of


async def test_any_flag_set_later_wakes_the_wait_and_leaves_no_waiter() -> None:
    a, b = Flag(), Flag()
    waiting = asyncio.ensure_future(first_of((a, b), within=30))
    await asyncio.sleep(0)
    assert not waiting.done() and a._waiters and b._waiters
    b.set()
    await asyncio.wait_for(waiting, 5)
    assert not a._waiters and not b._waiters
    assert b.is_set() and not a.is_set()  # the caller clears what it consumes


async def test_a_flag_already_set_returns_at_once() -> None:
    flag = Flag()
    flag.set()
    await asyncio.wait_for(first_of((flag,)), 1)
    flag.clear()
    assert not flag.is_set()


async def test_a_done_failure_ends_the_wait_without_raising_its_result() -> None:
    failure: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()
    flag = Flag()
    waiting = asyncio.ensure_future(first_of((flag,), failure))
    await asyncio.sleep(0)
    failure.set_result(OSError("lost"))
    await asyncio.wait_for(waiting, 5)
    assert waiting.result() is None and not flag._waiters


async def test_within_ends_the_wait_when_nothing_is_set() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.wait_for(first_of((Flag(),), within=0.05), 5)
    assert loop.time() - started >= 0.05


async def test_a_cancelled_wait_leaves_nothing_registered() -> None:
    failure: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()
    flag = Flag()
    waiting = asyncio.ensure_future(first_of((flag,), failure, within=30))
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert not flag._waiters
    flag.set()  # no waiter left to wake: nothing raises
    assert flag.is_set()


async def test_flag_wait_returns_once_set() -> None:
    flag = Flag()
    waiting = asyncio.ensure_future(flag.wait())
    await asyncio.sleep(0)
    assert not waiting.done()
    flag.set()
    await asyncio.wait_for(waiting, 5)
