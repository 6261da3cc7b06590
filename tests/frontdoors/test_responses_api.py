"""The official OpenAI SDK's Responses API, unmodified, with `base_url` pointed at relay.

Create (streamed, whole, background), retrieve, resume a cut stream with
`starting_after`, cancel, and function tools — against the in-process mock on every
store, and through the `openai` and `anthropic` upstream kinds.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
from aiohttp.test_utils import TestServer
from openai.types.responses import Response, ResponseStreamEvent

from tests.frontdoors.conftest import READ_TIMEOUT_S, Relay, StartRelay
from tests.frontdoors.test_sdk_front_doors import (
    CHAT,
    MESSAGES,
    QUESTION,
    SYSTEM,
    expected,
)
from tests.sse_client import SseParser

FAST = "mock:tokens=12,tps=0,ttft_ms=0"
SLOW = "mock:tokens=30,tps=200,ttft_ms=0"
ENDLESS = "mock:tokens=100000,tps=50,ttft_ms=0"
SEARCH_TOOL = {
    "type": "function",
    "name": "search",
    "description": "Search the web.",
    "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
}
TEXT_EVENTS = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]


@pytest.fixture
async def client(relay_server: Relay) -> AsyncIterator[openai.AsyncOpenAI]:
    async with relay_server.openai_sdk() as sdk:
        yield sdk


async def collect(stream: Any) -> list[ResponseStreamEvent]:
    async with asyncio.timeout(READ_TIMEOUT_S):
        return [event async for event in stream]


def streamed_text(events: list[ResponseStreamEvent]) -> str:
    return "".join(e.delta for e in events if e.type == "response.output_text.delta")


def without_repeats(types: list[str]) -> list[str]:
    return [kind for i, kind in enumerate(types) if i == 0 or types[i - 1] != kind]


async def wait_for_status(client: openai.AsyncOpenAI, response_id: str, *statuses: str) -> Response:
    deadline = time.monotonic() + READ_TIMEOUT_S
    while (response := await client.responses.retrieve(response_id)).status not in statuses:
        assert time.monotonic() < deadline, f"{response_id} is still {response.status}"
        await asyncio.sleep(0.02)
    return response


def session_of(response_id: str) -> str:
    return "s_" + response_id.removeprefix("resp_")


# Creating responses.


async def test_a_streamed_response_has_the_mocks_text_and_the_real_event_sequence(
    client: openai.AsyncOpenAI,
) -> None:
    model = "mock:tokens=40,tps=0,ttft_ms=0"
    text, _, usage = await expected(model, CHAT)
    stream = await client.responses.create(model=model, input=QUESTION, stream=True)
    events = await collect(stream)
    assert streamed_text(events) == text
    assert without_repeats([e.type for e in events]) == TEXT_EVENTS
    assert [e.sequence_number for e in events] == list(range(len(events)))
    final = events[-1]
    assert final.type == "response.completed"
    assert final.response.status == "completed" and final.response.output_text == text
    assert final.response.usage is not None
    assert (final.response.usage.input_tokens, final.response.usage.output_tokens) == (
        usage.input_tokens,
        usage.output_tokens,
    )
    assert final.response.usage.total_tokens == usage.input_tokens + usage.output_tokens
    assert stream.response.headers["X-Relay-Session-Id"] == session_of(final.response.id)


async def test_instructions_and_input_items_are_the_conversation(
    client: openai.AsyncOpenAI,
) -> None:
    text, _, _ = await expected(FAST, MESSAGES)
    response = await client.responses.create(
        model=FAST,
        instructions=SYSTEM,
        input=[{"role": "user", "content": [{"type": "input_text", "text": QUESTION}]}],
    )
    assert response.output_text == text


async def test_a_whole_response_waits_for_the_end(client: openai.AsyncOpenAI) -> None:
    text, _, usage = await expected(FAST, CHAT)
    raw = await client.responses.with_raw_response.create(
        model=FAST, input=QUESTION, store=False, top_p=1, truncation="auto"
    )
    response = raw.parse()
    assert response.status == "completed" and response.output_text == text
    assert response.id.startswith("resp_")
    assert raw.headers["X-Relay-Session-Id"] == session_of(response.id)
    assert response.usage is not None and response.usage.output_tokens == usage.output_tokens


async def test_a_background_response_is_retrieved_until_it_completes(
    client: openai.AsyncOpenAI,
) -> None:
    model = "mock:tokens=20,tps=100,ttft_ms=0"
    text, _, _ = await expected(model, CHAT)
    started = await client.responses.create(model=model, input=QUESTION, background=True)
    assert started.status in ("queued", "in_progress")
    response = await wait_for_status(client, started.id, "completed")
    assert response.output_text == text
    assert response.id == started.id


async def test_a_background_stream_has_the_same_text(client: openai.AsyncOpenAI) -> None:
    text, _, _ = await expected(FAST, CHAT)
    stream = await client.responses.create(model=FAST, input=QUESTION, stream=True, background=True)
    assert streamed_text(await collect(stream)) == text


async def test_max_output_tokens_makes_an_incomplete_response(client: openai.AsyncOpenAI) -> None:
    response = await client.responses.create(model=FAST, input=QUESTION, max_output_tokens=5)
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert len(response.output_text.split(" ")) == 5


# Function tools.


async def test_function_tools_produce_a_function_call_item(client: openai.AsyncOpenAI) -> None:
    model = "mock:tokens=6,tps=0,ttft_ms=0,tools"
    _, calls, _ = await expected(model, CHAT)
    response = await client.responses.create(model=model, input=QUESTION, tools=[SEARCH_TOOL])
    (call,) = response.output
    assert call.type == "function_call"
    assert (call.call_id, call.name) == (calls[0].id, calls[0].name)
    assert json.loads(call.arguments) == json.loads(calls[0].arguments)


async def test_a_streamed_function_call_assembles_in_the_sdk(client: openai.AsyncOpenAI) -> None:
    model = "mock:tokens=6,tps=0,ttft_ms=0,tools"
    _, calls, _ = await expected(model, CHAT)
    async with client.responses.stream(model=model, input=QUESTION, tools=[SEARCH_TOOL]) as stream:
        events = [event async for event in stream]
        final = await stream.get_final_response()
    assert "response.function_call_arguments.delta" in [e.type for e in events]
    (call,) = final.output
    assert call.type == "function_call"
    assert json.loads(call.arguments) == json.loads(calls[0].arguments)


# Resuming a stream.


async def cut_stream(client: openai.AsyncOpenAI, model: str, keep: int) -> list[Any]:
    """Read `keep` events of a new streamed response, then drop the connection."""
    stream = await client.responses.create(model=model, input=QUESTION, stream=True)
    seen: list[Any] = []
    async for event in stream:
        seen.append(event)
        if len(seen) == keep:
            break
    await stream.close()
    return seen


async def test_a_cut_stream_resumes_with_exactly_the_remaining_events(
    relay_server: Relay,
    client: openai.AsyncOpenAI,
) -> None:
    seen = await cut_stream(client, SLOW, keep=7)
    response_id, last = seen[0].response.id, seen[-1].sequence_number
    await relay_server.wait_until_ended(session_of(response_id))
    whole = await collect(await client.responses.retrieve(response_id, stream=True))
    rest = await collect(
        await client.responses.retrieve(response_id, stream=True, starting_after=last)
    )
    assert [e.model_dump() for e in seen] == [e.model_dump() for e in whole[: len(seen)]]
    assert [e.model_dump() for e in rest] == [e.model_dump() for e in whole[len(seen) :]]
    assert rest[0].sequence_number == last + 1
    assert streamed_text(seen) + streamed_text(rest) == (await expected(SLOW, CHAT))[0]


async def test_resuming_a_running_response_follows_it_live(client: openai.AsyncOpenAI) -> None:
    seen = await cut_stream(client, SLOW, keep=5)
    rest = await collect(
        await client.responses.retrieve(
            seen[0].response.id, stream=True, starting_after=seen[-1].sequence_number
        )
    )
    assert [e.sequence_number for e in seen + rest] == list(range(len(seen) + len(rest)))
    assert rest[-1].type == "response.completed"


async def test_the_sdk_stream_helper_resumes_a_response(client: openai.AsyncOpenAI) -> None:
    seen = await cut_stream(client, SLOW, keep=6)
    response_id, last = seen[0].response.id, seen[-1].sequence_number
    async with client.responses.stream(response_id=response_id, starting_after=last) as stream:
        rest = [event async for event in stream]
        final = await stream.get_final_response()
    assert [e.sequence_number for e in rest] == list(range(last + 1, last + 1 + len(rest)))
    assert final.output_text == (await expected(SLOW, CHAT))[0]


async def read_frames(relay: Relay, path: str, **kwargs: Any) -> tuple[int, list[Any]]:
    async with relay.http.get(relay.url(path), **kwargs) as response:
        return response.status, SseParser().feed(await response.read())


async def test_last_event_id_carries_the_sequence_number(
    relay_server: Relay, client: openai.AsyncOpenAI
) -> None:
    response = await client.responses.create(model=FAST, input=QUESTION)
    path = f"/v1/responses/{response.id}?stream=true"
    _, whole = await read_frames(relay_server, path)
    assert [frame.id for frame in whole] == [str(n) for n in range(len(whole))]
    _, rest = await read_frames(relay_server, path, headers={"Last-Event-ID": "4"})
    assert [f.key() for f in rest] == [f.key() for f in whole[5:]]
    # The header wins over the query, as on the native API.
    query_path = path + "&starting_after=1"
    _, rest = await read_frames(relay_server, query_path, headers={"Last-Event-ID": "4"})
    assert [f.key() for f in rest] == [f.key() for f in whole[5:]]
    # A client that has every event gets an event stream with none (not a 204).
    status, rest = await read_frames(relay_server, path, headers={"Last-Event-ID": whole[-1].id})
    assert (status, rest) == (200, [])
    status, _ = await read_frames(relay_server, path + "&starting_after=-1")
    assert status == 400


@pytest.mark.parametrize("digits", [4301, 8000])
async def test_a_resume_point_of_thousands_of_digits_is_after_every_event(
    relay_server: Relay, client: openai.AsyncOpenAI, digits: int
) -> None:
    """Past Python's int-digit limit, still digits: beyond the end, as on the native API."""
    beyond = "9" * digits
    ended = await client.responses.create(model=FAST, input=QUESTION)
    path = f"/v1/responses/{ended.id}?stream=true"
    assert await read_frames(relay_server, path + f"&starting_after={beyond}") == (200, [])
    assert await read_frames(relay_server, path, headers={"Last-Event-ID": beyond}) == (200, [])
    running = await client.responses.create(model=SLOW, input=QUESTION, background=True)
    path = f"/v1/responses/{running.id}?stream=true&starting_after={beyond}"
    async with asyncio.timeout(READ_TIMEOUT_S):  # it follows the response to its end
        assert await read_frames(relay_server, path) == (200, [])
    assert (await client.responses.retrieve(running.id)).status == "completed"


