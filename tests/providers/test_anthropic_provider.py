"""`AnthropicProvider` against the mock upstream on a real socket.

What arrives must equal what the in-process `MockProvider` yields for the same model
string; stop reasons come back in relay's (OpenAI's) vocabulary.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgspec
import pytest
from aiohttp.test_utils import TestServer

from relay.config import UpstreamSettings
from relay.errors import UpstreamError
from relay.providers.anthropic import (
    DEFAULT_MAX_TOKENS,
    EVENT,
    AnthropicProvider,
    Event,
    EventAssembler,
    anthropic_messages,
    anthropic_tools,
    system_prompt,
)
from relay.providers.base import (
    Finish,
    ProviderItem,
    ReasoningDelta,
    Retrying,
    TextDelta,
    ToolCall,
    UsageReport,
)
from relay.providers.mock import MockProvider
from relay.vocabulary import (
    GenerationRequest,
    Message,
    NamedFunction,
    NamedToolChoice,
    Passthrough,
)
from tests.mock_upstream_server import mock_stats
from tests.providers.stub_upstream import sse_answer, stub_upstream

API_KEY = "sk-ant-test-0123456789abcdef"
MESSAGES = [Message(role="system", content="be brief"), Message(role="user", content="hello there")]
FAST = "mock:tokens=30,tps=0,ttft_ms=0"
TOOLS = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]

MakeProvider = Callable[..., AnthropicProvider]


@pytest.fixture
async def make_provider(mock_upstream: TestServer) -> AsyncIterator[MakeProvider]:
    providers: list[AnthropicProvider] = []

    def make(**settings: Any) -> AnthropicProvider:
        upstream_settings = UpstreamSettings(
            name="fake-anthropic",
            kind="anthropic",
            base_url=str(mock_upstream.make_url("")),
            models=["mock*"],
            **settings,
        )
        providers.append(AnthropicProvider(upstream_settings, API_KEY))
        return providers[-1]

    yield make
    for provider in providers:
        await provider.close()


def request(model: str, **fields: Any) -> GenerationRequest:
    return GenerationRequest(model=model, messages=MESSAGES, **fields)


async def collect(
    provider: AnthropicProvider | MockProvider, model: str, **fields: Any
) -> list[ProviderItem]:
    return [item async for item in provider.stream(request(model, **fields))]


async def collect_until_error(
    provider: AnthropicProvider, model: str
) -> tuple[list[ProviderItem], UpstreamError]:
    items: list[ProviderItem] = []
    with pytest.raises(UpstreamError) as caught:
        async for item in provider.stream(request(model)):
            items.append(item)
    return items, caught.value


def text_of(items: list[ProviderItem]) -> str:
    return "".join(item.text for item in items if isinstance(item, TextDelta))


# --- what the upstream sent arrives whole -------------------------------------------


@pytest.mark.parametrize(
    ("model", "fields"),
    [
        (FAST, {}),
        (FAST, {"max_tokens": 7}),
        ("mock:tools,tps=0,ttft_ms=0", {}),
        ("mock:tokens=12,seed=4,tps=0,ttft_ms=0", {"temperature": 0.5, "stop": ["zzz"]}),
        (
            "mock:tools,tps=0,ttft_ms=0",
            {
                "tools": TOOLS,
                "tool_choice": "required",
                "parallel_tool_calls": False,
                "passthrough": Passthrough("anthropic", {"top_k": msgspec.Raw(b"5")}),
            },
        ),
        (FAST, {"passthrough": Passthrough("openai", {"seed": msgspec.Raw(b"1")})}),
    ],
)
async def test_items_equal_the_in_process_mock(
    make_provider: MakeProvider, model: str, fields: dict[str, Any]
) -> None:
    expected = await collect(MockProvider(), model, **fields)
    assert await collect(make_provider(), model, **fields) == expected


async def test_stop_reasons_in_relays_vocabulary(make_provider: MakeProvider) -> None:
    provider = make_provider()
    assert (await collect(provider, FAST))[-1] == Finish("stop")
    assert (await collect(provider, FAST, max_tokens=3))[-2:] == [
        UsageReport(input_tokens=4, output_tokens=3),
        Finish("length"),
    ]
    assert (await collect(provider, "mock:tools,tps=0,ttft_ms=0"))[-1] == Finish("tool_calls")


async def test_a_tool_call_arrives_whole(make_provider: MakeProvider) -> None:
    items = await collect(make_provider(), "mock:tools,tokens=6,tps=0,ttft_ms=0")
    calls = [item for item in items if isinstance(item, ToolCall)]
    assert len(calls) == 1
    assert (calls[0].index, calls[0].name) == (0, "search")
    assert msgspec.json.decode(calls[0].arguments)["limit"] == 6


async def test_thinking_arrives_as_reasoning(make_provider: MakeProvider) -> None:
    items = await collect(make_provider(), "mock:tokens=5,reasoning=4,tps=0,ttft_ms=0")
    reasoning = "".join(item.text for item in items if isinstance(item, ReasoningDelta))
    assert len(reasoning.split()) == 4
    assert isinstance(items[0], ReasoningDelta)
    plain = await collect(MockProvider(), "mock:tokens=5,tps=0,ttft_ms=0")
    assert text_of(items) == text_of(plain)
    assert items[-2] == UsageReport(input_tokens=4, output_tokens=9)


async def test_the_request_is_in_anthropics_shape(
    make_provider: MakeProvider, mock_upstream: TestServer
) -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    await collect(make_provider(), FAST, temperature=0.25, stop=["x"], tools=tools)
    sent = (await mock_stats(mock_upstream))["last_request"]
    assert sent["stream"] is True
    assert sent["system"] == "be brief"
    assert sent["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "hello there"}]}
    ]
    assert (sent["max_tokens"], sent["temperature"], sent["stop_sequences"]) == (
        DEFAULT_MAX_TOKENS,
        0.25,
        ["x"],
    )
    assert sent["tools"] == [{"name": "f", "input_schema": {"type": "object"}}]


# --- failures ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code"),
    [(400, "upstream_bad_request"), (401, "upstream_auth"), (404, "upstream_not_found")],
)
async def test_client_errors_fail_at_once_with_the_upstream_message(
    make_provider: MakeProvider, mock_upstream: TestServer, status: int, code: str
) -> None:
    items, error = await collect_until_error(make_provider(), f"mock:status={status}")
    assert items == []
    assert (error.code, error.status, error.retryable) == (code, status, False)
    assert error.message == f"mock upstream refused the request with {status}, as the model asked"
    assert API_KEY not in error.message
    assert (await mock_stats(mock_upstream))["requests"] == 1


async def test_overload_is_retried_after_retry_after(
    make_provider: MakeProvider, mock_upstream: TestServer
) -> None:
    model = "mock:tokens=3,tps=0,ttft_ms=0,status=529,retry_after=0.2,fail_first=1"
    started = time.monotonic()
    items = await collect(make_provider(max_retries=1), model)
    assert time.monotonic() - started >= 0.2
    assert items[-1] == Finish("stop")
    assert (await mock_stats(mock_upstream))["requests"] == 2


async def test_retries_give_up_after_max_retries(
    make_provider: MakeProvider, mock_upstream: TestServer
) -> None:
    model = "mock:tokens=3,tps=0,ttft_ms=0,status=429,retry_after=0,fail_first=5"
    _, error = await collect_until_error(make_provider(max_retries=1), model)
    assert (error.code, error.status, error.retryable) == ("upstream_rate_limited", 429, True)
    assert (await mock_stats(mock_upstream))["requests"] == 2


async def test_a_disconnect_after_the_first_tokens_is_a_retryable_error(
    make_provider: MakeProvider, mock_upstream: TestServer
) -> None:
    model = "mock:tokens=30,tps=0,ttft_ms=0,disconnect_after=5"
    items, error = await collect_until_error(make_provider(max_retries=2), model)
    assert len(text_of(items).split()) == 5
    assert (error.code, error.retryable) == ("upstream_connection_error", True)
    assert (await mock_stats(mock_upstream))["requests"] == 1  # never retried mid-stream


async def test_an_error_event_mid_stream_is_a_retryable_error(make_provider: MakeProvider) -> None:
    model = "mock:tokens=30,tps=0,ttft_ms=0,fail_after=4"
    items, error = await collect_until_error(make_provider(), model)
    assert len(text_of(items).split()) == 4
    assert (error.code, error.retryable, error.status) == ("upstream_error", True, None)
    assert "mock failure after 4 tokens" in error.message


async def test_an_error_event_before_the_first_token_is_retried(
    make_provider: MakeProvider, mock_upstream: TestServer
) -> None:
    model = "mock:tokens=30,tps=0,ttft_ms=0,fail_after=0"
    items, error = await collect_until_error(make_provider(max_retries=1), model)
    assert [(item.attempt, item.code) for item in items if isinstance(item, Retrying)] == [
        (1, "upstream_error")
    ]
    assert [item for item in items if not isinstance(item, Retrying)] == []  # no output
    assert (error.code, error.retryable) == ("upstream_error", True)
    assert (await mock_stats(mock_upstream))["requests"] == 2


async def test_a_hang_before_the_first_token_is_a_first_token_timeout(
    make_provider: MakeProvider,
) -> None:
    provider = make_provider(first_token_timeout_s=0.3)
    started = time.monotonic()
    model = "mock:tokens=5,tps=0,ttft_ms=0,hang_after=0"
    items, error = await collect_until_error(provider, model)
    assert items == []
    assert (error.code, error.retryable) == ("upstream_timeout", True)
    assert 0.3 <= time.monotonic() - started < 1.5


STOP_STREAM = (
    b'event: message_start\ndata: {"type": "message_start", "message": {}}\n\n',
    b'event: ping\ndata: {"type": "ping"}\n\n',
    b"event: message_delta\n"
    b'data: {"type": "message_delta", "delta": {"stop_reason": "end_turn"}}\n\n',
    b'event: message_stop\ndata: {"type": "message_stop"}\n\n',
)


@pytest.mark.parametrize(
    ("base_url", "api_key"), [("", API_KEY), ("/", None), ("/gateway", API_KEY)]
)
async def test_the_request_url_and_headers(base_url: str, api_key: str | None) -> None:
    async with stub_upstream(sse_answer(*STOP_STREAM)) as stub:
        settings = UpstreamSettings(name="stub", kind="anthropic", base_url=stub.url(base_url))
        provider = AnthropicProvider(settings, api_key)
        try:
            assert await collect(provider, FAST) == [Finish("stop")]
        finally:
            await provider.close()
    [(path, headers)] = stub.requests
    assert path == base_url.rstrip("/") + "/v1/messages"
    assert headers.get("x-api-key") == api_key
    assert headers["anthropic-version"] == "2023-06-01"
    assert "Authorization" not in headers
    assert headers["Content-Type"] == "application/json"


# --- tool choice and passthrough fields reach the upstream ---------------------------


async def body_sent(**fields: Any) -> bytes:
    """The body the stub upstream received for a request with `fields`."""
    async with stub_upstream(sse_answer(*STOP_STREAM)) as stub:
        settings = UpstreamSettings(name="stub", kind="anthropic", base_url=stub.url())
        provider = AnthropicProvider(settings, API_KEY)
        try:
            await collect(provider, "any", **fields)
        finally:
            await provider.close()
    [body] = stub.bodies
    return body


def keys_of(body: bytes) -> list[str]:
    """The body's top-level keys in order, repeats included."""
    pairs: list[tuple[str, Any]] = json.loads(body, object_pairs_hook=lambda pairs: pairs)
    return [key for key, _ in pairs]


