"""Work over a long log in slices: the same result as in one go, with other tasks run
between two slices."""

from __future__ import annotations

import asyncio

import pytest

from relay.events import DoneData, Event, EventType, TextData, ToolCallData, Usage, make_event
from relay.session import SessionRecord, snapshot
from relay.subscribers import feeds, slices
from relay.subscribers.formats import ChatChunkRenderer, MessagesEventRenderer, WireRenderer
from relay.subscribers.responses_format import ResponsesEventRenderer
from relay.subscribers.transcript import fold_transcript

SESSION = "s_slicesslicesslicessli"
LENGTH = 1000  # four slices of 256 events, the last one short


def long_log(length: int = LENGTH) -> list[Event]:
    """Reasoning, text, a tool call among them, then the end: every kind a fold reads."""
    events = [make_event(1, EventType.REASONING, TextData("thinking"))]
    for event_id in range(2, length - 1):
        events.append(make_event(event_id, EventType.DELTA, TextData(f" w{event_id}")))
    call = ToolCallData(0, "call_1", "search", '{"q": 1}')
    events[500] = make_event(501, EventType.TOOL_CALL, call)
    events.append(make_event(length - 1, EventType.USAGE, Usage(3, length)))
    events.append(make_event(length, EventType.DONE, DoneData("stop", Usage(3, length))))
    return events


def renderers() -> list[WireRenderer]:
    return [
        ChatChunkRenderer(SESSION, 0, "mock", include_usage=True),
        MessagesEventRenderer(SESSION, "mock"),
        ResponsesEventRenderer(SESSION, 0, "mock"),
    ]


def test_slices_cut_a_log_into_pieces_of_at_most_the_size() -> None:
    pieces = list(slices.slices(long_log()))
    assert [len(piece) for piece in pieces] == [256, 256, 256, 232]
    assert [event for piece in pieces for event in piece] == long_log()


async def test_other_tasks_run_between_two_slices() -> None:
    turns: list[int] = []
    ticks = 0

    async def other_task() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(other_task())
    await asyncio.sleep(0)
    await slices.in_slices(long_log(), lambda piece: turns.append(ticks))
    task.cancel()
    assert len(turns) == 4 and turns == sorted(set(turns))  # it ran before each slice


@pytest.mark.parametrize("at", [0, 1, 255, 256, 700, LENGTH - 1])
async def test_a_renderer_primed_in_slices_goes_on_as_one_primed_at_once(at: int) -> None:
    log = long_log()
    for at_once, sliced in zip(renderers(), renderers(), strict=True):
        at_once.prime(log[:at])
        await slices.prime(sliced, log[:at])
        assert [sliced(event) for event in log[at:]] == [at_once(event) for event in log[at:]]


async def test_folds_in_slices_equal_the_folds_at_once() -> None:
    log = long_log()
    record = SessionRecord(SESSION, "mock", 0.0, 0.0, "")
    assert await slices.fold_transcript(log) == fold_transcript(log)
    assert await slices.snapshot(record, log) == snapshot(record, log)


def test_a_replay_is_cut_after_so_many_events_even_without_bytes() -> None:
    """A Responses stream resumed near the end renders every event but sends none of the
    first: its pieces are empty, and there are as many, so the caller pauses as often."""
    log = long_log()
    resumed = ResponsesEventRenderer(SESSION, 0, "mock", starting_after=10_000)
    assert list(feeds.replay_frames(resumed, log, piece_events=100)) == [b""] * 10
