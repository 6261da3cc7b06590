"""Measuring how long relay's event loop is held up: for tests of work done per await.

`LoopLag` runs a task that sleeps `tick_s` again and again and keeps the worst lateness
of its wake-ups: the longest stretch the loop spent elsewhere without an await. A
test server runs on the test's own loop, so this is relay's loop too. `round_trips`
times requests to an endpoint while something else runs: what a concurrent client sees.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import aiohttp

TICK_S = 0.005


class LoopLag:
    """The worst lateness of the probe's wake-ups since it started (`worst_s`)."""

    def __init__(self, tick_s: float = TICK_S) -> None:
        self.tick_s = tick_s
        self.worst_s = 0.0

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self.tick_s
            await asyncio.sleep(self.tick_s)
            self.worst_s = max(self.worst_s, loop.time() - due)


@contextlib.asynccontextmanager
async def loop_lag(tick_s: float = TICK_S) -> AsyncIterator[LoopLag]:
    """A running `LoopLag`, stopped on exit."""
    lag = LoopLag(tick_s)
    task = asyncio.create_task(lag.run())
    await asyncio.sleep(0)
    try:
        yield lag
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def round_trips(
    http: aiohttp.ClientSession, url: str, until: asyncio.Future[object]
) -> list[float]:
    """The time each GET of `url` took, until `until` is done. One follows another at
    once, so that a request is always in flight: however the loop is held up, some
    request waits for it (with a pause between them, a stall in a pause went unseen)."""
    times: list[float] = []
    while not until.done():
        started = time.perf_counter()
        async with http.get(url) as response:
            await response.read()
            assert response.status == 200
        times.append(time.perf_counter() - started)
    return times