PLAIN_BODY = (
    b'{"model":"any","messages":[{"role":"user","content":[{"type":"text","text":"hello there"}]}],'
    b'"max_tokens":5,"stream":true,"system":"be brief"}'
)
NAMED_F = NamedToolChoice(NamedFunction("f"))


async def test_a_request_without_the_new_fields_is_sent_as_before() -> None:
    assert await body_sent(max_tokens=5) == PLAIN_BODY


@pytest.mark.parametrize(
    ("tool_choice", "parallel", "sent"),
    [
        ("auto", None, {"type": "auto"}),
        ("required", None, {"type": "any"}),
        ("none", None, {"type": "none"}),
        (NAMED_F, None, {"type": "tool", "name": "f"}),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        ("auto", False, {"type": "auto", "disable_parallel_tool_use": True}),
        ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
        (NAMED_F, False, {"type": "tool", "name": "f", "disable_parallel_tool_use": True}),
        ("none", False, {"type": "none"}),  # Anthropic's `none` takes no parallel setting
        ("required", True, {"type": "any"}),  # parallel use is Anthropic's default
    ],
)
async def test_tool_choice_is_translated(
    tool_choice: Any, parallel: bool | None, sent: dict[str, Any]
) -> None:
    body = await body_sent(tools=TOOLS, tool_choice=tool_choice, parallel_tool_calls=parallel)
    assert msgspec.json.decode(body)["tool_choice"] == sent


