"""A session whose log vanishes under its readers, over real sockets: a real redis-server
is flushed (FLUSHALL) or restarted without persistence while a generation runs.

Every reader ends with one terminal, `session_lost` in its own format, numbered right
after the last event it got: a native SSE reader, the Chat Completions, Messages and
Responses streams, and the whole-answer requests waiting for the end (an error answer
in their shape). The generation stops (its provider's stream is closed), relay logs one
warning and no traceback, and a later resume gets 404. On the memory store a running
session never vanishes (it is never evicted); a finished one evicted by capacity while
a reader replays it ends that reader the same way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Callable, Iterator
from typing import Any

import msgspec
import pytest

from relay.providers.base import Provider, ProviderItem, TextDelta
from relay.services import SERVICES
from relay.subscribers.follow import SESSION_LOST
from relay.vocabulary import GenerationRequest, session_tag
from tests.frontdoors.conftest import FAST_MOCK, READ_TIMEOUT_S, Relay, StartRelay
from tests.frontdoors.test_feeds import StalledClient, shrink_send_buffer, until
from tests.redis_server import RedisServer, require_redis_server
from tests.sse_client import SseEvent, SseReader

REDIS_ONLY = pytest.mark.parametrize("store_url", ["redis"], indirect=True)
MEMORY_ONLY = pytest.mark.parametrize("store_url", ["memory"], indirect=True)
UPSTREAMS = [
    {"name": "mock", "kind": "mock", "models": ["mock", "mock:*"]},
    {"name": "endless", "kind": "mock", "models": ["endless"]},
]
LOST = msgspec.to_builtins(SESSION_LOST)
OPENAI_LOST = {
    "error": {
        "message": SESSION_LOST.message,
        "type": "server_error",
        "param": None,
        "code": "session_lost",
    }
}
ANTHROPIC_LOST = {"type": "error", "error": {"type": "api_error", "message": SESSION_LOST.message}}
ASK = [{"role": "user", "content": "go on forever"}]


class Endless(Provider):
    """Says a word every few milliseconds until its stream is closed, which it counts."""

    def __init__(self) -> None:
        self.closed = 0

    def check_model(self, model: str) -> None:
        return None

    async def stream(self, request: GenerationRequest) -> AsyncGenerator[ProviderItem, None]:
        try:
            while True:
                yield TextDelta(" word")
                await asyncio.sleep(0.005)
        finally:
            self.closed += 1


class LossyRedis:
    """A redis-server of its own that loses every session at once: FLUSHALL, or a
    restart without persistence (what a restart without a saved dataset does)."""

    def __init__(self, how: str) -> None:
        self.how = how
        self.server = RedisServer(require_redis_server())

    async def lose_everything(self) -> None:
        if self.how == "flushall":
            await asyncio.to_thread(self.server.execute, "FLUSHALL")
        else:
            await asyncio.to_thread(self.server.restart)


@pytest.fixture(params=["flushall", "restart"])
def lossy_redis(request: pytest.FixtureRequest) -> Iterator[LossyRedis]:
    lossy = LossyRedis(request.param)
    lossy.server.start()
    yield lossy
    lossy.server.close()


async def endless_relay(start_relay: StartRelay, lossy: LossyRedis) -> tuple[Relay, Endless]:
    """A relay with the default heartbeat (15 s): its readers learn of the loss from its
    generation's next write, not from their next idle beat."""
    provider = Endless()
    relay = await start_relay(
        store={"url": lossy.server.url}, with_providers={"endless": provider}, upstreams=UPSTREAMS
    )
    return relay, provider


