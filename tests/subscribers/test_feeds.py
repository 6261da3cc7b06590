"""`Feeds` over the memory store, without HTTP: the join between replay and the live
feed, shared renderers, a subscriber that falls behind while sharing one, and encoders
that fail (the streams they encode for end with the error; the feed goes on)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import msgspec
import pytest

from relay import sse
from relay.config import StoreSettings
from relay.events import DoneData, Event, EventType, TextData, Usage, make_event
from relay.session import SessionRecord
from relay.store.memory import MemoryStore
from relay.subscribers import feeds
from relay.subscribers.feeds import Feeds
from relay.subscribers.formats import MessagesEventRenderer
from relay.subscribers.responses_format import ResponsesEventRenderer
from relay.subscribers.slices import NATIVE_EVENTS_PER_SLICE
from relay.subscribers.sse import STREAM_FAILED, native_frame
from tests.sse_client import SseParser

SESSION = "s_feedsfeedsfeedsfeedsfe"


@pytest.fixture
async def store() -> AsyncIterator[MemoryStore]:
    store = MemoryStore(StoreSettings())
    now = time.time()
    await store.create(SessionRecord(SESSION, "mock", now, now, ""))
    yield store
    await store.close()


@pytest.fixture
async def live(store: MemoryStore) -> AsyncIterator[Feeds]:
    running = Feeds(store, heartbeat_s=5.0, batch=1000, outage_s=1.0)
    yield running
    await running.close()
    assert len(running) == 0


def delta(event_id: int) -> Event:
    """Text, and reasoning every other event: each one opens a new Anthropic block."""
    kind = EventType.DELTA if event_id % 2 else EventType.REASONING
    return make_event(event_id, kind, TextData(f" word{event_id}"))


def done(event_id: int) -> Event:
    return make_event(event_id, EventType.DONE, DoneData("stop", Usage(3, event_id - 1)))


async def stream(live: Feeds, after: int, encode: object = native_frame) -> bytes:
    chunks = [chunk async for chunk in live.frames(SESSION, after, encode)]  # type: ignore[arg-type]
    return b"".join(chunks)


def ids(body: bytes) -> list[int]:
    return [event.int_id for event in SseParser().feed(body)]


async def test_joiners_behind_at_and_ahead_of_the_feed_get_no_gap_and_no_duplicate(
    store: MemoryStore, live: Feeds
) -> None:
    first = asyncio.create_task(stream(live, 0))
    joiners: list[tuple[int, asyncio.Task[bytes]]] = []
    for event_id in range(1, 40):
        await store.append(SESSION, [delta(event_id)])
        await asyncio.sleep(0)  # some join before the feed has read the append
        for resume in (event_id - 1, event_id, event_id + 2):
            joiners.append((resume, asyncio.create_task(stream(live, resume))))
        await asyncio.sleep(0.001)
    await store.append(SESSION, [done(40)])

    assert ids(await first) == list(range(1, 41))
    for resume, joiner in joiners:
        assert ids(await joiner) == list(range(resume + 1, 41)), f"joined after {resume}"


async def test_a_feed_builds_each_frame_once_for_all_its_subscribers(
    store: MemoryStore, live: Feeds, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[int] = []
    frame = sse.typed_frame

    def counted(event_id: int, head: bytes, data: bytes) -> bytes:
        built.append(event_id)
        return frame(event_id, head, data)

    monkeypatch.setattr(sse, "typed_frame", counted)
    subscribers = [asyncio.create_task(stream(live, 0)) for _ in range(20)]
    await asyncio.sleep(0.05)  # all joined the feed: the log was empty
    for event_id in range(1, 10):
        await store.append(SESSION, [delta(event_id)])
        await asyncio.sleep(0.001)
    await store.append(SESSION, [done(10)])
    bodies = await asyncio.gather(*subscribers)
    assert all(ids(body) == list(range(1, 11)) for body in bodies)
    assert sorted(built) == list(range(1, 11))


@pytest.fixture
async def small_inboxes(store: MemoryStore) -> AsyncIterator[Feeds]:
    running = Feeds(store, heartbeat_s=5.0, batch=1000, outage_s=1.0, buffer_bytes=200)
    yield running  # 200 bytes: a few frames
    await running.close()
    assert len(running) == 0


async def test_a_subscriber_that_falls_behind_a_shared_renderer_resumes_with_its_own(
    store: MemoryStore, small_inboxes: Feeds, caplog: pytest.LogCaptureFixture
) -> None:
    """Without a connection that is backed up, a subscriber whose inbox fills lags on its
    own (its task, not its client): it catches up from the store."""
    live = small_inboxes
    caplog.set_level(logging.DEBUG, logger=feeds.__name__)

    def renderer() -> MessagesEventRenderer:
        return MessagesEventRenderer(SESSION, "mock")

    await store.append(SESSION, [delta(1), delta(2), delta(3)])
    stalling = live.frames(SESSION, 0, renderer())
    received = [await anext(stalling)]  # the replay of 1-3
    joined = asyncio.create_task(anext(stalling))  # the first to join: it lends its renderer
    await asyncio.sleep(0.01)
    keeping_up = [asyncio.create_task(stream(live, 0, renderer())) for _ in range(3)]
    await asyncio.sleep(0.01)
    await store.append(SESSION, [delta(4)])
    received.append(await joined)  # shared bytes
    for event_id in range(5, 30):  # it reads nothing meanwhile
        await store.append(SESSION, [delta(event_id)])
        await asyncio.sleep(0.001)
    await store.append(SESSION, [done(30)])
    received += [chunk async for chunk in stalling]

    alone = renderer()
    expected = b"".join(alone(event) for event in await store.read(SESSION, 0, 100))
    assert "fell behind" in caplog.text
    assert b"".join(received) == expected
    for body in await asyncio.gather(*keeping_up):
        assert body == expected
    assert len(live) == 0  # the feed ended with the session


class CountingStore(MemoryStore):
    """Counts reads of the log (a replay read or a live follow's)."""

    def __init__(self) -> None:
        super().__init__(StoreSettings())
        self.reads = 0

    async def read(self, session_id: str, after: int, limit: int) -> list[Event]:
        self.reads += 1
        return await super().read(session_id, after, limit)

    async def wait(self, session_id: str, after: int, limit: int, timeout: float) -> list[Event]:
        self.reads += 1
        return await super().wait(session_id, after, limit, timeout)


async def test_events_read_ahead_by_the_caller_go_out_before_any_read_of_the_log() -> None:
    store = CountingStore()
    now = time.time()
    await store.create(SessionRecord(SESSION, "mock", now, now, ""))
    await store.append(SESSION, [delta(1), delta(2)])
    live = Feeds(store, heartbeat_s=5.0, batch=1000, outage_s=1.0)
    read_ahead = await store.read(SESSION, 0, 1000)
    reads_before = store.reads

    frames = live.frames(SESSION, 0, native_frame, read_ahead)
    assert ids(await anext(frames)) == [1, 2]
    assert store.reads == reads_before  # the first bytes did not wait for the store
    await store.append(SESSION, [delta(3), done(4)])
    rest = b"".join([chunk async for chunk in frames])
    assert ids(rest) == [3, 4]  # then on from after them: no gap, no duplicate
    await live.close()


async def test_a_read_ahead_that_ends_the_session_is_the_whole_stream(
    store: MemoryStore, live: Feeds
) -> None:
    await store.append(SESSION, [delta(1), done(2)])
    read_ahead = await store.read(SESSION, 0, 1000)
    chunks = [chunk async for chunk in live.frames(SESSION, 0, native_frame, read_ahead)]
    assert len(chunks) == 1 and ids(chunks[0]) == [1, 2]


# Encoders that fail.


def unreadable(event_id: int) -> Event:
    """A delta without its text: every provider-format renderer raises on it."""
    return Event(event_id, EventType.DELTA, msgspec.Raw(b"{}"))


async def until_failure(frames: AsyncIterator[bytes]) -> tuple[bytes, BaseException | None]:
    """What a stream sent, and what it raised (None when it ended)."""
    received = b""
    try:
        async for chunk in frames:
            received += chunk
    except Exception as exc:
        return received, exc
    return received, None


def sequence_numbers(body: bytes) -> list[int]:
    return [frame.json()["sequence_number"] for frame in SseParser().feed(body)]


def responses_renderer() -> ResponsesEventRenderer:
    return ResponsesEventRenderer(SESSION, 0, "mock")


async def test_a_shared_renderer_that_fails_live_ends_its_streams_not_the_others(
    store: MemoryStore, live: Feeds
) -> None:
    renderers = [responses_renderer() for _ in range(2)]
    failing = [asyncio.create_task(until_failure(live.frames(SESSION, 0, r))) for r in renderers]
    native = asyncio.create_task(stream(live, 0))
    await asyncio.sleep(0.05)  # all joined the feed: the log was empty
    for event in (delta(1), delta(2), delta(3), unreadable(4), done(5)):
        await store.append(SESSION, [event])
        await asyncio.sleep(0.001)

    assert ids(await native) == [1, 2, 3, 4, 5]
    for renderer, task in zip(renderers, failing, strict=True):
        received, error = await task
        assert isinstance(error, KeyError)
        sent = sequence_numbers(received)
        assert sent == list(range(len(sent))) and len(sent) > 2
        # Its own renderer caught up with the shared bytes: the error numbers on.
        failure = sequence_numbers(renderer.error_frame(STREAM_FAILED))
        assert failure == [len(sent), len(sent) + 1]


async def test_a_renderer_that_fails_on_replay_sends_the_frames_before_then_raises(
    store: MemoryStore, live: Feeds
) -> None:
    await store.append(SESSION, [delta(1), delta(2), unreadable(3), done(4)])
    renderer = responses_renderer()
    received, error = await until_failure(live.frames(SESSION, 0, renderer))
    assert isinstance(error, KeyError)
    alone = responses_renderer()
    good = b"".join(alone(event) for event in await store.read(SESSION, 0, 2))
    assert received == good  # the frames of the events before the one it failed on
    assert sequence_numbers(renderer.error_frame(STREAM_FAILED))[0] == len(sequence_numbers(good))


class GatedStore(MemoryStore):
    """Its live waits return only once `gate` is open: the test decides when a feed reads."""

    def __init__(self) -> None:
        super().__init__(StoreSettings())
        self.gate = asyncio.Event()

    async def wait(self, session_id: str, after: int, limit: int, timeout: float) -> list[Event]:
        await self.gate.wait()
        return await super().wait(session_id, after, limit, timeout)


async def test_a_renderer_that_joined_ahead_of_the_feed_fails_alone() -> None:
    store = GatedStore()
    now = time.time()
    await store.create(SessionRecord(SESSION, "mock", now, now, ""))
    live = Feeds(store, heartbeat_s=5.0, batch=1000, outage_s=1.0)
    await store.append(SESSION, [delta(1)])
    first = asyncio.create_task(stream(live, 0))  # the feed starts at 1 and waits
    await asyncio.sleep(0.01)
    await store.append(SESSION, [delta(2)])
    renderer = MessagesEventRenderer(SESSION, "mock")
    ahead = asyncio.create_task(until_failure(live.frames(SESSION, 0, renderer)))
    await asyncio.sleep(0.01)  # it read 1-2 and joined the feed ahead of it
    await store.append(SESSION, [unreadable(3)])
    await store.append(SESSION, [done(4)])
    store.gate.set()  # the feed reads 2-4: the joiner renders 3-4 on its own, and fails
    received, error = await ahead
    assert isinstance(error, KeyError) and b"word2" in received
    assert ids(await first) == [1, 2, 3, 4]
    await live.close()


class BreakingStore(MemoryStore):
    """A store with a bug of its own (not a `StoreError`) past event 2."""

    def __init__(self) -> None:
        super().__init__(StoreSettings())

    async def wait(self, session_id: str, after: int, limit: int, timeout: float) -> list[Event]:
        events = await super().wait(session_id, after, limit, timeout)
        if any(event.id > 2 for event in events):
            raise LookupError("a bug of the store's")
        return events


async def test_a_feed_that_fails_of_relays_own_bug_ends_its_streams_with_it() -> None:
    store = BreakingStore()
    now = time.time()
    await store.create(SessionRecord(SESSION, "mock", now, now, ""))
    live = Feeds(store, heartbeat_s=5.0, batch=1000, outage_s=1.0)
    subscriber = asyncio.create_task(until_failure(live.frames(SESSION, 0, native_frame)))
    await asyncio.sleep(0.05)  # it joined the feed: the log was empty
    for event in (delta(1), delta(2), delta(3)):
        await store.append(SESSION, [event])
        await asyncio.sleep(0.001)
    received, error = await subscriber
    assert ids(received) == [1, 2]
    assert isinstance(error, LookupError)
    assert len(live) == 0  # the feed ended
    await live.close()


class BackedUpConnection:
    """A connection whose socket takes nothing (`feeds.Connection`)."""

    def __init__(self) -> None:
        self.dropped = False

    def unsent(self) -> int:
        return 0 if self.dropped else 64 * 1024

    def drop(self) -> None:
        self.dropped = True

    def write_now(self, frames: bytes) -> bool:
        return False  # its socket takes nothing


class TakingConnection:
    """A connection whose socket takes every write at once (`feeds.Connection`); what it
    sent, in order, whoever wrote it."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.at_once = 0

    def unsent(self) -> int:
        return 0

    def drop(self) -> None:
        raise AssertionError("a connection that keeps up is never dropped")

    def write_now(self, frames: bytes) -> bool:
        self.sent.append(frames)
        self.at_once += 1
        return True


async def test_a_waiting_subscriber_gets_the_feeds_frames_on_its_connection_at_once(
    store: MemoryStore, live: Feeds
) -> None:
    """A subscriber's task that waits with nothing left to write is not woken for each
    event: the feed writes the frames to its connection itself, in order with what the
    task writes, and the stream ends after the terminal event as ever."""
    connection = TakingConnection()

    async def write_stream() -> None:  # what the SSE response does with the stream
        async for chunk in live.frames(SESSION, 0, native_frame, connection=connection):
            connection.sent.append(chunk)

    subscriber = asyncio.create_task(write_stream())
    others = [asyncio.create_task(stream(live, 0)) for _ in range(3)]
    await asyncio.sleep(0.01)  # every subscriber waits on the feed: the log was empty
    for event_id in range(1, 20):
        await store.append(SESSION, [delta(event_id)])
        await asyncio.sleep(0.001)
    await store.append(SESSION, [done(20)])
    await subscriber
    assert ids(b"".join(connection.sent)) == list(range(1, 21))
    assert connection.at_once >= 10  # most, if not all, went at once
    assert [ids(body) for body in await asyncio.gather(*others)] == [list(range(1, 21))] * 3


async def test_a_subscriber_whose_socket_is_backed_up_is_dropped_after_whole_events(
    store: MemoryStore, small_inboxes: Feeds, caplog: pytest.LogCaptureFixture
) -> None:
    live = small_inboxes
    caplog.set_level(logging.INFO, logger=feeds.__name__)
    connection = BackedUpConnection()
    stalling = live.frames(SESSION, 0, native_frame, connection=connection)
    joined = asyncio.create_task(anext(stalling))
    keeping_up = asyncio.create_task(stream(live, 0))
    await asyncio.sleep(0.01)
    await store.append(SESSION, [delta(1)])
    received = [await joined]  # then it reads nothing
    for event_id in range(2, 30):
        await store.append(SESSION, [delta(event_id)])
        await asyncio.sleep(0.001)
    await store.append(SESSION, [done(30)])
    assert connection.dropped
    assert "disconnected a subscriber that reads too slowly" in caplog.text
    received += [chunk async for chunk in stalling]  # what it held is gone: the stream ends
    assert ids(b"".join(received)) == [1]
    assert ids(await keeping_up) == list(range(1, 31))  # the others go on


def test_a_replay_is_written_in_pieces_of_whole_frames() -> None:
    events = [delta(event_id) for event_id in range(1, 101)]
    pieces = list(feeds.replay_frames(native_frame, events, piece_bytes=500))
    assert len(pieces) > 5
    # relay's own frames are made NATIVE_FRAMES_AT_ONCE at a time: a piece ends after
    # the group that takes it past its size
    most = 500 + len(native_frame(events[0])) * (feeds.NATIVE_FRAMES_AT_ONCE + 1)
    assert all(len(piece) < most for piece in pieces)
    assert [ids(piece)[0] for piece in pieces] == sorted({ids(piece)[0] for piece in pieces})
    assert b"".join(pieces) == b"".join(native_frame(event) for event in events)


def test_a_replay_raises_what_its_encoder_raised_after_the_frames_before() -> None:
    def failing_on_3(event: Event) -> bytes:
        if event.id == 3:
            raise KeyError("choices")
        return native_frame(event)

    replay = feeds.replay_frames(failing_on_3, [delta(1), delta(2), delta(3), delta(4)])
    assert ids(next(replay)) == [1, 2]
    with pytest.raises(KeyError):
        next(replay)


def test_a_native_replay_takes_longer_slices_of_small_events_and_cuts_large_ones() -> None:
    """relay's own frames are cheap: a piece holds NATIVE_EVENTS_PER_SLICE small events;
    large events still end a piece once it holds PIECE_BYTES."""
    small = [delta(event_id) for event_id in range(1, 3001)]
    pieces = list(feeds.replay_frames(native_frame, small))
    assert [len(ids(piece)) for piece in pieces] == [NATIVE_EVENTS_PER_SLICE] * 2 + [952]
    large = [make_event(i, EventType.DELTA, TextData("x" * 4000)) for i in range(1, 101)]
    pieces = list(feeds.replay_frames(native_frame, large))
    most = feeds.PIECE_BYTES + feeds.NATIVE_FRAMES_AT_ONCE * 4100
    assert len(pieces) > 2 and all(len(piece) < most for piece in pieces)
    assert b"".join(pieces) == b"".join(native_frame(event) for event in large)
