"""`OpenAIProvider` against the mock upstream on a real socket.

What arrives must equal what the in-process `MockProvider` yields for the same model
string: the mock upstream plans the same words and sends them one chunk per token.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from relay.config import UpstreamSettings, read_api_key
from relay.errors import ConfigError, UpstreamError
from relay.providers.base import (
    Finish,
    Provider,
    ProviderItem,
    ReasoningDelta,
    Retrying,
    TextDelta,
    ToolCall,
    UsageReport,
)
from relay.providers.mock import MockProvider
from relay.providers.openai import CHUNK, Chunk, ChunkAssembler, OpenAIProvider
from relay.providers.router import ModelEntry, ModelRouter, build_provider
from relay.providers.sse_client import client_session
from relay.vocabulary import (
    GenerationRequest,
    Message,
    NamedFunction,
    NamedToolChoice,
    Passthrough,
)
from tests.mock_upstream_server import mock_stats
from tests.providers.stub_upstream import sse_answer, stub_upstream

API_KEY = "sk-test-0123456789abcdef"
MESSAGES = [Message(role="system", content="be brief"), Message(role="user", content="hello there")]
FAST = "mock:tokens=30,tps=0,ttft_ms=0"
TOOLS = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]

MakeProvider = Callable[..., OpenAIProvider]


@pytest.fixture
async def make_provider(mock_upstream: TestServer) -> AsyncIterator[MakeProvider]:
    providers: list[OpenAIProvider] = []

    def make(**settings: Any) -> OpenAIProvider:
        upstream_settings = UpstreamSettings(
            name="fake-openai",
            kind="openai",
            base_url=str(mock_upstream.make_url("/v1")),
            models=["mock*"],
            **settings,
        )
        providers.append(OpenAIProvider(upstream_settings, API_KEY))
        return providers[-1]

    yield make
    for provider in providers:
        await provider.close()


def request(model: str, **fields: Any) -> GenerationRequest:
    return GenerationRequest(model=model, messages=MESSAGES, **fields)


async def collect(provider: Provider, model: str, **fields: Any) -> list[Any]:
    return [item async for item in provider.stream(request(model, **fields))]


async def collect_until_error(
    provider: OpenAIProvider, model: str
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
                "tool_choice": NamedToolChoice(NamedFunction("search")),
                "parallel_tool_calls": False,
                "passthrough": Passthrough("openai", {"seed": msgspec.Raw(b"1")}),
            },
        ),
        (FAST, {"passthrough": Passthrough("anthropic", {"top_k": msgspec.Raw(b"5")})}),
    ],
)
async def test_items_equal_the_in_process_mock(
    make_provider: MakeProvider, model: str, fields: dict[str, Any]
) -> None:
    expected = await collect(MockProvider(), model, **fields)
    assert await collect(make_provider(), model, **fields) == expected


async def test_text_usage_and_finish(make_provider: MakeProvider) -> None:
    items = await collect(make_provider(), FAST, max_tokens=7)
    assert len(text_of(items).split()) == 7
    assert items[-2:] == [UsageReport(input_tokens=4, output_tokens=7), Finish("length")]


async def test_a_tool_call_arrives_whole(make_provider: MakeProvider) -> None:
    items = await collect(make_provider(), "mock:tools,tokens=6,tps=0,ttft_ms=0")
    calls = [item for item in items if isinstance(item, ToolCall)]
    assert len(calls) == 1
    assert (calls[0].index, calls[0].name) == (0, "search")
    assert msgspec.json.decode(calls[0].arguments)["limit"] == 6
    assert items[-1] == Finish("tool_calls")


async def test_reasoning_arrives_before_the_text(make_provider: MakeProvider) -> None:
    items = await collect(make_provider(), "mock:tokens=5,reasoning=4,tps=0,ttft_ms=0")
    reasoning = "".join(item.text for item in items if isinstance(item, ReasoningDelta))
    assert len(reasoning.split()) == 4
    assert isinstance(items[0], ReasoningDelta)
    plain = await collect(MockProvider(), "mock:tokens=5,tps=0,ttft_ms=0")
    assert text_of(items) == text_of(plain)
    assert items[-2] == UsageReport(input_tokens=4, output_tokens=9)


async def test_the_request_carries_the_parameters(
    make_provider: MakeProvider, mock_upstream: TestServer
) -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    await collect(make_provider(), FAST, max_tokens=9, temperature=0.25, stop=["x"], tools=tools)
    sent = (await mock_stats(mock_upstream))["last_request"]
    assert sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True}
    assert (sent["max_tokens"], sent["temperature"], sent["stop"]) == (9, 0.25, ["x"])
    assert sent["tools"] == tools
    assert sent["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hello there"},
    ]


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


async def test_an_unknown_model_is_not_found(make_provider: MakeProvider) -> None:
    _, error = await collect_until_error(make_provider(), "gpt-nonexistent")
    assert (error.code, error.status, error.retryable) == ("upstream_not_found", 404, False)
    assert "gpt-nonexistent" in error.message


async def test_rate_limits_are_retried_after_retry_after(
    make_provider: MakeProvider, mock_upstream: TestServer
) -> None:
    model = "mock:tokens=3,tps=0,ttft_ms=0,status=429,retry_after=0.2,fail_first=2"
    started = time.monotonic()
    items = await collect(make_provider(max_retries=2), model)
    assert time.monotonic() - started >= 0.4
    assert items[-1] == Finish("stop")
    assert (await mock_stats(mock_upstream))["requests"] == 3


async def test_retries_give_up_after_max_retries(
    make_provider: MakeProvider, mock_upstream: TestServer
) -> None:
    model = "mock:tokens=3,tps=0,ttft_ms=0,status=429,retry_after=0,fail_first=5"
    _, error = await collect_until_error(make_provider(max_retries=2), model)
    assert (error.code, error.status, error.retryable) == ("upstream_rate_limited", 429, True)
    assert (await mock_stats(mock_upstream))["requests"] == 3


async def test_server_errors_are_retried_with_backoff(
    make_provider: MakeProvider, mock_upstream: TestServer
) -> None:
    items = await collect(
        make_provider(max_retries=1), "mock:tokens=3,tps=0,ttft_ms=0,fail_first=1"
    )
    assert items[-1] == Finish("stop")
    assert (await mock_stats(mock_upstream))["requests"] == 2


async def test_a_disconnect_after_the_first_tokens_is_a_retryable_error(
    make_provider: MakeProvider, mock_upstream: TestServer
) -> None:
    provider = make_provider(max_retries=2)
    items, error = await collect_until_error(
        provider, "mock:tokens=30,tps=0,ttft_ms=0,disconnect_after=5"
    )
    assert len(text_of(items).split()) == 5
    assert (error.code, error.retryable) == ("upstream_connection_error", True)
    assert (await mock_stats(mock_upstream))["requests"] == 1  # never retried mid-stream


async def test_an_error_in_the_stream_is_a_retryable_error(make_provider: MakeProvider) -> None:
    items, error = await collect_until_error(
        make_provider(), "mock:tokens=30,tps=0,ttft_ms=0,fail_after=4"
    )
    assert len(text_of(items).split()) == 4
    assert (error.code, error.retryable) == ("upstream_error", True)
    assert "mock failure after 4 tokens" in error.message


async def test_a_hang_before_the_first_token_is_a_first_token_timeout(
    make_provider: MakeProvider,
) -> None:
    provider = make_provider(first_token_timeout_s=0.3, max_retries=2)
    started = time.monotonic()
    items, error = await collect_until_error(provider, "mock:tokens=5,tps=0,ttft_ms=0,hang_after=0")
    assert items == []
    assert (error.code, error.retryable) == ("upstream_timeout", True)
    assert 0.3 <= time.monotonic() - started < 1.5


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def test_a_refused_connection_is_reported_without_the_address() -> None:
    port = unused_port()
    base_url = f"http://127.0.0.1:{port}/v1"
    settings = UpstreamSettings(name="nowhere", kind="openai", base_url=base_url, max_retries=1)
    provider = OpenAIProvider(settings, API_KEY)
    try:
        items, error = await collect_until_error(provider, FAST)
    finally:
        await provider.close()
    assert [(item.attempt, item.code) for item in items if isinstance(item, Retrying)] == [
        (1, "upstream_connection_error")
    ]
    assert [item for item in items if not isinstance(item, Retrying)] == []  # no output
    assert (error.code, error.retryable, error.status) == ("upstream_connection_error", True, None)
    assert error.message == "the connection to the upstream failed (ConnectError)"
    assert str(port) not in error.message


def stub_provider(base_url: str, api_key: str | None = API_KEY) -> OpenAIProvider:
    settings = UpstreamSettings(name="stub", kind="openai", base_url=base_url, max_retries=0)
    return OpenAIProvider(settings, api_key)


async def test_an_error_answer_that_is_not_json_keeps_its_text() -> None:
    async def bad_gateway(request: web.Request) -> web.Response:
        return web.Response(status=502, text="upstream proxy: bad gateway\n")

    async with stub_upstream(bad_gateway) as stub:
        provider = stub_provider(stub.url("/v1"))
        try:
            items, error = await collect_until_error(provider, "any")
        finally:
            await provider.close()
    assert items == []
    assert (error.code, error.status, error.retryable) == ("upstream_unavailable", 502, True)
    assert error.message == "upstream proxy: bad gateway"


async def test_an_event_that_is_not_json_is_a_bad_response() -> None:
    good = b'data: {"choices": [{"index": 0, "delta": {"content": "hi"}}]}\n\n'
    async with stub_upstream(sse_answer(good, b"data: {not json\n\n")) as stub:
        provider = stub_provider(stub.url("/v1"))
        try:
            items, error = await collect_until_error(provider, "any")
        finally:
            await provider.close()
    assert items == [TextDelta("hi")]
    assert (error.code, error.retryable) == ("upstream_bad_response", True)
    assert error.message == "the upstream sent an event that is not valid JSON"


async def test_an_event_of_the_wrong_shape_names_the_field() -> None:
    async with stub_upstream(sse_answer(b'data: {"choices": [{"index": "0"}]}\n\n')) as stub:
        provider = stub_provider(stub.url("/v1"))
        try:
            _, error = await collect_until_error(provider, "any")
        finally:
            await provider.close()
    assert error.code == "upstream_bad_response"
    assert "$.choices[0].index" in error.message


DONE_STREAM = (
    b'data: {"choices": [{"index": 0, "delta": {"content": "ok"}, "finish_reason": "stop"}]}\r\n'
    b"\r\n",
    b"data: [DONE]\r\n\r\n",
    b'data: {"after": "done is ignored"}\r\n\r\n',
)


@pytest.mark.parametrize(
    ("base_url", "api_key", "authorization"),
    [("/v1", API_KEY, f"Bearer {API_KEY}"), ("/v1/", None, None)],
)
async def test_the_request_url_and_headers(
    base_url: str, api_key: str | None, authorization: str | None
) -> None:
    async with stub_upstream(sse_answer(*DONE_STREAM)) as stub:
        provider = stub_provider(stub.url(base_url), api_key)
        try:
            items = await collect(provider, "any")
        finally:
            await provider.close()
    assert items == [TextDelta("ok"), Finish("stop")]
    [(path, headers)] = stub.requests
    assert path == "/v1/chat/completions"
    assert headers.get("Authorization") == authorization
    assert headers["Content-Type"] == "application/json"
    assert headers["Accept"] == "text/event-stream"


async def test_a_finished_answer_gives_its_connection_back_to_the_pool() -> None:
    async with stub_upstream(sse_answer(*DONE_STREAM)) as stub:
        provider = stub_provider(stub.url("/v1"))
        try:
            for _ in range(3):
                assert (await collect(provider, "any"))[-1] == Finish("stop")
        finally:
            await provider.close()
    assert len(set(stub.client_ports)) == 1


async def test_redirects_are_not_followed_even_to_the_same_origin() -> None:
    async def moved(request: web.Request) -> web.StreamResponse:
        if request.path.startswith("/old/"):
            raise web.HTTPPermanentRedirect(request.path.removeprefix("/old"))
        return await sse_answer(*DONE_STREAM)(request)

    async with stub_upstream(moved) as stub:
        provider = stub_provider(stub.url("/old/v1"))
        try:
            _, error = await collect_until_error(provider, "any")
        finally:
            await provider.close()
    assert (error.code, error.status, error.retryable) == ("upstream_redirect", 308, False)
    assert [path for path, _ in stub.requests] == ["/old/v1/chat/completions"]


async def test_the_connection_pool_bounds_only_connecting_and_ignores_netrc() -> None:
    settings = UpstreamSettings(name="o", kind="openai", base_url="http://x", connect_timeout_s=3)
    session = client_session(settings)
    try:
        assert not session.trust_env  # no per-request proxy lookup, no ~/.netrc
        assert (session.timeout.total, session.timeout.sock_connect) == (None, 3)
        assert session.timeout.connect is None and session.timeout.sock_read is None
    finally:
        await session.close()


async def test_requests_go_through_the_proxy_the_environment_names() -> None:
    async with stub_upstream(sse_answer(*DONE_STREAM)) as proxy:
        upstream = UpstreamSettings(
            name="far", kind="openai", base_url="http://upstream.invalid/v1", max_retries=0
        )
        provider = build_provider(upstream, {"HTTP_PROXY": proxy.url()})
        try:
            assert (await collect(provider, "any"))[-1] == Finish("stop")
        finally:
            await provider.close()
        [(path, headers)] = proxy.requests
        assert path == "/v1/chat/completions"
        assert headers["Host"] == "upstream.invalid"


async def test_no_proxy_sends_requests_directly() -> None:
    async with stub_upstream(sse_answer(*DONE_STREAM)) as upstream_server:
        upstream = UpstreamSettings(
            name="near", kind="openai", base_url=upstream_server.url("/v1"), max_retries=0
        )
        environ = {"HTTP_PROXY": "http://proxy.invalid:3128", "NO_PROXY": "127.0.0.1,localhost"}
        provider = build_provider(upstream, environ)
        try:
            assert (await collect(provider, "any"))[-1] == Finish("stop")
        finally:
            await provider.close()
        assert len(upstream_server.requests) == 1


# --- tool choice and passthrough fields reach the upstream ---------------------------


async def body_sent(**fields: Any) -> bytes:
    """The body the stub upstream received for a request with `fields`."""
    async with stub_upstream(sse_answer(*DONE_STREAM)) as stub:
        provider = stub_provider(stub.url("/v1"))
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
    b'{"model":"any","messages":[{"role":"system","content":"be brief"},'
    b'{"role":"user","content":"hello there"}],"stream":true,'
    b'"stream_options":{"include_usage":true},"max_tokens":5}'
)


async def test_a_request_without_the_new_fields_is_sent_as_before() -> None:
    assert await body_sent(max_tokens=5) == PLAIN_BODY


@pytest.mark.parametrize(
    ("tool_choice", "sent"),
    [
        ("auto", "auto"),
        ("none", "none"),
        ("required", "required"),
        (NamedToolChoice(NamedFunction("f")), {"type": "function", "function": {"name": "f"}}),
    ],
)
async def test_tool_choice_is_sent_as_chat_takes_it(tool_choice: Any, sent: Any) -> None:
    body = msgspec.json.decode(await body_sent(tools=TOOLS, tool_choice=tool_choice))
    assert body["tool_choice"] == sent
    assert "parallel_tool_calls" not in body


@pytest.mark.parametrize("parallel", [False, True])
async def test_parallel_tool_calls_is_sent_as_given(parallel: bool) -> None:
    body = msgspec.json.decode(await body_sent(tools=TOOLS, parallel_tool_calls=parallel))
    assert body["parallel_tool_calls"] is parallel
    assert "tool_choice" not in body


OPENAI_EXTRAS = {
    "top_k": b"40",
    "seed": b"7",
    "logit_bias": b'{"50256": -100}',
    "user": b'"u-1"',
}
RELAYS_OWN = {
    "model": b'"gpt-other"',
    "messages": b"[]",
    "stream": b"false",
    "stream_options": b'{"include_usage": false}',
    "max_tokens": b"1",
    "max_completion_tokens": b"2",  # not sent by relay here, but its name all the same
    "tool_choice": b'"none"',
}


async def test_openai_passthrough_fields_are_merged_and_relays_own_win() -> None:
    fields = {name: msgspec.Raw(raw) for name, raw in {**RELAYS_OWN, **OPENAI_EXTRAS}.items()}
    body = await body_sent(max_tokens=5, passthrough=Passthrough("openai", fields))
    assert body.startswith(PLAIN_BODY[:-1] + b",")
    assert b'"logit_bias":{"50256": -100}' in body  # verbatim
    assert keys_of(body) == keys_of(PLAIN_BODY) + list(OPENAI_EXTRAS)
    assert msgspec.json.decode(body) == {
        **msgspec.json.decode(PLAIN_BODY),
        **{name: msgspec.json.decode(raw) for name, raw in OPENAI_EXTRAS.items()},
    }


async def test_anthropic_passthrough_fields_are_not_sent() -> None:
    fields = {name: msgspec.Raw(raw) for name, raw in OPENAI_EXTRAS.items()}
    body = await body_sent(max_tokens=5, passthrough=Passthrough("anthropic", fields))
    assert body == PLAIN_BODY


# --- cancellation reaches the upstream --------------------------------------------


async def wait_for_disconnects(mock_upstream: TestServer, count: int) -> dict[str, Any]:
    """The mock upstream's stats once it has seen `count` clients leave (polled: it is
    another server)."""
    for _ in range(150):
        stats = await mock_stats(mock_upstream)
        if stats["client_disconnects"] >= count:
            return stats
        await asyncio.sleep(0.02)
    raise AssertionError(f"the upstream saw fewer than {count} client disconnects: {stats}")


async def test_aclose_mid_stream_disconnects_from_the_upstream(
    make_provider: MakeProvider, mock_upstream: TestServer
) -> None:
    stream = make_provider().stream(request("mock:tokens=500,tps=100,ttft_ms=0"))
    first = [await anext(stream) for _ in range(3)]
    assert text_of(first)
    await stream.aclose()
    stats = await wait_for_disconnects(mock_upstream, 1)
    assert (stats["completed"], stats["active"]) == (0, 0)


async def test_cancelling_the_consumer_disconnects_from_the_upstream(
    make_provider: MakeProvider, mock_upstream: TestServer
) -> None:
    provider = make_provider()
    received = asyncio.Event()

    async def consume() -> None:
        async for _ in provider.stream(request("mock:tokens=500,tps=100,ttft_ms=0")):
            received.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(received.wait(), 2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await wait_for_disconnects(mock_upstream, 1)


async def test_the_client_and_its_pool_are_reused(
    make_provider: MakeProvider, mock_upstream: TestServer
) -> None:
    provider = make_provider()
    results = await asyncio.gather(*(collect(provider, FAST) for _ in range(5)))
    assert all(result == results[0] for result in results)
    assert (await mock_stats(mock_upstream))["completed"] == 5


# --- chunks from other OpenAI-compatible servers (pure) -----------------------------


def parse(data: dict[str, Any]) -> Chunk:
    """A chunk decoded the way the provider decodes them."""
    return CHUNK.decode(msgspec.json.encode(data))


def test_usage_only_chunks_and_null_choices_are_tolerated() -> None:
    assembler = ChunkAssembler()
    assert assembler.feed(parse({"choices": None})) == []
    usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    assert assembler.feed(parse({"choices": [], "usage": usage})) == [UsageReport(3, 2)]


def test_reasoning_fields_of_vllm_deepseek_and_openrouter_and_refusals() -> None:
    assembler = ChunkAssembler()
    deltas = [
        {"reasoning_content": "a"},
        {"reasoning": "b", "unknown": 1},
        {"content": "c"},
        {"refusal": "d"},
    ]
    items = [
        item
        for delta in deltas
        for item in assembler.feed(parse({"choices": [{"index": 0, "delta": delta}]}))
    ]
    assert items == [ReasoningDelta("a"), ReasoningDelta("b"), TextDelta("c"), TextDelta("d")]


@pytest.mark.parametrize(
    ("chunk", "expected"),
    [
        ({"choices": [{"delta": {"content": "a"}}]}, [TextDelta("a")]),  # no index: 0
        ({"choices": [{"index": 1, "delta": {"content": "a"}}]}, []),  # a second choice
        ({"choices": [{"index": 0, "delta": {"content": ""}}]}, []),
        (
            {"choices": [{"index": 0, "delta": {"content": "a", "reasoning_content": "r"}}]},
            [ReasoningDelta("r"), TextDelta("a")],
        ),
        ({"choices": [{"index": 0, "delta": {"content": "a", "reasoning": 7}}]}, [TextDelta("a")]),
        (
            {"choices": [{"index": 0, "delta": {"content": "a", "refusal": "no"}}]},
            [TextDelta("a"), TextDelta("no")],
        ),
        (
            {"choices": [{"index": 0, "delta": {"content": "a"}}], "usage": {"prompt_tokens": 1}},
            [TextDelta("a"), UsageReport(1, 0)],
        ),
        (
            {"choices": [{"index": 0, "delta": {"content": "a"}}, {"index": 0, "delta": {}}]},
            [TextDelta("a")],
        ),
    ],
)
def test_a_chunk_of_text_with_anything_beside_it_keeps_all_of_it(
    chunk: dict[str, Any], expected: list[ProviderItem]
) -> None:
    """The chunk that holds only text has a fast path; its neighbours must not take it."""
    assert ChunkAssembler().feed(parse(chunk)) == expected


def test_a_text_chunk_with_the_finish_reason_still_finishes() -> None:
    assembler = ChunkAssembler()
    choice = {"index": 0, "delta": {"content": "end"}, "finish_reason": "length"}
    assert assembler.feed(parse({"choices": [choice]})) == [TextDelta("end")]
    assert assembler.finish() == [Finish("length")]


def test_tool_call_fragments_are_assembled_per_index() -> None:
    fragments = [
        {
            "index": 0,
            "id": "call_a",
            "type": "function",
            "function": {"name": "f", "arguments": ""},
        },
        {
            "index": 1,
            "id": "call_b",
            "type": "function",
            "function": {"name": "g", "arguments": '{"y"'},
        },
        {"index": 0, "function": {"arguments": '{"x": '}},
        {"index": 0, "function": {"arguments": "1}"}},
        {"index": 1, "function": {"arguments": ": 2}"}},
    ]
    assembler = ChunkAssembler()
    items: list[ProviderItem] = []
    for fragment in fragments:
        choice = {"index": 0, "delta": {"tool_calls": [fragment]}}
        items += assembler.feed(parse({"choices": [choice]}))
    assert items == []
    items += assembler.feed(
        parse({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})
    )
    items += assembler.finish()
    assert items == [
        ToolCall(0, "call_a", "f", '{"x": 1}'),
        ToolCall(1, "call_b", "g", '{"y": 2}'),
        Finish("tool_calls"),
    ]


def test_a_stream_that_ends_without_a_finish_reason_is_an_error() -> None:
    assembler = ChunkAssembler()
    assembler.feed(parse({"choices": [{"index": 0, "delta": {"content": "cut"}}]}))
    with pytest.raises(UpstreamError) as caught:
        assembler.finish()
    assert (caught.value.code, caught.value.retryable) == ("upstream_incomplete", True)


# --- building providers from settings ------------------------------------------------


def test_the_api_key_comes_from_the_variable_api_key_env_names() -> None:
    upstream = UpstreamSettings(name="o", kind="openai", base_url="http://x", api_key_env="O_KEY")
    assert read_api_key(upstream, {"O_KEY": " sk-1 "}) == "sk-1"
    assert read_api_key(upstream, {}) is None
    keyless = UpstreamSettings(name="o", kind="openai", base_url="http://x")
    assert read_api_key(keyless, {"O_KEY": "sk-1"}) is None


async def test_build_provider_refuses_an_unset_key_variable() -> None:
    upstream = UpstreamSettings(name="o", kind="openai", base_url="http://x", api_key_env="O_KEY")
    with pytest.raises(ConfigError, match="'O_KEY'"):
        build_provider(upstream, {})
    provider = build_provider(upstream, {"O_KEY": "sk-1"})
    assert isinstance(provider, OpenAIProvider)
    await provider.close()


async def test_list_models_names_the_literal_models_and_their_upstreams() -> None:
    router = ModelRouter(
        [
            UpstreamSettings(name="mock", kind="mock", models=["mock", "mock:*"]),
            UpstreamSettings(
                name="oa", kind="openai", base_url="http://x", models=["gpt-4o*", "o3", "mock"]
            ),
        ]
    )
    try:
        assert router.list_models() == [ModelEntry("mock", "mock"), ModelEntry("o3", "oa")]
    finally:
        await router.close()
