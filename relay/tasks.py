"""Ending the background tasks relay owns.

Every owner ends its tasks with `cancel_and_wait`, never with a bare `cancel()` and a
`gather`: on Python 3.11, `asyncio.wait_for` can lose a cancellation that lands just as
the call it waits for completes (python/cpython#86296, fixed in 3.12). redis-py opens
its connections through it, so a task cancelled while it connects may run on as if
nothing had happened, and an owner that awaits it once waits forever.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

# How long a cancelled task gets to end before it is cancelled again.
RECANCEL_AFTER_S = 0.5


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel `tasks` and return once every one has ended; their results and errors
    are dropped (each task reports its own)."""
    tasks = list(tasks)
    running = {task for task in tasks if not task.done()}
    while running:
        for task in running:
            task.cancel()
        _, running = await asyncio.wait(running, timeout=RECANCEL_AFTER_S)
    # Collect what they raised, so that asyncio does not log it as never retrieved.
    await asyncio.gather(*tasks, return_exceptions=True)
