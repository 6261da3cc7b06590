"""The standalone mock upstream on a real socket, driven by the official OpenAI and Anthropic SDKs.

Every text is compared with what the in-process `MockProvider` generates for the same model
and messages: the two must never drift apart.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import openai
import pytest
from aiohttp.test_utils import TestServer

from relay.mock_upstream import split_model
from relay.providers.base import TextDelta, ToolCall, UsageReport
from relay.providers.mock import MockProvider
from relay.vocabulary import GenerationRequest, Message
from tests.mock_upstream_server import mock_upstream_server

FAST = "mock:tokens=12,tps=0,ttft_ms=0,seed=4"
SYSTEM = "be brief"
QUESTION = "tell me about foxes"
CHAT_MESSAGES: list[Any] = [
    {"role": "system", "content": SYSTEM},
    {"role": "user", "content": QUESTION},
]
ANTHROPIC_MESSAGES: list[Any] = [{"role": "user", "content": QUESTION}]
RELAY_MESSAGES = [Message(role="system", content=SYSTEM), Message(role="user", content=QUESTION)]


class Upstream:
    """One running mock upstream, with an SDK client for each wire format."""

    def __init__(self, server: TestServer, http: aiohttp.ClientSession) -> None:
        self.url = str(server.make_url("")).rstrip("/")
        self.http = http
        self.openai = self.openai_client()
        self.anthropic = self.anthropic_client()

    def openai_client(self, max_retries: int = 0) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=self.url + "/v1", api_key="x", max_retries=max_retries)

    def anthropic_client(self, max_retries: int = 0) -> anthropic.AsyncAnthropic:
        return anthropic.AsyncAnthropic(base_url=self.url, api_key="x", max_retries=max_retries)

    async def stats(self) -> dict[str, Any]:
        async with self.http.get(self.url + "/_mock/stats") as response:
            assert response.status == 200
            stats: dict[str, Any] = await response.json()
            return stats

    async def wait_for_stats(self, done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        deadline = time.monotonic() + 5
        while not done(stats := await self.stats()):
            assert time.monotonic() < deadline, f"stats never matched: {stats}"
            await asyncio.sleep(0.02)
        return stats

    async def close(self) -> None:
        await self.openai.close()
        await self.anthropic.close()


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    server = mock_upstream_server()
    await server.start_server()
    async with aiohttp.ClientSession() as http:
        upstream = Upstream(server, http)
        yield upstream
        await upstream.close()
    await server.close()


async def in_process(
    model: str, max_tokens: int | None = None
) -> tuple[str, ToolCall | None, UsageReport]:
    """What relay's built-in mock makes of the same model and conversation."""
    request = GenerationRequest(model=model, messages=RELAY_MESSAGES, max_tokens=max_tokens)
    items = [item async for item in MockProvider().stream(request)]
    text = "".join(item.text for item in items if isinstance(item, TextDelta))
    calls = [item for item in items if isinstance(item, ToolCall)]
    usage = [item for item in items if isinstance(item, UsageReport)][-1]
    return text, calls[0] if calls else None, usage


# --- OpenAI Chat Completions ------------------------------------------------------


