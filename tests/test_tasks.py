"""Ending owned tasks, including one that loses its first cancellation."""

from __future__ import annotations

import asyncio

import pytest

from relay import tasks
from relay.tasks import cancel_and_wait


async def test_a_task_that_loses_its_cancellation_is_cancelled_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tasks, "RECANCEL_AFTER_S", 0.05)
    cancels_seen = 0

    async def loses_the_first_cancel() -> None:
        # What Python 3.11's `wait_for` does when a cancel lands as its call completes.
        nonlocal cancels_seen
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                cancels_seen += 1
                if cancels_seen > 1:
                    raise

    task = asyncio.create_task(loses_the_first_cancel())
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_and_wait([task]), 2)
    assert task.cancelled() and cancels_seen == 2


async def test_tasks_that_end_or_fail_are_collected_without_waiting() -> None:
    async def fails() -> None:
        raise RuntimeError("boom")

    failed = asyncio.create_task(fails())
    sleeping = asyncio.create_task(asyncio.sleep(3600))
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_and_wait([failed, sleeping]), 1)
    assert sleeping.cancelled()
    assert isinstance(failed.exception(), RuntimeError)


async def test_the_owner_being_cancelled_is_not_swallowed() -> None:
    stubborn = asyncio.Event()

    async def ignores_cancels() -> None:
        while not stubborn.is_set():
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                continue

    task = asyncio.create_task(ignores_cancels())
    await asyncio.sleep(0)
    owner = asyncio.create_task(cancel_and_wait([task]))
    await asyncio.sleep(0.01)
    owner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await owner
    stubborn.set()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