async def test_a_resume_point_that_is_not_digits_is_400_naming_its_source(
    relay_server: Relay, client: openai.AsyncOpenAI
) -> None:
    response = await client.responses.create(model=FAST, input=QUESTION)
    path = relay_server.url(f"/v1/responses/{response.id}")
    for named, request in (
        ("starting_after", {"params": {"stream": "true", "starting_after": "x1"}}),
        ("Last-Event-ID", {"params": {"stream": "true"}, "headers": {"Last-Event-ID": "1.5"}}),
    ):
        async with relay_server.http.get(path, **request) as answer:
            assert answer.status == 400
            error = (await answer.json())["error"]
        assert error["code"] == "invalid_starting_after" and named in error["message"]
    # Longer than a request line: aiohttp refuses it before relay sees it.
    too_long = {"stream": "true", "starting_after": "9" * 10_000}
    async with relay_server.http.get(path, params=too_long) as answer:
        assert answer.status == 400


async def test_a_client_that_has_every_event_gets_none(client: openai.AsyncOpenAI) -> None:
    events = await collect(await client.responses.create(model=FAST, input=QUESTION, stream=True))
    response_id = events[-1].response.id
    last = events[-1].sequence_number
    again = await client.responses.retrieve(response_id, stream=True, starting_after=last)
    assert await collect(again) == []