def troubles(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """relay's and aiohttp's records that report an error or carry a traceback."""
    return [
        record
        for record in caplog.records
        if record.name.startswith(("relay", "aiohttp"))
        and (record.levelno >= logging.ERROR or record.exc_info is not None)
    ]


def assert_stopped_quietly(caplog: pytest.LogCaptureFixture, session_id: str) -> None:
    assert troubles(caplog) == []
    warnings = [r for r in caplog.records if "vanished from the store" in r.getMessage()]
    assert [r.levelno for r in warnings] == [logging.WARNING]
    assert session_tag(session_id) in warnings[0].getMessage()


async def until_closed(provider: Endless) -> None:
    await until(lambda: provider.closed == 1)


async def status_of(relay: Relay, path: str, headers: dict[str, str] | None = None) -> int:
    async with relay.http.get(relay.url(path), headers=headers) as response:
        return response.status


async def first_events(reader: SseReader, count: int) -> None:
    got = await reader.read(count)
    assert len(got) == count, got


def assert_consecutive(ids: list[int]) -> None:
    assert ids == list(range(ids[0], ids[0] + len(ids))), ids


# --- Redis loses its data under a running session --------------------------------------


@REDIS_ONLY
async def test_a_native_reader_ends_with_session_lost_and_the_generation_stops(
    start_relay: StartRelay, lossy_redis: LossyRedis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    relay, provider = await endless_relay(start_relay, lossy_redis)
    created = await relay.create("endless", ASK)
    async with relay.subscribe(created["id"]) as reader:
        await first_events(reader, 3)
        await lossy_redis.lose_everything()
        events = await reader.read_all()
        assert not reader.aborted
    assert_consecutive([event.int_id for event in events])
    assert [event.event for event in events if event.is_terminal] == ["error"]
    assert events[-1].json() == LOST
    await until_closed(provider)
    assert_stopped_quietly(caplog, created["id"])
    resume = {"Last-Event-ID": str(events[-1].int_id)}
    assert await status_of(relay, f"/v1/sessions/{created['id']}/events", resume) == 404
    assert await status_of(relay, f"/v1/sessions/{created['id']}") == 404


@REDIS_ONLY
async def test_a_reader_on_another_instance_ends_with_session_lost_at_its_next_beat(
    start_relay: StartRelay, lossy_redis: LossyRedis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    generating, provider = await endless_relay(start_relay, lossy_redis)
    reading = await start_relay(store={"url": lossy_redis.server.url}, server={"heartbeat_s": 0.2})
    created = await generating.create("endless", ASK)
    async with reading.subscribe(created["id"]) as reader:
        await first_events(reader, 3)
        await lossy_redis.lose_everything()
        events = await reader.read_all()
        assert not reader.aborted
    assert_consecutive([event.int_id for event in events])
    assert [event.event for event in events if event.is_terminal] == ["error"]
    assert events[-1].json() == LOST
    await until_closed(provider)
    assert_stopped_quietly(caplog, created["id"])


# Each provider-format stream: its path, its body, and what ends it: the one frame
# that says `session_lost` in its format, and the names of its terminals.
STREAMS = {
    "chat": ("/v1/chat/completions", {"messages": ASK}),
    "messages": ("/v1/messages", {"messages": ASK, "max_tokens": 100_000}),
    "responses": ("/v1/responses", {"input": "go on forever"}),
}


def terminals(kind: str, events: list[SseEvent]) -> list[SseEvent]:
    if kind == "chat":
        return [e for e in events if e.data == "[DONE]" or e.data.startswith('{"error"')]
    names = {"messages": {"message_stop", "error"}}.get(
        kind, {"response.completed", "response.failed", "response.incomplete"}
    )
    return [event for event in events if event.event in names]


def assert_lost_in_format(kind: str, last: SseEvent) -> None:
    if kind == "chat":
        assert last.json() == OPENAI_LOST
    elif kind == "messages":
        assert (last.event, last.json()) == ("error", ANTHROPIC_LOST)
    else:
        assert last.event == "response.failed"
        response = last.json()["response"]
        assert response["status"] == "failed"
        assert response["error"] == {"code": "server_error", "message": SESSION_LOST.message}


@REDIS_ONLY
@pytest.mark.parametrize("kind", list(STREAMS))
async def test_a_provider_format_stream_ends_with_session_lost_in_its_format(
    start_relay: StartRelay,
    lossy_redis: LossyRedis,
    caplog: pytest.LogCaptureFixture,
    kind: str,
) -> None:
    caplog.set_level(logging.INFO)
    relay, provider = await endless_relay(start_relay, lossy_redis)
    path, body = STREAMS[kind]
    response = await relay.http.post(
        relay.url(path), json={"model": "endless", "stream": True, **body}
    )
    session_id = response.headers["X-Relay-Session-Id"]
    try:
        assert response.status == 200, await response.text()
        async with asyncio.timeout(READ_TIMEOUT_S):
            reader = SseReader(response)
            await first_events(reader, 4)
            await lossy_redis.lose_everything()
            events = await reader.read_all()
        assert not reader.aborted
    finally:
        response.close()
    assert terminals(kind, events) == [events[-1]]  # exactly one terminal, the last
    assert_lost_in_format(kind, events[-1])
    ids = [event.int_id for event in events if event.id is not None]
    assert ids == sorted(set(ids))
    if kind == "responses":  # sequence numbers, consecutive from 0
        assert ids == list(range(len(ids)))
    else:  # the lost event's id is the next after the last the stream got
        assert ids[-1] == ids[-2] + 1
    await until_closed(provider)
    assert_stopped_quietly(caplog, session_id)
    resume = {"Last-Event-ID": str(ids[-1])}
    assert await status_of(relay, f"/v1/sessions/{session_id}/events", resume) == 404


# Each whole-answer request: its path, its body, and the error answer it gets.
WHOLE = {
    "chat": ("/v1/chat/completions", {"messages": ASK}, OPENAI_LOST),
    "messages": ("/v1/messages", {"messages": ASK, "max_tokens": 100_000}, ANTHROPIC_LOST),
    "responses": ("/v1/responses", {"input": "go on forever"}, OPENAI_LOST),
}


async def until_generating(relay: Relay) -> str:
    """The id of the session the relay generates, once it has a few events."""
    services = relay.server.app[SERVICES]

    async def generating() -> str | None:
        for session_id in services.runner.running_ids:
            record = await services.store.get(session_id)
            if record is not None and record.last_event_id >= 3:
                return session_id
        return None

    async with asyncio.timeout(READ_TIMEOUT_S):
        while (session_id := await generating()) is None:
            await asyncio.sleep(0.01)
    return session_id


@REDIS_ONLY
@pytest.mark.parametrize("kind", list(WHOLE))
async def test_a_whole_answer_waiting_for_a_lost_session_is_an_error_in_its_shape(
    start_relay: StartRelay,
    lossy_redis: LossyRedis,
    caplog: pytest.LogCaptureFixture,
    kind: str,
) -> None:
    caplog.set_level(logging.INFO)
    relay, provider = await endless_relay(start_relay, lossy_redis)
    path, body, expected = WHOLE[kind]

    async def ask() -> tuple[int, Any, str]:
        async with relay.http.post(relay.url(path), json={"model": "endless", **body}) as answer:
            return answer.status, await answer.json(), answer.headers["X-Relay-Session-Id"]

    asking = asyncio.create_task(ask())
    session_id = await until_generating(relay)
    await lossy_redis.lose_everything()
    async with asyncio.timeout(READ_TIMEOUT_S):
        status, error, answered_for = await asking
    assert (status, error, answered_for) == (500, expected, session_id)
    await until_closed(provider)
    assert_stopped_quietly(caplog, session_id)
    assert await status_of(relay, f"/v1/sessions/{session_id}") == 404


# --- the memory store ----------------------------------------------------------------


@MEMORY_ONLY
async def test_a_finished_session_evicted_under_its_reader_ends_it_with_session_lost(
    start_relay: StartRelay, caplog: pytest.LogCaptureFixture
) -> None:
    """The memory store evicts finished sessions only (the oldest, to make room for a
    new one): a reader still replaying one loses it."""
    caplog.set_level(logging.INFO)
    relay = await start_relay(
        store={"max_sessions": 2, "read_batch": 50}, generation={"flush_interval_ms": 0}
    )
    created = await relay.create("mock:tokens=20000,tps=0,ttft_ms=0")
    await relay.wait_until_ended(created["id"])
    stalled = StalledClient(relay, f"/v1/sessions/{created['id']}/events")
    await stalled.request()
    await shrink_send_buffer(relay, stalled)
    await until(writing_paused(relay))  # relay waits for the reader in mid-replay
    for _ in range(2):  # the second one evicts it
        await relay.create(FAST_MOCK)
    assert await status_of(relay, f"/v1/sessions/{created['id']}") == 404
    async with asyncio.timeout(READ_TIMEOUT_S):
        events = await stalled.read_events()
    assert_consecutive([event.int_id for event in events])
    assert events[0].int_id == 1 and len(events) < 20000
    assert [event.event for event in events if event.is_terminal] == ["error"]
    assert events[-1].json() == LOST
    assert troubles(caplog) == []


def writing_paused(relay: Relay) -> Callable[[], bool]:
    server = relay.server.runner.server  # type: ignore[union-attr]
    return lambda: any(handler.writing_paused for handler in server.connections)