async def test_openai_stream_gives_the_in_process_text_one_token_per_chunk(
    upstream: Upstream,
) -> None:
    stream = await upstream.openai.chat.completions.create(
        model=FAST, messages=CHAT_MESSAGES, stream=True
    )
    chunks = [chunk async for chunk in stream]
    pieces = [chunk.choices[0].delta.content for chunk in chunks if chunk.choices]
    text, _, _ = await in_process(FAST)
    assert "".join(piece or "" for piece in pieces) == text
    assert len([piece for piece in pieces if piece]) == 12
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert len({chunk.id for chunk in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-")


async def test_openai_include_usage_sends_a_final_usage_chunk(upstream: Upstream) -> None:
    stream = await upstream.openai.chat.completions.create(
        model=FAST, messages=CHAT_MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    _, _, usage = await in_process(FAST)
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens == usage.input_tokens == 6
    assert chunks[-1].usage.completion_tokens == usage.output_tokens == 12
    assert chunks[-1].usage.total_tokens == 18
    assert all(chunk.usage is None for chunk in chunks[:-1])


async def test_openai_without_stream_answers_one_completion(upstream: Upstream) -> None:
    answer = await upstream.openai.chat.completions.create(model=FAST, messages=CHAT_MESSAGES)
    text, _, usage = await in_process(FAST)
    assert answer.choices[0].message.content == text
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage is not None and answer.usage.prompt_tokens == usage.input_tokens


@pytest.mark.parametrize("limit", ["max_tokens", "max_completion_tokens"])
async def test_openai_output_limit_cuts_with_length(upstream: Upstream, limit: str) -> None:
    stream = await upstream.openai.chat.completions.create(
        model=FAST, messages=CHAT_MESSAGES, stream=True, extra_body={limit: 5}
    )
    chunks = [chunk async for chunk in stream]
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks)
    assert text == (await in_process(FAST, max_tokens=5))[0]
    assert len(text.split(" ")) == 5
    assert chunks[-1].choices[0].finish_reason == "length"


async def test_openai_tool_call_streams_its_arguments_in_fragments(upstream: Upstream) -> None:
    model = "mock:tokens=6,tps=0,ttft_ms=0,tools"
    stream = await upstream.openai.chat.completions.create(
        model=model, messages=CHAT_MESSAGES, stream=True
    )
    fragments = []
    async for chunk in stream:
        for call in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            fragments.append(call)
        if chunk.choices and chunk.choices[0].finish_reason:
            assert chunk.choices[0].finish_reason == "tool_calls"
    _, expected, _ = await in_process(model)
    assert expected is not None and len(fragments) > 2
    assert {fragment.index for fragment in fragments} == {0}
    assert fragments[0].id == expected.id and fragments[0].type == "function"
    assert fragments[0].function is not None and fragments[0].function.name == "search"
    assert all(fragment.id is None for fragment in fragments[1:])
    arguments = "".join(
        fragment.function.arguments or "" for fragment in fragments if fragment.function
    )
    assert json.loads(arguments) == json.loads(expected.arguments)
    assert json.loads(arguments)["limit"] == 6


async def test_openai_tool_call_without_stream(upstream: Upstream) -> None:
    model = "mock:tokens=6,tps=0,ttft_ms=0,tools"
    answer = await upstream.openai.chat.completions.create(model=model, messages=CHAT_MESSAGES)
    _, expected, _ = await in_process(model)
    message = answer.choices[0].message
    assert expected is not None and message.tool_calls is not None
    call = message.tool_calls[0]
    assert call.type == "function" and call.id == expected.id
    assert call.function.name == "search" and call.function.arguments == expected.arguments
    assert message.content is None and answer.choices[0].finish_reason == "tool_calls"


async def test_openai_reasoning_comes_before_the_same_answer(upstream: Upstream) -> None:
    stream = await upstream.openai.chat.completions.create(
        model=FAST + ",reasoning=4", messages=CHAT_MESSAGES, stream=True
    )
    chunks = [chunk async for chunk in stream if chunk.choices]
    reasoning = [
        (chunk.choices[0].delta.model_extra or {}).get("reasoning_content") for chunk in chunks
    ]
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks)
    assert len([part for part in reasoning if part]) == 4
    assert len("".join(part for part in reasoning if part).split(" ")) == 4
    assert reasoning.index(next(part for part in reasoning if part)) < 2
    assert text == (await in_process(FAST))[0]


# --- Anthropic Messages -------------------------------------------------------------


async def test_anthropic_stream_gives_the_in_process_text_and_usage(upstream: Upstream) -> None:
    async with upstream.anthropic.messages.stream(
        model=FAST, max_tokens=100, system=SYSTEM, messages=ANTHROPIC_MESSAGES
    ) as stream:
        pieces = [text async for text in stream.text_stream]
        message = await stream.get_final_message()
    text, _, usage = await in_process(FAST)
    assert "".join(pieces) == text and len(pieces) == 12
    assert message.stop_reason == "end_turn" and message.id.startswith("msg_")
    assert message.usage.input_tokens == usage.input_tokens == 6
    assert message.usage.output_tokens == 12


async def test_anthropic_events_come_in_the_documented_order(upstream: Upstream) -> None:
    body = {
        "model": "mock:tokens=3,tps=0,ttft_ms=0",
        "max_tokens": 10,
        "stream": True,
        "messages": ANTHROPIC_MESSAGES,
    }
    async with upstream.http.post(upstream.url + "/v1/messages", json=body) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        raw = (await response.read()).decode()
    frames = [frame.split("\n") for frame in raw.strip().split("\n\n")]
    names = [frame[0].removeprefix("event: ") for frame in frames]
    assert [json.loads(frame[1].removeprefix("data: "))["type"] for frame in frames] == names
    assert names == [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]


async def test_anthropic_create_stream_with_max_tokens(upstream: Upstream) -> None:
    stream = await upstream.anthropic.messages.create(
        model=FAST, max_tokens=4, system=SYSTEM, messages=ANTHROPIC_MESSAGES, stream=True
    )
    events = [event async for event in stream]
    deltas = [event.delta for event in events if event.type == "content_block_delta"]
    text = "".join(delta.text for delta in deltas if delta.type == "text_delta")
    assert text == (await in_process(FAST, max_tokens=4))[0]
    end = next(event for event in events if event.type == "message_delta")
    assert end.delta.stop_reason == "max_tokens" and end.usage.output_tokens == 4
    assert events[0].type == "message_start" and events[-1].type == "message_stop"


async def test_anthropic_tool_use_input_streams_in_fragments(upstream: Upstream) -> None:
    model = "mock:tokens=6,tps=0,ttft_ms=0,tools"
    async with upstream.anthropic.messages.stream(
        model=model, max_tokens=100, system=SYSTEM, messages=ANTHROPIC_MESSAGES
    ) as stream:
        events = [event async for event in stream]
        message = await stream.get_final_message()
    _, expected, _ = await in_process(model)
    partials = [
        event.delta.partial_json
        for event in events
        if event.type == "content_block_delta" and event.delta.type == "input_json_delta"
    ]
    assert expected is not None and len(partials) > 2
    assert "".join(partials) == expected.arguments
    (block,) = message.content
    assert block.type == "tool_use" and block.id == expected.id and block.name == "search"
    assert block.input == json.loads(expected.arguments)
    assert message.stop_reason == "tool_use"


async def test_anthropic_thinking_block_comes_first(upstream: Upstream) -> None:
    async with upstream.anthropic.messages.stream(
        model=FAST + ",reasoning=5",
        max_tokens=100,
        system=SYSTEM,
        messages=ANTHROPIC_MESSAGES,
        thinking={"type": "enabled", "budget_tokens": 1024},
    ) as stream:
        message = await stream.get_final_message()
    thinking, text = message.content
    assert thinking.type == "thinking" and len(thinking.thinking.split(" ")) == 5
    assert thinking.signature
    assert text.type == "text" and text.text == (await in_process(FAST))[0]
    assert message.usage.output_tokens == 5 + 12


async def test_anthropic_without_stream_answers_one_message(upstream: Upstream) -> None:
    message = await upstream.anthropic.messages.create(
        model=FAST, max_tokens=100, system=SYSTEM, messages=ANTHROPIC_MESSAGES
    )
    text, _, usage = await in_process(FAST)
    (block,) = message.content
    assert block.type == "text" and block.text == text
    assert message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (usage.input_tokens, 12)


# --- failure modes ---------------------------------------------------------------------


async def test_status_answers_at_once_with_retry_after(upstream: Upstream) -> None:
    model = "mock:status=429,retry_after=2"
    with pytest.raises(openai.RateLimitError) as openai_failure:
        await upstream.openai.chat.completions.create(model=model, messages=CHAT_MESSAGES)
    assert openai_failure.value.response.headers["Retry-After"] == "2"
    assert openai_failure.value.type == "rate_limit_error"
    with pytest.raises(anthropic.RateLimitError) as anthropic_failure:
        await upstream.anthropic.messages.create(
            model=model, max_tokens=10, messages=ANTHROPIC_MESSAGES
        )
    assert anthropic_failure.value.response.headers["Retry-After"] == "2"
    body = anthropic_failure.value.body
    assert isinstance(body, dict) and body["type"] == "error"
    assert body["error"]["type"] == "rate_limit_error" and "429" in body["error"]["message"]
    with pytest.raises(openai.InternalServerError):
        await upstream.openai.chat.completions.create(
            model="mock:status=503", messages=CHAT_MESSAGES
        )
    assert (await upstream.stats())["completed"] == 0


async def test_fail_first_refuses_then_succeeds_so_sdk_retries_work(upstream: Upstream) -> None:
    model = FAST + ",fail_first=2,retry_after=0.01"
    client = upstream.openai_client(max_retries=2)
    try:
        answer = await client.chat.completions.create(model=model, messages=CHAT_MESSAGES)
    finally:
        await client.close()
    assert answer.choices[0].message.content == (await in_process(FAST))[0]
    stats = await upstream.stats()
    assert (stats["requests"], stats["completed"]) == (3, 1)


async def test_fail_first_counts_per_model_string_and_reset_forgets(upstream: Upstream) -> None:
    model = FAST + ",fail_first=1,status=529"

    async def status_of(model: str) -> int:
        try:
            await upstream.anthropic.messages.create(
                model=model, max_tokens=10, messages=ANTHROPIC_MESSAGES
            )
        except anthropic.APIStatusError as failure:
            return failure.status_code
        return 200

    assert [await status_of(model), await status_of(model)] == [529, 200]
    assert await status_of(model + ",seed=1") == 529  # another string, its own tally
    async with upstream.http.post(upstream.url + "/_mock/reset") as response:
        assert response.status == 204
    assert await status_of(model) == 529


async def test_fail_after_sends_a_provider_error_mid_stream(upstream: Upstream) -> None:
    model = FAST + ",fail_after=3"
    stream = await upstream.openai.chat.completions.create(
        model=model, messages=CHAT_MESSAGES, stream=True
    )
    seen = []
    with pytest.raises(openai.APIError, match="mock failure after 3 tokens"):
        async for chunk in stream:
            seen.append(chunk.choices[0].delta.content)
    assert len([piece for piece in seen if piece]) == 3
    events = []
    with pytest.raises(anthropic.APIStatusError) as failure:
        async with upstream.anthropic.messages.stream(
            model=model, max_tokens=100, messages=ANTHROPIC_MESSAGES
        ) as stream_:
            async for event in stream_:
                events.append(event)
    body = failure.value.body
    assert isinstance(body, dict) and body["error"]["type"] == "api_error"
    assert len([event for event in events if event.type == "text"]) == 3


async def test_disconnect_after_drops_the_connection_without_a_terminator(
    upstream: Upstream,
) -> None:
    model = FAST + ",disconnect_after=4"
    stream = await upstream.openai.chat.completions.create(
        model=model, messages=CHAT_MESSAGES, stream=True
    )
    seen = []
    with pytest.raises(openai.APIConnectionError):
        async for chunk in stream:
            seen.append(chunk.choices[0].delta.content)
    assert len([piece for piece in seen if piece]) == 4
    with pytest.raises(Exception) as failure:  # the SDK lets the transport's error through
        async with upstream.anthropic.messages.stream(
            model=model, max_tokens=100, messages=ANTHROPIC_MESSAGES
        ) as stream_:
            await stream_.get_final_message()
    assert "closed" in str(failure.value) or isinstance(failure.value, anthropic.APIError)
    stats = await upstream.wait_for_stats(lambda stats: stats["active"] == 0)
    assert (stats["completed"], stats["client_disconnects"]) == (0, 0)


async def test_a_client_closing_a_stream_early_is_counted(upstream: Upstream) -> None:
    model = "mock:tokens=500,tps=100,ttft_ms=0"
    stream = await upstream.openai.chat.completions.create(
        model=model, messages=CHAT_MESSAGES, stream=True
    )
    async for chunk in stream:
        if chunk.choices[0].delta.content:
            break
    await stream.close()
    await upstream.wait_for_stats(lambda stats: stats["client_disconnects"] == 1)
    async with upstream.anthropic.messages.stream(
        model=model, max_tokens=1000, messages=ANTHROPIC_MESSAGES
    ) as stream_:
        async for _ in stream_.text_stream:
            break
    stats = await upstream.wait_for_stats(lambda stats: stats["client_disconnects"] == 2)
    assert (stats["active"], stats["completed"], stats["requests"]) == (0, 0, 2)


async def test_hang_after_keeps_the_connection_silent(upstream: Upstream) -> None:
    stream = await upstream.openai.chat.completions.create(
        model=FAST + ",hang_after=2", messages=CHAT_MESSAGES, stream=True
    )
    chunks = aiter(stream)
    seen = [(await anext(chunks)).choices[0].delta.content for _ in range(3)]
    words = (await in_process(FAST))[0].split(" ")
    assert "".join(piece or "" for piece in seen) == " ".join(words[:2])
    await asyncio.sleep(0.3)
    assert (await upstream.stats())["active"] == 1  # still connected, still silent
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.3):
            await anext(chunks)
    # Giving up closed the SDK's response: the mock counts a client that went away.
    stats = await upstream.wait_for_stats(lambda stats: stats["active"] == 0)
    assert (stats["client_disconnects"], stats["completed"]) == (1, 0)