@pytest.mark.parametrize(
    "fields",
    [
        {"tools": TOOLS},
        {"tools": TOOLS, "parallel_tool_calls": True},
        {"tool_choice": "required", "parallel_tool_calls": False},  # no tools
        {"tools": [], "tool_choice": NAMED_F},
    ],
)
async def test_no_tool_choice_without_tools_or_a_choice(fields: dict[str, Any]) -> None:
    assert "tool_choice" not in msgspec.json.decode(await body_sent(**fields))


ANTHROPIC_EXTRAS = {
    "top_k": b"40",
    "metadata": b'{"user_id": "u-1"}',
    "thinking": b'{"type": "enabled", "budget_tokens": 1024}',
}
RELAYS_OWN = {
    "model": b'"claude-other"',
    "messages": b"[]",
    "max_tokens": b"1",
    "stream": b"false",
    "system": b'"obey"',
    "temperature": b"1",  # not sent by relay here, but its name all the same
    "tool_choice": b'{"type": "any"}',
}


async def test_anthropic_passthrough_fields_are_merged_and_relays_own_win() -> None:
    fields = {name: msgspec.Raw(raw) for name, raw in {**RELAYS_OWN, **ANTHROPIC_EXTRAS}.items()}
    body = await body_sent(max_tokens=5, passthrough=Passthrough("anthropic", fields))
    assert body.startswith(PLAIN_BODY[:-1] + b",")
    assert b'"metadata":{"user_id": "u-1"}' in body  # verbatim
    assert keys_of(body) == keys_of(PLAIN_BODY) + list(ANTHROPIC_EXTRAS)
    assert msgspec.json.decode(body) == {
        **msgspec.json.decode(PLAIN_BODY),
        **{name: msgspec.json.decode(raw) for name, raw in ANTHROPIC_EXTRAS.items()},
    }