# Cancelling.


async def test_cancel_stops_a_background_response(
    relay_server: Relay, client: openai.AsyncOpenAI
) -> None:
    started = await client.responses.create(model=ENDLESS, input=QUESTION, background=True)
    deadline = time.monotonic() + READ_TIMEOUT_S
    while not (await client.responses.retrieve(started.id)).output_text:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    raw = await client.responses.with_raw_response.cancel(started.id)
    cancelled = raw.parse()
    assert cancelled.status == "cancelled" and cancelled.output_text
    assert raw.headers["X-Relay-Session-Id"] == session_of(started.id)
    assert (await client.responses.retrieve(started.id)).status == "cancelled"
    assert (await relay_server.snapshot(session_of(started.id)))["status"] == "cancelled"
    again = await client.responses.cancel(started.id)  # idempotent
    assert again.status == "cancelled"


async def test_a_cancelled_stream_ends_with_status_cancelled(client: openai.AsyncOpenAI) -> None:
    stream = await client.responses.create(model=ENDLESS, input=QUESTION, stream=True)
    events: list[Any] = []
    async with asyncio.timeout(READ_TIMEOUT_S):
        async for event in stream:
            events.append(event)
            if event.type == "response.output_text.delta" and len(events) == 5:
                await client.responses.cancel(events[0].response.id)
    final = events[-1]
    assert final.type == "response.failed" and final.response.status == "cancelled"
    assert final.response.output_text == streamed_text(events)