async def test_unknown_model_and_bad_options_are_refused(upstream: Upstream) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        await upstream.openai.chat.completions.create(model="gpt-4o", messages=CHAT_MESSAGES)
    assert missing.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError, match="unknown mock option 'bogus'"):
        await upstream.openai.chat.completions.create(model="mock:bogus=1", messages=CHAT_MESSAGES)
    with pytest.raises(anthropic.BadRequestError, match="status must be 400-599"):
        await upstream.anthropic.messages.create(
            model="mock:status=200", max_tokens=5, messages=ANTHROPIC_MESSAGES
        )
    with pytest.raises(anthropic.NotFoundError):
        await upstream.anthropic.messages.create(
            model="claude-x", max_tokens=5, messages=ANTHROPIC_MESSAGES
        )


def test_upstream_options_are_taken_out_of_the_model() -> None:
    model, options = split_model("mock:tokens=5,status=503,retry_after=1.5,fail_first=2,seed=3")
    assert model == "mock:tokens=5,seed=3"
    assert (options.status, options.retry_after, options.fail_first) == (503, 1.5, 2)
    assert split_model("mock:reasoning=2")[0] == "mock"
    with pytest.raises(ValueError, match="whole number"):
        split_model("mock:fail_first=1.5")
    with pytest.raises(ValueError, match="finite"):
        split_model("mock:retry_after=nan")


