"""The replay's reads (`relay.subscribers.backlog`): the next batch is read while the
caller works on the current one, no read is sent that the replay does not need, and a
replay that stops early ends its read ahead."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from relay.events import DoneData, Event, EventType, TextData, make_event
from relay.subscribers.backlog import backlog, ends_backlog


def delta(event_id: int) -> Event:
    return make_event(event_id, EventType.DELTA, TextData(f"w{event_id}"))


class Log:
    """A log of `length` events (the last `done` if `ended`), read in batches of
    `batch`, recording each read's `after` when it starts and when it returns."""

    def __init__(self, length: int, batch: int, *, ended: bool = True) -> None:
        self.events = [delta(i) for i in range(1, length + 1)]
        if ended and self.events:
            self.events[-1] = make_event(length, EventType.DONE, DoneData("stop"))
        self.batch = batch
        self.started: list[int] = []
        self.finished: list[int] = []
        self.gate: asyncio.Event | None = None  # when set, reads after the first wait on it

    async def read(self, after: int) -> list[Event]:
        self.started.append(after)
        if self.gate is not None and after > 0:
            await self.gate.wait()
        await asyncio.sleep(0)  # a round trip
        self.finished.append(after)
        return self.events[after : after + self.batch]


async def test_the_next_batch_is_read_while_the_caller_has_the_current_one() -> None:
    log = Log(25, batch=10)
    batches = backlog(log.read, 0, 10)
    first = await anext(batches)
    assert [event.id for event in first] == list(range(1, 11))
    await asyncio.sleep(0.01)  # the caller writes the batch: the next read is under way
    assert log.started == [0, 10] and log.finished == [0, 10]
    rest = [batch async for batch in batches]
    assert [[event.id for event in batch] for batch in rest] == [
        list(range(11, 21)),
        list(range(21, 26)),
    ]
    assert log.started == [0, 10, 20]  # nothing after the short read


async def test_no_read_follows_a_full_batch_that_ends_the_log() -> None:
    log = Log(20, batch=10)
    batches = [batch async for batch in backlog(log.read, 0, 10)]
    assert [len(batch) for batch in batches] == [10, 10]
    assert log.started == [0, 10]  # the terminal event ended it: no empty read after


async def test_a_log_still_running_ends_with_its_first_short_read() -> None:
    log = Log(20, batch=10, ended=False)
    batches = [batch async for batch in backlog(log.read, 5, 10)]
    assert [len(batch) for batch in batches] == [10, 5]
    empty = [batch async for batch in backlog(log.read, 20, 10)]
    assert empty == [[]]  # caught up already: one empty batch


async def test_a_replay_that_stops_early_ends_its_read_ahead() -> None:
    log = Log(100, batch=10)
    log.gate = asyncio.Event()  # the read ahead never returns on its own
    async with contextlib.aclosing(backlog(log.read, 0, 10)) as batches:
        await anext(batches)
        await asyncio.sleep(0.01)
        assert log.started == [0, 10]
    assert log.finished == [0]  # the read of 10 was cancelled, not left running
    assert not [task for task in asyncio.all_tasks() if "read-ahead" in task.get_name()]


async def test_a_read_that_fails_raises_to_the_caller() -> None:
    async def failing(after: int) -> list[Event]:
        if after:
            raise ConnectionError("store gone")
        return [delta(i) for i in range(1, 11)]

    batches = backlog(failing, 0, 10)
    assert len(await anext(batches)) == 10
    with pytest.raises(ConnectionError, match="store gone"):
        await anext(batches)


def test_a_backlog_ends_with_a_short_read_or_the_terminal_event() -> None:
    assert ends_backlog([], 10)
    assert ends_backlog([delta(1)], 10)
    assert not ends_backlog([delta(i) for i in range(1, 11)], 10)
    ended = [delta(1), make_event(2, EventType.DONE, DoneData("stop"))]
    assert ends_backlog(ended, 2)
