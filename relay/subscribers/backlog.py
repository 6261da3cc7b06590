"""A session's backlog read for a replay: batch after batch, the next one's read in
flight while the caller writes the current one.

A replay from Redis is XRANGE after XRANGE; read one at a time, each batch waits a round
trip and the server's work on it (about 0.25 µs an entry: a quarter of a 10,000-event
replay) while relay does nothing. Read ahead, the server makes batch k+1 while relay
decodes, encodes and writes batch k, on the other core. Never more than two batches are
held: the one being written and the one being read. A read is only sent ahead when
the replay needs it anyway (the batch before it was full and did not end the log).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Coroutine
from typing import Any

from relay.events import Event
from relay.tasks import cancel_and_wait

# A read of the events after an id (at most the batch size the caller gives).
ReadAfter = Callable[[int], Coroutine[Any, Any, list[Event]]]


def ends_backlog(events: list[Event], batch: int) -> bool:
    """Whether a read of up to `batch` events reached the end of what is there: it came
    back short, or it holds the terminal event."""
    return len(events) < batch or events[-1].is_terminal


async def backlog(read: ReadAfter, after: int, batch: int) -> AsyncGenerator[list[Event], None]:
    """The events after `after`, a read of up to `batch` at a time, up to the first read
    that ends the backlog (`ends_backlog`: maybe empty), which comes last. While the
    caller works on one batch, the next one is being read. Raises what `read` raised.
    Close it (`aclose`) when stopping early: that ends the read ahead."""
    events = await read(after)
    while not ends_backlog(events, batch):
        ahead = asyncio.create_task(read(events[-1].id), name="relay-replay-read-ahead")
        try:
            yield events
        except BaseException:  # the caller stopped (closed, or cancelled)
            await cancel_and_wait([ahead])
            raise
        events = await ahead  # a cancel here cancels the read too
    yield events
