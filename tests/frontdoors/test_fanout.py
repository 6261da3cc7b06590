"""Many readers of one session: every SSE subscriber gets the same log, or exactly its suffix."""

from __future__ import annotations

import asyncio

from tests.frontdoors.conftest import Relay
from tests.sse_client import SseEvent, SseReader

SUBSCRIBERS = 200
# The subscribers connect during time to first token and follow a live stream.
MODEL = "mock:tokens=200,tps=400,ttft_ms=300"

EventKey = tuple[str | None, str, str]


def keys(events: list[SseEvent]) -> list[EventKey]:
    return [event.key() for event in events]


def delta_text(events: list[SseEvent]) -> str:
    return "".join(event.json()["text"] for event in events if event.event == "delta")


async def test_concurrent_subscribers_receive_identical_logs(relay_server: Relay) -> None:
    created = await relay_server.create(MODEL)
    streams = await asyncio.gather(
        *(relay_server.events(created["id"]) for _ in range(SUBSCRIBERS))
    )
    snapshot = await relay_server.snapshot(created["id"])
    replay = keys(await relay_server.events(created["id"]))

    assert snapshot["status"] == "completed"
    assert len(snapshot["text"].split()) == 200
    assert [event.int_id for event in streams[0]] == list(range(1, snapshot["last_event_id"] + 1))
    assert streams[0][-1].event == "done"
    assert delta_text(streams[0]) == snapshot["text"]
    assert streams[0][-1].json()["usage"] == snapshot["usage"]
    for events in streams:
        assert keys(events) == replay


async def test_subscribers_joining_mid_stream_get_exactly_the_suffix(relay_server: Relay) -> None:
    # Two seconds long, so the joiners' requests arrive while it runs even on a loaded machine.
    created = await relay_server.create("mock:tokens=200,tps=100,ttft_ms=0")
    session_id = created["id"]
    joiners: list[tuple[int, asyncio.Task[list[SseEvent]]]] = []

    def join(resume: int, by_query: bool) -> None:
        kwargs: dict[str, object] = (
            {"params": {"last_event_id": str(resume)}}
            if by_query
            else {"last_event_id": str(resume)}
        )
        joiners.append((resume, asyncio.create_task(relay_server.events(session_id, **kwargs))))

    async with relay_server.subscribe(session_id) as reader:
        # As the first reader sees event n, others join behind it, at it and ahead of it.
        for seen in range(1, 6):
            await expect_event(reader, seen)
            for offset in (-1, 0, 2):
                join(max(seen + offset, 0), by_query=offset == 0)
        full = await reader.read_all()

    assert full[-1].event == "done"
    assert [event.int_id for event in full] == list(range(1, len(full) + 1))
    for resume, task in joiners:
        events = await task
        assert keys(events) == keys(full[resume:]), f"joined after {resume}"


async def expect_event(reader: SseReader, event_id: int) -> None:
    event = await reader.next_event()
    assert event is not None
    assert event.int_id == event_id
