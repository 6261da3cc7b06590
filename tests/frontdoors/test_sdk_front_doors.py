"""The official OpenAI and Anthropic SDKs, unmodified, with `base_url` pointed at relay.

They stream text and tool calls through relay's provider-format front doors, and a
stream cut mid-way resumes through `GET /v1/sessions/{id}/events?format=…` with exactly
the frames an unbroken stream would have continued with.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from relay.providers.base import TextDelta, ToolCall, UsageReport
from relay.providers.mock import MockProvider
from relay.services import SERVICES
from relay.vocabulary import GenerationRequest, Message
from tests.frontdoors.conftest import Relay
from tests.sse_client import SseParser

QUESTION = "Where do rivers go?"
SYSTEM = "Answer briefly."


async def expected(model: str, messages: list[Message]) -> tuple[str, list[ToolCall], UsageReport]:
    """What the in-process mock generates for this model and conversation."""
    items = [i async for i in MockProvider().stream(GenerationRequest(model, messages))]
    text = "".join(i.text for i in items if isinstance(i, TextDelta))
    calls = [i for i in items if isinstance(i, ToolCall)]
    usage = next(i for i in items if isinstance(i, UsageReport))
    return text, calls, usage


CHAT = [Message(role="user", content=QUESTION)]
MESSAGES = [Message(role="system", content=SYSTEM), Message(role="user", content=QUESTION)]


async def test_openai_sdk_streams_text_and_usage(relay_server: Relay) -> None:
    model = "mock:tokens=40,tps=0,ttft_ms=0"
    text, _, usage = await expected(model, CHAT)
    stream = await relay_server.openai_sdk().chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": QUESTION}],
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces: list[str] = []
    chunks = [chunk async for chunk in stream]
    for chunk in chunks:
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
    assert "".join(pieces) == text
    assert len({chunk.id for chunk in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-")
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (
        usage.input_tokens,
        usage.output_tokens,
    )


async def test_openai_sdk_assembles_streamed_tool_calls(relay_server: Relay) -> None:
    model = "mock:tokens=6,tps=0,ttft_ms=0,tools"
    _, calls, _ = await expected(model, CHAT)
    stream = await relay_server.openai_sdk().chat.completions.create(
        model=model, messages=[{"role": "user", "content": QUESTION}], stream=True
    )
    arguments, names, ids, finish = "", [], [], None
    async for chunk in stream:
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for fragment in choice.delta.tool_calls or []:
                ids += [fragment.id] if fragment.id else []
                names += (
                    [fragment.function.name] if fragment.function and fragment.function.name else []
                )
                arguments += (fragment.function.arguments or "") if fragment.function else ""
    assert (ids, names) == ([calls[0].id], [calls[0].name])
    assert json.loads(arguments) == json.loads(calls[0].arguments)
    assert finish == "tool_calls"


async def test_openai_sdk_non_streamed_completion(relay_server: Relay) -> None:
    model = "mock:tokens=25,tps=0,ttft_ms=0"
    text, _, usage = await expected(model, CHAT)
    completion = await relay_server.openai_sdk().chat.completions.create(
        model=model, messages=[{"role": "user", "content": QUESTION}]
    )
    assert completion.choices[0].message.content == text
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == usage.output_tokens


async def test_anthropic_sdk_streams_text_and_usage(relay_server: Relay) -> None:
    model = "mock:tokens=40,tps=0,ttft_ms=0"
    text, _, usage = await expected(model, MESSAGES)
    async with relay_server.anthropic_sdk().messages.stream(
        model=model,
        max_tokens=100,
        system=SYSTEM,
        messages=[{"role": "user", "content": QUESTION}],
    ) as stream:
        streamed = "".join([piece async for piece in stream.text_stream])
        final = await stream.get_final_message()
    assert streamed == text
    assert final.content[0].type == "text" and final.content[0].text == text
    assert final.stop_reason == "end_turn"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (
        usage.input_tokens,
        usage.output_tokens,
    )


async def test_anthropic_sdk_assembles_tool_use(relay_server: Relay) -> None:
    model = "mock:tokens=6,tps=0,ttft_ms=0,tools"
    _, calls, _ = await expected(model, MESSAGES)
    async with relay_server.anthropic_sdk().messages.stream(
        model=model, max_tokens=100, system=SYSTEM, messages=[{"role": "user", "content": QUESTION}]
    ) as stream:
        final = await stream.get_final_message()
    tool_uses = [block for block in final.content if block.type == "tool_use"]
    assert [(t.id, t.name) for t in tool_uses] == [(calls[0].id, calls[0].name)]
    assert tool_uses[0].input == json.loads(calls[0].arguments)
    assert final.stop_reason == "tool_use"


async def test_anthropic_sdk_non_streamed_message(relay_server: Relay) -> None:
    model = "mock:tokens=25,tps=0,ttft_ms=0"
    text, _, usage = await expected(model, MESSAGES)
    message = await relay_server.anthropic_sdk().messages.create(
        model=model, max_tokens=100, system=SYSTEM, messages=[{"role": "user", "content": QUESTION}]
    )
    assert message.content[0].type == "text" and message.content[0].text == text
    assert message.usage.output_tokens == usage.output_tokens


async def read_frames(relay: Relay, method: str, path: str, **kwargs: Any) -> tuple[str, list[Any]]:
    """The session id and every SSE frame of a whole front-door or resume stream."""
    async with relay.http.request(method, relay.url(path), **kwargs) as response:
        assert response.status == 200, await response.text()
        parser = SseParser()
        events = parser.feed(await response.read())
        return response.headers.get("X-Relay-Session-Id", ""), events


FRONT_DOORS = {
    "openai": (
        "/v1/chat/completions",
        {"messages": [{"role": "user", "content": QUESTION}], "stream": True},
    ),
    "anthropic": (
        "/v1/messages",
        {"messages": [{"role": "user", "content": QUESTION}], "max_tokens": 500, "stream": True},
    ),
}


@pytest.mark.parametrize("wire_format", ["openai", "anthropic"])
async def test_a_cut_front_door_stream_resumes_in_its_own_format(
    relay_server: Relay, wire_format: str
) -> None:
    path, body = FRONT_DOORS[wire_format]
    model = "mock:tokens=30,tps=200,ttft_ms=0"
    # Read a few frames with ids, then drop the connection mid-stream.
    async with relay_server.http.post(relay_server.url(path), json={**body, "model": model}) as cut:
        session_id = cut.headers["X-Relay-Session-Id"]
        parser, seen = SseParser(), []
        while len([e for e in seen if e.id]) < 4:
            seen += parser.feed(await cut.content.readany())
    last_id = [e.id for e in seen if e.id][-1]
    await relay_server.wait_until_ended(session_id)
    events_path = f"/v1/sessions/{session_id}/events?format={wire_format}"
    _, whole = await read_frames(relay_server, "GET", events_path)
    _, rest = await read_frames(
        relay_server, "GET", events_path, headers={"Last-Event-ID": last_id}
    )
    cut_at = next(i for i, e in enumerate(whole) if e.id == last_id) + 1
    # The resumed frames are exactly the unbroken stream's frames after the cut point,
    assert [(e.event, e.data, e.id) for e in rest] == [
        (e.event, e.data, e.id) for e in whole[cut_at:]
    ]
    # and what was seen before the cut is the unbroken stream's beginning.
    before = [e for e in seen if e.data is not None]
    assert [(e.event, e.data) for e in before[:cut_at]] == [
        (e.event, e.data) for e in whole[:cut_at]
    ]


async def test_leaving_a_front_door_stream_does_not_stop_the_generation(
    relay_server: Relay,
) -> None:
    path, body = FRONT_DOORS["openai"]
    model = "mock:tokens=20,tps=100,ttft_ms=0"
    async with relay_server.http.post(relay_server.url(path), json={**body, "model": model}) as cut:
        session_id = cut.headers["X-Relay-Session-Id"]
        await cut.content.readany()
    snapshot = await relay_server.wait_until_ended(session_id)
    assert snapshot["status"] == "completed"
    assert len(snapshot["text"].split(" ")) == 20


async def test_a_cancelled_non_streamed_answer_is_a_499(relay_server: Relay) -> None:
    path, body = FRONT_DOORS["openai"]
    request = {**body, "stream": False, "model": "mock:tokens=100000,tps=50,ttft_ms=0"}

    async def cancel_when_started() -> None:
        runner = relay_server.server.app[SERVICES].runner
        while not (sessions := runner.running_ids):
            await asyncio.sleep(0.01)
        await relay_server.http.delete(relay_server.url(f"/v1/sessions/{sessions[0]}"))

    canceller = asyncio.create_task(cancel_when_started())
    async with relay_server.http.post(relay_server.url(path), json=request) as response:
        assert response.status == 499
        assert (await response.json())["error"]["type"] == "upstream_error"
        session_id = response.headers["X-Relay-Session-Id"]
    await canceller
    assert (await relay_server.snapshot(session_id))["status"] == "cancelled"
