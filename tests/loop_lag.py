"""Measuring how long relay's event loop is held up: for tests of work done per await.

`LoopLag` runs a task that sleeps `tick_s` again and again and keeps the worst lateness
of its wake-ups: the longest stretch the loop spent elsewhere without an await. A
test server runs on the test's own loop, so this is relay's loop too. `round_trips`
measures requests to an endpoint while something else runs: what a concurrent client
sees, in the process's CPU time (the work it waited for), which a loaded machine does
not stretch as it stretches the wall clock.
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
    """The CPU time the process spent (in all its threads) during each GET of `url`,
    until `until` is done. One follows another at once, so that a request is always in
    flight: however the loop is held up, some request waits for it (with a pause between
    them, a stall in a pause went unseen).

    CPU time, not wall time: what a request waits for is work, on the loop or in a
    thread holding the GIL, and that is what the process's CPU time counts. Wall time
    adds whatever the machine gives other processes meanwhile: on a loaded machine a
    worker thread descheduled while it holds the GIL stalls the loop for as long, and a
    round trip of 15 ms of work took 56 ms."""
    times: list[float] = []
    while not until.done():
        started = time.process_time()
        async with http.get(url) as response:
            await response.read()
            assert response.status == 200
        times.append(time.process_time() - started)
    return times