async def test_openai_passthrough_fields_are_not_sent() -> None:
    fields = {name: msgspec.Raw(raw) for name, raw in ANTHROPIC_EXTRAS.items()}
    body = await body_sent(max_tokens=5, passthrough=Passthrough("openai", fields))
    assert body == PLAIN_BODY


# --- cancellation reaches the upstream --------------------------------------------


async def test_aclose_mid_stream_disconnects_from_the_upstream(
    make_provider: MakeProvider, mock_upstream: TestServer
) -> None:
    stream = make_provider().stream(request("mock:tokens=500,tps=100,ttft_ms=0"))
    assert text_of([await anext(stream) for _ in range(3)])
    await stream.aclose()
    for _ in range(150):
        stats = await mock_stats(mock_upstream)
        if stats["client_disconnects"]:
            break
        await asyncio.sleep(0.02)
    assert (stats["client_disconnects"], stats["completed"], stats["active"]) == (1, 0, 0)


# --- relay's messages in Anthropic's shape (pure) -----------------------------------


def test_system_and_developer_messages_become_the_system_parameter() -> None:
    messages = [
        Message(role="system", content="one"),
        Message(role="developer", content=[{"type": "text", "text": "two"}]),
        Message(role="user", content="hi"),
    ]
    assert system_prompt(messages) == "one\n\ntwo"
    assert anthropic_messages(messages) == [
        {"role": "user", "content": [{"type": "text", "text": "hi"}]}
    ]


def test_system_blocks_with_cache_control_are_kept_as_blocks() -> None:
    cached = {"type": "text", "text": "long context", "cache_control": {"type": "ephemeral"}}
    messages = [Message(role="system", content="rules"), Message(role="system", content=[cached])]
    assert system_prompt(messages) == [{"type": "text", "text": "rules"}, cached]


