"""Deadlines of one length sharing one timer: each behaves as ``asyncio.timeout`` would."""

from __future__ import annotations

import asyncio
import threading

import pytest

from xrouter.deadlines import SharedTimeout, loop_timer


async def wait(shared: SharedTimeout, seconds: float) -> str:
    try:
        with shared.deadline():
            await asyncio.sleep(seconds)
    except TimeoutError:
        return "timeout"
    return "done"


async def test_only_the_waits_that_outlast_the_deadline_time_out() -> None:
    shared = SharedTimeout(0.05)
    outcomes = await asyncio.gather(*(wait(shared, 0.3 if n % 2 else 0.001) for n in range(20)))
    assert outcomes == ["timeout" if n % 2 else "done" for n in range(20)]


async def test_deadlines_set_later_expire_later() -> None:
    shared = SharedTimeout(0.1)
    loop = asyncio.get_running_loop()
    started = loop.time()
    first = asyncio.create_task(wait(shared, 1))
    await asyncio.sleep(0.06)
    second = asyncio.create_task(wait(shared, 1))
    assert await first == "timeout"
    assert not second.done()  # its own deadline is 0.06 s later
    assert await second == "timeout"
    assert 0.15 <= loop.time() - started < 0.5


async def test_the_task_is_not_left_cancelled_and_can_wait_again() -> None:
    shared = SharedTimeout(0.02)
    assert await wait(shared, 1) == "timeout"
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0
    assert await wait(shared, 0) == "done"
    await asyncio.sleep(0.05)  # no stray cancellation arrives later


async def test_a_cancellation_from_outside_stays_a_cancellation() -> None:
    shared = SharedTimeout(10)
    task = asyncio.create_task(wait(shared, 1))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_an_error_in_the_block_passes_through() -> None:
    shared = SharedTimeout(10)
    with pytest.raises(KeyError), shared.deadline():
        raise KeyError("x")


def test_it_works_from_one_loop_after_another() -> None:
    shared = SharedTimeout(0.02)
    assert asyncio.run(wait(shared, 1)) == "timeout"
    outcome: list[str] = []
    thread = threading.Thread(target=lambda: outcome.append(asyncio.run(wait(shared, 1))))
    thread.start()
    thread.join(5)
    assert outcome == ["timeout"]
    assert asyncio.run(wait(shared, 0)) == "done"


async def wait_until(shared: SharedTimeout, when: float, seconds: float) -> float:
    loop = asyncio.get_running_loop()
    try:
        with shared.deadline_at(when):
            await asyncio.sleep(seconds)
    except TimeoutError:
        return loop.time()
    return -1.0


async def test_a_shorter_deadline_set_later_expires_first() -> None:
    shared = loop_timer()
    loop = asyncio.get_running_loop()
    now = loop.time()
    long = asyncio.create_task(wait_until(shared, now + 0.4, 1))
    await asyncio.sleep(0)
    short = asyncio.create_task(wait_until(shared, now + 0.05, 1))
    short_ended = await short
    assert now + 0.05 <= short_ended < now + 0.3
    assert not long.done()
    assert await long >= now + 0.4


async def test_finished_deadlines_do_not_pile_up() -> None:
    shared = SharedTimeout(10)
    loop = asyncio.get_running_loop()
    # Finished out of order (later deadlines first), so they cannot all leave from the top.
    for n in range(5000):
        with shared.deadline_at(loop.time() + 60 - n / 1000):
            pass
    assert len(shared._heap) <= 2048
    assert await wait(shared, 0) == "done"
