"""`follow` and the feeds over a memory store, without HTTP: how a reader tells a log that
vanished under it (`session_lost`, numbered after the last event it got) from a session
that ended before its resume point (the iteration just ends), and when an idle reader
beats."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator

import msgspec
import pytest

from relay.config import StoreSettings
from relay.events import DoneData, Event, EventType, TextData, make_event
from relay.session import SessionRecord
from relay.sse import first_heartbeat_s
from relay.store.memory import MemoryStore
from relay.subscribers.feeds import Feed
from relay.subscribers.follow import SESSION_LOST, follow, is_session_lost, session_lost
from relay.subscribers.sse import native_frame
from tests.sse_client import SseParser

SESSION = "s_followfollowfollowfoll"
RETENTION_S = 10.0


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def delta(event_id: int) -> Event:
    return make_event(event_id, EventType.DELTA, TextData(f" word{event_id}"))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def store(clock: Clock) -> AsyncIterator[MemoryStore]:
    """A store holding SESSION, ended after two deltas (event 3 is `done`)."""
    store = MemoryStore(StoreSettings(retention_s=RETENTION_S), clock=clock)
    await store.create(SessionRecord(SESSION, "mock", clock.now, clock.now, ""))
    await store.append(
        SESSION, [delta(1), delta(2), make_event(3, EventType.DONE, DoneData("stop"))]
    )
    yield store
    await store.close()


async def batches(store: MemoryStore, after: int) -> list[list[Event]]:
    reading = follow(store, SESSION, after, heartbeat_s=0.05, batch=1)
    async with asyncio.timeout(5):
        return [batch async for batch in reading]


def test_session_lost_is_an_error_event_numbered_after_the_last_one_got() -> None:
    event = session_lost(41)
    assert (event.id, event.type, event.is_terminal) == (42, EventType.ERROR, True)
    assert msgspec.json.decode(event.data) == msgspec.to_builtins(SESSION_LOST)
    assert SESSION_LOST.code == "session_lost" and not SESSION_LOST.retryable
    assert is_session_lost(event)
    assert not is_session_lost(make_event(42, EventType.ERROR, TextData("session_lost")))


async def test_a_reader_of_an_ended_session_gets_its_log_to_the_terminal(
    store: MemoryStore,
) -> None:
    assert [[event.id for event in batch] for batch in await batches(store, 0)] == [[1], [2], [3]]


async def test_a_reader_past_the_terminal_of_an_ended_session_gets_nothing(
    store: MemoryStore,
) -> None:
    assert await batches(store, 3) == []


async def test_a_reader_whose_session_expired_before_its_end_ends_with_session_lost(
    store: MemoryStore, clock: Clock
) -> None:
    clock.now += RETENTION_S + 1  # gone before the reader got event 3
    assert await batches(store, 2) == [[session_lost(2)]]


class LogWithoutEvents(MemoryStore):
    """The record stays, its events are gone (as after an eviction of one Redis key)."""

    async def read(self, session_id: str, after: int, limit: int) -> list[Event]:
        return []

    async def wait(self, session_id: str, after: int, limit: int, timeout: float) -> list[Event]:
        return []


async def test_a_record_that_counts_events_its_log_lacks_is_a_lost_session() -> None:
    store = LogWithoutEvents(StoreSettings())
    now = time.time()
    await store.create(SessionRecord(SESSION, "mock", now, now, ""))
    await store.append(SESSION, [delta(1), delta(2)])
    async with asyncio.timeout(5):
        got = [batch async for batch in follow(store, SESSION, 1, heartbeat_s=0.05, batch=10)]
    assert got == [[session_lost(1)]]
    await store.close()


async def test_a_feed_gives_each_subscriber_session_lost_after_its_own_last_event() -> None:
    feed = Feed(SESSION, position=3)
    at_the_feed = feed.attach(3, native_frame)
    ahead_of_it = feed.attach(5, native_frame)  # it read 4 and 5 before the feed did
    feed.deliver([session_lost(3)])
    feed.end()
    for inbox, lost_id in ((at_the_feed, 4), (ahead_of_it, 6)):
        frames = SseParser().feed(b"".join(await inbox.take()))
        assert [(event.int_id, event.event) for event in frames] == [(lost_id, "error")]
        assert frames[0].json()["code"] == "session_lost"


async def test_an_idle_reader_beats_early_after_its_start_and_its_events(clock: Clock) -> None:
    """Readers that fall idle together (they start together, or their sessions' events
    stop together) must not beat together: the first beat after the start and after
    events is the session's own, in the interval's second half; then one per interval."""
    heartbeat_s = 0.5
    session_id = next(
        candidate
        for candidate in (f"s_{secrets.token_urlsafe(16)}" for _ in range(10_000))
        if first_heartbeat_s(heartbeat_s, candidate) < 0.6 * heartbeat_s
    )
    store = MemoryStore(StoreSettings(retention_s=RETENTION_S), clock=clock)
    await store.create(SessionRecord(session_id, "mock", clock.now, clock.now, ""))
    since = time.monotonic()
    beats: list[float] = []  # each beat's time since the start or the last event
    reading = follow(store, session_id, 0, heartbeat_s=heartbeat_s, batch=10)
    async with asyncio.timeout(5):
        async for found in reading:
            if found:
                since = time.monotonic()
                continue
            beats.append(time.monotonic() - since)
            if len(beats) == 2:
                await store.append(session_id, [delta(1)])
            if len(beats) == 3:
                break
    await reading.aclose()
    await store.close()
    assert beats[0] < 0.8 * heartbeat_s  # not a whole interval
    assert beats[1] - beats[0] >= heartbeat_s - 0.01  # timers may fire a tick early
    assert beats[2] < 0.8 * heartbeat_s  # after the event, early again