def test_tool_calls_and_results_become_blocks_in_alternating_turns() -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
    messages = [
        Message(role="user", content="use f"),
        Message(role="assistant", content="sure", tool_calls=[call]),
        Message(role="tool", content="42", tool_call_id="call_1"),
        Message(role="user", content="thanks"),
    ]
    assert anthropic_messages(messages) == [
        {"role": "user", "content": [{"type": "text", "text": "use f"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "sure"},
                {"type": "tool_use", "id": "call_1", "name": "f", "input": {"a": 1}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "42"},
                {"type": "text", "text": "thanks"},
            ],
        },
    ]


def test_images_and_anthropic_blocks() -> None:
    parts = [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
        {"type": "document", "source": {"type": "text", "data": "kept as is"}},
    ]
    [message] = anthropic_messages([Message(role="user", content=parts)])
    assert message["content"] == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}},
        parts[2],
    ]


def test_openai_tools_are_converted_and_anthropic_tools_kept() -> None:
    openai_tool = {
        "type": "function",
        "function": {"name": "f", "description": "does f", "parameters": {"type": "object"}},
    }
    anthropic_tool = {"name": "g", "input_schema": {"type": "object"}}
    assert anthropic_tools([openai_tool, anthropic_tool]) == [
        {"name": "f", "input_schema": {"type": "object"}, "description": "does f"},
        anthropic_tool,
    ]


# --- events from Anthropic-compatible servers (pure) --------------------------------


def event(data: dict[str, Any]) -> Event:
    """An event decoded the way the provider decodes them."""
    return EVENT.decode(msgspec.json.encode(data))


def feed_all(assembler: EventAssembler, events: list[dict[str, Any]]) -> list[ProviderItem]:
    return [item for data in events for item in assembler.feed(event(data))]


def test_tool_use_without_input_deltas_has_empty_object_arguments() -> None:
    assembler = EventAssembler()
    items = feed_all(
        assembler,
        [
            {"type": "message_start", "message": {"usage": {"input_tokens": 5}}},
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "tool_use", "id": "toolu_1", "name": "now", "input": {}},
            },
            {"type": "content_block_stop", "index": 0},
            {
                "type": "message_delta",
                "delta": {"stop_reason": "tool_use"},
                "usage": {"output_tokens": 3},
            },
            {"type": "message_stop"},
        ],
    )
    assert items + assembler.finish() == [
        ToolCall(0, "toolu_1", "now", "{}"),
        UsageReport(5, 3),
        Finish("tool_calls"),
    ]


def test_unknown_events_blocks_and_deltas_are_ignored() -> None:
    assembler = EventAssembler()
    items = feed_all(
        assembler,
        [
            {"type": "message_start", "message": {"usage": None}},
            {"type": "brand_new_event", "payload": 1},
            {"type": "content_block_start", "index": 0, "content_block": {"type": "hologram"}},
            {"type": "content_block_delta", "index": 0, "delta": {"type": "hologram_delta"}},
            {"type": "content_block_stop", "index": 0},
            {
                "type": "content_block_start",
                "index": 1,
                "content_block": {"type": "text", "text": ""},
            },
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "text_delta", "text": "hi"},
            },
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn"},
                "usage": {"output_tokens": 1},
            },
        ],
    )
    assert items + assembler.finish() == [TextDelta("hi"), UsageReport(0, 1), Finish("stop")]


def test_cached_input_counts_as_input() -> None:
    assembler = EventAssembler()
    usage = {"input_tokens": 2, "cache_read_input_tokens": 10, "cache_creation_input_tokens": 3}
    items = feed_all(
        assembler,
        [
            {"type": "message_start", "message": {"usage": {**usage, "output_tokens": 1}}},
            {
                "type": "message_delta",
                "delta": {"stop_reason": "max_tokens"},
                "usage": {"output_tokens": 8},
            },
        ],
    )
    assert items + assembler.finish() == [UsageReport(15, 8), Finish("length")]


def test_a_stream_without_a_stop_reason_is_an_error() -> None:
    assembler = EventAssembler()
    feed_all(
        assembler,
        [{"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "x"}}],
    )
    with pytest.raises(UpstreamError) as caught:
        assembler.finish()
    assert (caught.value.code, caught.value.retryable) == ("upstream_incomplete", True)