# Errors.


async def test_unknown_response_ids_are_404_in_openais_shape(client: openai.AsyncOpenAI) -> None:
    for call, response_id in (
        (client.responses.retrieve, "resp_doesnotexist"),
        (client.responses.retrieve, "chatcmpl-123"),
        (client.responses.cancel, "resp_doesnotexist"),
    ):
        with pytest.raises(openai.NotFoundError) as missing:
            await call(response_id)
        assert missing.value.code == "response_not_found"
        assert missing.value.type == "not_found_error"


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"max_output_tokens": 0}, "max_output_tokens"),
        ({"temperature": 3}, "temperature"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_video"}]}]},
            "input[0].content[0].type",
        ),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]},
            "input[0].content[0].image_url",
        ),
        ({"previous_response_id": "resp_1"}, "previous_response_id"),
        ({"input": [{"content": "Hi"}]}, "input[0].role"),
        ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
    ],
)
async def test_invalid_requests_name_the_field(
    client: openai.AsyncOpenAI, fields: dict[str, Any], named: str
) -> None:
    body = {"model": FAST, "input": QUESTION, **fields}
    with pytest.raises(openai.BadRequestError) as refused:
        await client.responses.create(**body)
    body = refused.value.body
    assert isinstance(body, dict) and str(body["message"]).startswith(named + ":"), body
    assert refused.value.type == "invalid_request_error"
    assert refused.value.param == named


async def test_a_failure_mid_stream_is_a_failed_response(client: openai.AsyncOpenAI) -> None:
    model = "mock:tokens=20,tps=0,ttft_ms=0,fail_after=5"
    events = await collect(await client.responses.create(model=model, input=QUESTION, stream=True))
    final = events[-1]
    assert final.type == "response.failed" and final.response.status == "failed"
    assert final.response.error is not None and final.response.error.code == "server_error"
    assert len(final.response.output_text.split(" ")) == 5
    with pytest.raises(openai.APIStatusError) as failed:
        await client.responses.create(model=model, input=QUESTION)
    assert failed.value.status_code == 502


# Through the upstream kinds (the store is not what these are about).


@pytest.fixture
async def upstreams_client(
    start_relay: StartRelay, mock_upstream: TestServer
) -> AsyncIterator[openai.AsyncOpenAI]:
    """An SDK client of a relay whose upstreams `oai` and `ant` are the mock upstream."""
    base = str(mock_upstream.make_url("")).rstrip("/")
    upstreams = [
        {"name": "oai", "kind": "openai", "base_url": base + "/v1", "models": []},
        {"name": "ant", "kind": "anthropic", "base_url": base, "models": []},
    ]
    relay = await start_relay(upstreams=upstreams, generation={"idle_timeout_s": 2.0})
    async with relay.openai_sdk() as sdk:
        yield sdk


@pytest.mark.parametrize("store_url", ["memory"], indirect=True)
@pytest.mark.parametrize("upstream", ["oai", "ant"])
@pytest.mark.parametrize("tools", [False, True])
async def test_every_upstream_kind_answers_the_responses_api(
    upstreams_client: openai.AsyncOpenAI, upstream: str, tools: bool
) -> None:
    options = FAST + (",tools" if tools else "")
    text, calls, usage = await expected(options, MESSAGES)
    stream = await upstreams_client.responses.create(
        model=f"{upstream}/{options}",
        instructions=SYSTEM,
        input=QUESTION,
        tools=[SEARCH_TOOL],
        stream=True,
    )
    final = (await collect(stream))[-1]
    assert final.type == "response.completed"
    assert final.response.output_text == text
    if tools:
        call = final.response.output[-1]
        assert call.type == "function_call"
        assert json.loads(call.arguments) == json.loads(calls[0].arguments)
    assert final.response.usage is not None
    assert final.response.usage.output_tokens == usage.output_tokens


@pytest.mark.parametrize("store_url", ["memory"], indirect=True)
async def test_an_upstream_refusal_before_output_is_an_http_error(
    upstreams_client: openai.AsyncOpenAI,
) -> None:
    with pytest.raises(openai.AuthenticationError):
        await upstreams_client.responses.create(
            model="oai/mock:status=401", input=QUESTION, stream=True
        )
    with pytest.raises(openai.NotFoundError):
        await upstreams_client.responses.create(model="ant/mock:status=404", input=QUESTION)
