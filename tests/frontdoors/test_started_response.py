"""A started response is a different world: a stream that fails after its headers went out
ends cleanly, with an in-band error in its own format, and the failure is logged once.

Faults are injected through `create_app(store=…)`: a store whose log holds a `delta`
no renderer can read (a renderer that raises mid-stream), and a store whose reads raise
an exception that is not a `StoreError` past some event (relay's own bug, on the way to
any format, the native one included). Every stream is read to its end by a real HTTP
client, which would raise on a broken chunked body.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import aiohttp
import anthropic
import msgspec
import openai
import pytest

from relay.config import StoreSettings
from relay.events import Event, EventType
from relay.session import SessionRecord
from relay.store.memory import MemoryStore
from tests.frontdoors.conftest import READ_TIMEOUT_S, Relay, StartRelay
from tests.sse_client import SseEvent, SseParser

pytestmark = pytest.mark.parametrize("store_url", ["memory"], indirect=True)

# One delta per token (no coalescing), so that a stream has a few good events first.
ONE_EVENT_PER_TOKEN = {"generation": {"flush_interval_ms": 0}}
# Ended before anyone reads (the stream replays it) or still generating (the stream
# follows the session's live feed): the two places a stream's frames are made.
FAST = "mock:tokens=12,tps=0,ttft_ms=0"
LIVE = "mock:tokens=12,tps=60,ttft_ms=0"
SPEEDS = pytest.mark.parametrize("model", [FAST, LIVE], ids=["replayed", "live"])
BROKEN_DELTA = 3  # the how-manieth delta of a session is unreadable
FAILING_AFTER = 5  # the id of the last event a failing store still reads (the 3rd delta)
STREAM_FAILED = {
    "code": "internal_error",
    "message": "relay failed while sending this stream",
    "retryable": False,
}
MESSAGE = STREAM_FAILED["message"]


class UnreadableDeltaStore(MemoryStore):
    """Appends what it is given, but the `BROKEN_DELTA`-th delta of each session is
    stored without its `text`: every provider-format renderer fails on it."""

    def __init__(self) -> None:
        super().__init__(StoreSettings())
        self._deltas: dict[str, int] = {}

    async def append(self, session_id: str, events: Sequence[Event]) -> SessionRecord:
        return await super().append(session_id, [self._spoil(session_id, e) for e in events])

    def _spoil(self, session_id: str, event: Event) -> Event:
        if event.type is not EventType.DELTA:
            return event
        self._deltas[session_id] = count = self._deltas.get(session_id, 0) + 1
        return Event(event.id, event.type, msgspec.Raw(b"{}")) if count == BROKEN_DELTA else event


class StoreBug(Exception):
    """Not a `StoreError`: a failure of relay's own, past the event log's boundary."""


class FailingReadsStore(MemoryStore):
    """Reads the events up to `FAILING_AFTER`; a read of what comes after raises."""

    def __init__(self) -> None:
        super().__init__(StoreSettings())

    async def read(self, session_id: str, after: int, limit: int) -> list[Event]:
        self._check(after)
        return self._upto_failure(await super().read(session_id, after, limit))

    async def wait(self, session_id: str, after: int, limit: int, timeout: float) -> list[Event]:
        self._check(after)
        return self._upto_failure(await super().wait(session_id, after, limit, timeout))

    @staticmethod
    def _check(after: int) -> None:
        if after >= FAILING_AFTER:
            raise StoreBug("the store's bug")

    @staticmethod
    def _upto_failure(events: list[Event]) -> list[Event]:
        return [event for event in events if event.id <= FAILING_AFTER]


# Reading streams to their end.


async def read_stream(response: aiohttp.ClientResponse) -> list[SseEvent]:
    """Every frame of a stream that must end cleanly (`read` raises on a cut body)."""
    assert response.status == 200, await response.text()
    assert response.content_type == "text/event-stream"
    async with asyncio.timeout(READ_TIMEOUT_S):
        body = await response.read()
    assert b"Traceback" not in body and b"StoreBug" not in body and b"KeyError" not in body
    assert b"HTTP/1.1" not in body
    return SseParser().feed(body)


async def post_stream(relay: Relay, path: str, body: dict[str, Any]) -> list[SseEvent]:
    async with relay.http.post(relay.url(path), json=body) as response:
        return await read_stream(response)


async def get_stream(relay: Relay, path: str, **params: str) -> list[SseEvent]:
    async with relay.http.get(relay.url(path), params=params) as response:
        return await read_stream(response)


def chat_body(model: str) -> dict[str, Any]:
    messages = [{"role": "user", "content": "hello"}]
    return {"model": model, "messages": messages, "stream": True}


def messages_body(model: str) -> dict[str, Any]:
    return {**chat_body(model), "max_tokens": 100}


def responses_body(model: str) -> dict[str, Any]:
    return {"model": model, "input": "hello", "stream": True}


async def session_id_of(relay: Relay, model: str) -> str:
    created = await relay.create(model)
    return str(created["id"])


# What each format's end looks like.


def assert_native_error_end(frames: list[SseEvent]) -> None:
    last = frames[-1]
    assert (last.event, last.json(), last.id) == ("error", STREAM_FAILED, None)
    assert all(frame.event != "error" for frame in frames[:-1])


def assert_chat_error_end(frames: list[SseEvent]) -> None:
    last = frames[-1]
    error = {"message": MESSAGE, "type": "server_error", "param": None, "code": "internal_error"}
    assert (last.event, last.json(), last.id) == ("message", {"error": error}, None)
    assert all(frame.data != "[DONE]" for frame in frames)


def assert_anthropic_error_end(frames: list[SseEvent]) -> None:
    last = frames[-1]
    error = {"type": "error", "error": {"type": "api_error", "message": MESSAGE}}
    assert (last.event, last.json(), last.id) == ("error", error, None)
    assert frames[0].event == "message_start"


def assert_responses_error_end(frames: list[SseEvent]) -> None:
    *_, error, failed = frames
    numbers = [frame.json()["sequence_number"] for frame in frames]
    assert numbers == list(range(len(frames)))  # the failure continues the numbering
    assert (error.event, error.id, failed.event, failed.id) == (
        "error",
        None,
        "response.failed",
        None,
    )
    detail = {"type": "server_error", "code": "internal_error", "message": MESSAGE, "param": None}
    assert error.json()["error"] == detail
    response = failed.json()["response"]
    assert response["status"] == "failed"
    assert response["error"] == {"code": "server_error", "message": MESSAGE}


def assert_logged_once(caplog: pytest.LogCaptureFixture, kind: type[BaseException]) -> None:
    with_traceback = [r for r in caplog.records if r.exc_info and r.levelno >= logging.ERROR]
    assert [r.exc_info[1].__class__ for r in with_traceback if r.exc_info] == [kind]
    assert with_traceback[0].name == "relay.subscribers.sse"
    assert not [r for r in caplog.records if r.name.startswith("aiohttp")]


# A renderer that raises mid-stream, in each provider format.


@SPEEDS
async def test_a_chat_stream_ends_with_an_openai_error_chunk(
    start_relay: StartRelay, model: str, caplog: pytest.LogCaptureFixture
) -> None:
    relay = await start_relay(with_store=UnreadableDeltaStore(), **ONE_EVENT_PER_TOKEN)
    frames = await post_stream(relay, "/v1/chat/completions", chat_body(model))
    deltas = [f.json()["choices"][0]["delta"].get("content") for f in frames[:-1]]
    assert len([text for text in deltas if text]) == BROKEN_DELTA - 1  # the good ones came
    assert_chat_error_end(frames)
    assert_logged_once(caplog, KeyError)


@SPEEDS
async def test_a_messages_stream_ends_with_an_anthropic_error_event(
    start_relay: StartRelay, model: str, caplog: pytest.LogCaptureFixture
) -> None:
    relay = await start_relay(with_store=UnreadableDeltaStore(), **ONE_EVENT_PER_TOKEN)
    frames = await post_stream(relay, "/v1/messages", messages_body(model))
    deltas = [f for f in frames if f.event == "content_block_delta"]
    assert len(deltas) == BROKEN_DELTA - 1
    assert_anthropic_error_end(frames)
    assert_logged_once(caplog, KeyError)


@SPEEDS
async def test_a_responses_stream_ends_with_error_and_response_failed(
    start_relay: StartRelay, model: str, caplog: pytest.LogCaptureFixture
) -> None:
    relay = await start_relay(with_store=UnreadableDeltaStore(), **ONE_EVENT_PER_TOKEN)
    frames = await post_stream(relay, "/v1/responses", responses_body(model))
    deltas = [f for f in frames if f.event == "response.output_text.delta"]
    assert len(deltas) == BROKEN_DELTA - 1
    assert all(frame.id == str(frame.json()["sequence_number"]) for frame in frames[:-2])
    assert_responses_error_end(frames)
    assert_logged_once(caplog, KeyError)


@SPEEDS
async def test_a_responses_stream_read_again_ends_the_same_way(
    start_relay: StartRelay, model: str, caplog: pytest.LogCaptureFixture
) -> None:
    relay = await start_relay(with_store=UnreadableDeltaStore(), **ONE_EVENT_PER_TOKEN)
    response_id = "resp_" + (await session_id_of(relay, model)).removeprefix("s_")
    frames = await get_stream(relay, f"/v1/responses/{response_id}", stream="true")
    assert_responses_error_end(frames)
    # Resumed past where it failed: the error is numbered after what the client has.
    again = await get_stream(
        relay, f"/v1/responses/{response_id}", stream="true", starting_after="40"
    )
    assert [(frame.event, frame.json()["sequence_number"]) for frame in again] == [
        ("error", 41),
        ("response.failed", 42),
    ]
    assert [r.exc_info[1].__class__ for r in caplog.records if r.exc_info] == [KeyError] * 2


@SPEEDS
@pytest.mark.parametrize("wire_format", ["openai", "anthropic"])
async def test_a_resume_in_a_provider_format_ends_with_its_error(
    start_relay: StartRelay, model: str, wire_format: str, caplog: pytest.LogCaptureFixture
) -> None:
    relay = await start_relay(with_store=UnreadableDeltaStore(), **ONE_EVENT_PER_TOKEN)
    session_id = await session_id_of(relay, model)
    frames = await get_stream(relay, f"/v1/sessions/{session_id}/events", format=wire_format)
    if wire_format == "openai":
        assert_chat_error_end(frames)
    else:
        assert_anthropic_error_end(frames)
    assert_logged_once(caplog, KeyError)


# An exception of relay's own from the store, in every format.


@SPEEDS
async def test_a_native_stream_ends_with_relays_error_event(
    start_relay: StartRelay, model: str, caplog: pytest.LogCaptureFixture
) -> None:
    relay = await start_relay(with_store=FailingReadsStore(), **ONE_EVENT_PER_TOKEN)
    session_id = await session_id_of(relay, model)
    async with relay.http.get(relay.url(f"/v1/sessions/{session_id}/events")) as response:
        frames = await read_stream(response)
    # Every event it could read, then the error; the error does not move Last-Event-ID.
    assert [frame.int_id for frame in frames[:-1]] == list(range(1, FAILING_AFTER + 1))
    assert_native_error_end(frames)
    assert_logged_once(caplog, StoreBug)


FRONT_DOORS = [
    ("/v1/chat/completions", chat_body, assert_chat_error_end),
    ("/v1/messages", messages_body, assert_anthropic_error_end),
    ("/v1/responses", responses_body, assert_responses_error_end),
]


@SPEEDS
@pytest.mark.parametrize(("path", "body", "assert_error_end"), FRONT_DOORS)
async def test_a_front_door_stream_ends_with_its_error_when_the_store_fails(
    start_relay: StartRelay,
    model: str,
    path: str,
    body: Any,
    assert_error_end: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    relay = await start_relay(with_store=FailingReadsStore(), **ONE_EVENT_PER_TOKEN)
    assert_error_end(await post_stream(relay, path, body(model)))
    assert_logged_once(caplog, StoreBug)


# The official SDKs raise their own API error for it, not a parse error.


@SPEEDS
async def test_the_openai_sdk_raises_an_api_error_for_a_failed_chat_stream(
    start_relay: StartRelay, model: str
) -> None:
    relay = await start_relay(with_store=UnreadableDeltaStore(), **ONE_EVENT_PER_TOKEN)
    stream = await relay.openai_sdk().chat.completions.create(**chat_body(model))
    texts: list[str] = []
    with pytest.raises(openai.APIError) as raised:
        async for chunk in stream:
            texts += [chunk.choices[0].delta.content or ""] if chunk.choices else []
    assert not isinstance(raised.value, openai.APIConnectionError)
    assert (raised.value.message, raised.value.code) == (MESSAGE, "internal_error")
    assert len([text for text in texts if text]) == BROKEN_DELTA - 1


@SPEEDS
async def test_the_openai_sdk_raises_an_api_error_for_a_failed_responses_stream(
    start_relay: StartRelay, model: str
) -> None:
    relay = await start_relay(with_store=UnreadableDeltaStore(), **ONE_EVENT_PER_TOKEN)
    stream = await relay.openai_sdk().responses.create(**responses_body(model))
    kinds: list[str] = []
    with pytest.raises(openai.APIError) as raised:
        async for event in stream:
            kinds.append(event.type)
    assert not isinstance(raised.value, openai.APIConnectionError)
    assert (raised.value.message, raised.value.code) == (MESSAGE, "internal_error")
    assert kinds.count("response.output_text.delta") == BROKEN_DELTA - 1


@SPEEDS
async def test_the_anthropic_sdk_raises_an_api_error_for_a_failed_stream(
    start_relay: StartRelay, model: str
) -> None:
    relay = await start_relay(with_store=UnreadableDeltaStore(), **ONE_EVENT_PER_TOKEN)
    body = {key: value for key, value in messages_body(model).items() if key != "stream"}
    texts: list[str] = []
    async with relay.anthropic_sdk().messages.stream(**body) as stream:
        with pytest.raises(anthropic.APIStatusError) as raised:
            async for text in stream.text_stream:
                texts.append(text)
    error = {"type": "error", "error": {"type": "api_error", "message": MESSAGE}}
    assert raised.value.body == error
    assert len(texts) == BROKEN_DELTA - 1