# --- the rest of the surface ---------------------------------------------------------


async def test_models_are_listed_in_openai_format(upstream: Upstream) -> None:
    models = [model.id async for model in upstream.openai.models.list()]
    assert "mock" in models and "mock:tools" in models


async def test_stats_record_the_last_request_and_reset_zeroes_them(upstream: Upstream) -> None:
    await upstream.openai.chat.completions.create(model=FAST, messages=CHAT_MESSAGES, user="u1")
    stats = await upstream.stats()
    assert stats["requests"] == 1 and stats["completed"] == 1 and stats["active"] == 0
    assert stats["last_request"]["model"] == FAST
    assert stats["last_request"]["messages"] == CHAT_MESSAGES
    assert stats["last_request"]["user"] == "u1"
    async with upstream.http.post(upstream.url + "/_mock/reset") as response:
        assert response.status == 204
    assert await upstream.stats() == {
        "requests": 0,
        "completed": 0,
        "client_disconnects": 0,
        "active": 0,
        "last_request": None,
    }


def test_the_cli_runs_a_real_mock_upstream(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = tmp_path / "stderr.log"
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "relay", "mock-upstream", "--port", str(port)], stderr=stderr
        )
    try:
        body = wait_for_models(f"http://127.0.0.1:{port}/v1/models", process, log)
        assert body["object"] == "list" and "mock" in [model["id"] for model in body["data"]]
    finally:
        process.terminate()
        process.wait(timeout=10)


def wait_for_models(url: str, process: subprocess.Popen[bytes], log: Path) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while True:
        if process.poll() is not None:
            raise AssertionError(f"relay mock-upstream exited early:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                body: dict[str, Any] = json.load(response)
                return body
        except OSError:
            assert time.monotonic() < deadline, "relay mock-upstream never answered"
            time.sleep(0.1)


async def test_tokens_and_reasoning_over_the_cap_are_refused_naming_it(upstream: Upstream) -> None:
    with pytest.raises(openai.BadRequestError, match=r"tokens must be at most 100000 .*40000000"):
        await upstream.openai.chat.completions.create(
            model="mock:tokens=40000000", messages=CHAT_MESSAGES
        )
    with pytest.raises(anthropic.BadRequestError, match="reasoning must be at most 100000"):
        await upstream.anthropic.messages.create(
            model="mock:reasoning=100001", max_tokens=5, messages=ANTHROPIC_MESSAGES
        )
    stats = await upstream.stats()
    assert (stats["completed"], stats["active"]) == (0, 0)
