"""The OpenAI and Anthropic providers continuing an answer, against the mock upstream on a
real socket: what they ask (read back from its `GET /_mock/requests`), and that prefill +
continuation is the in-process mock's uninterrupted text byte for byte."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import msgspec
import pytest
from aiohttp.test_utils import TestServer

from relay.config import UpstreamSettings
from relay.providers.anthropic import AnthropicProvider
from relay.providers.base import Finish, Provider, ProviderItem, TextDelta, UsageReport
from relay.providers.mock import MockProvider
from relay.providers.openai import OpenAIProvider
from relay.providers.router import build_provider
from relay.vocabulary import GenerationRequest, Message, Passthrough

MESSAGES = [Message(role="system", content="be brief"), Message(role="user", content="hello there")]
MODEL = "mock:tokens=20,tps=0,ttft_ms=0,seed=2"

MakeProvider = Callable[..., Provider]


@pytest.fixture
async def make_provider(mock_upstream: TestServer) -> AsyncIterator[MakeProvider]:
    providers: list[Provider] = []

    def make(kind: str, **settings: Any) -> Provider:
        base = "/v1" if kind == "openai" else ""
        upstream = UpstreamSettings(
            name="fake", kind=kind, base_url=str(mock_upstream.make_url(base)), **settings
        )
        provider_type = OpenAIProvider if kind == "openai" else AnthropicProvider
        providers.append(provider_type(upstream, "sk-test"))
        return providers[-1]

    yield make
    for provider in providers:
        await provider.close()


async def recorded(server: TestServer) -> list[dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(server.make_url("/_mock/requests")) as response,
    ):
        assert response.status == 200
        requests: list[dict[str, Any]] = (await response.json())["requests"]
        return requests


async def collect(provider: Provider, prefill: str = "", **fields: Any) -> list[ProviderItem]:
    request = GenerationRequest(MODEL, MESSAGES, prefill=prefill, **fields)
    return [item async for item in provider.stream(request)]


def text_of(items: list[ProviderItem]) -> str:
    return "".join(item.text for item in items if isinstance(item, TextDelta))


async def uninterrupted() -> str:
    return text_of(await collect(MockProvider()))


# Split points: inside a word, just before a space, just after one (the prefill then
# ends in whitespace, which Anthropic refuses and the provider must not send).
def splits(text: str) -> list[str]:
    space = text.index(" ", 10)
    return [text[:3], text[:space], text[: space + 1], text[: len(text) - 1]]


# The mock upstream's Chat endpoint is vLLM's: a final assistant message without the
# flags is a message, not a prefill, so `assistant_prefill` is checked by its body only.
@pytest.mark.parametrize(
    ("kind", "settings"),
    [("openai", {"continuation": "continue_final_message"}), ("anthropic", {})],
)
async def test_prefill_and_continuation_are_the_in_process_text(
    make_provider: MakeProvider, kind: str, settings: dict[str, Any]
) -> None:
    text = await uninterrupted()
    provider = make_provider(kind, **settings)
    assert provider.supports_continuation(MODEL)
    for prefill in splits(text):
        items = await collect(provider, prefill)
        assert prefill + text_of(items) == text, prefill
        assert items[-1] == Finish("stop")


async def test_openai_asks_vllm_to_continue_the_final_assistant_message(
    make_provider: MakeProvider, mock_upstream: TestServer
) -> None:
    text = await uninterrupted()
    prefill = text[:30]
    client_fields = {"continue_final_message": b"false", "echo": b"true", "top_k": b"3"}
    passthrough = Passthrough("openai", {k: msgspec.Raw(v) for k, v in client_fields.items()})
    provider = make_provider("openai", continuation="continue_final_message")
    items = await collect(provider, prefill, passthrough=passthrough)
    body = (await recorded(mock_upstream))[-1]["body"]
    assert body["messages"][-1] == {"role": "assistant", "content": prefill}
    assert body["messages"][:-1] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hello there"},
    ]
    assert body["continue_final_message"] is True  # relay's value wins over a client's
    assert body["add_generation_prompt"] is False
    assert "echo" not in body  # vLLM would repeat the prefill
    assert body["top_k"] == 3  # the client's other fields pass on
    usage = next(item for item in items if isinstance(item, UsageReport))
    assert usage.output_tokens == len([item for item in items if isinstance(item, TextDelta)])


async def test_openai_assistant_prefill_sends_no_flags_and_plain_requests_none(
    make_provider: MakeProvider, mock_upstream: TestServer
) -> None:
    provider = make_provider("openai", continuation="assistant_prefill")
    await collect(provider, "travellers")
    await collect(provider)
    continued, plain = [request["body"] for request in (await recorded(mock_upstream))[-2:]]
    assert continued["messages"][-1] == {"role": "assistant", "content": "travellers"}
    assert "continue_final_message" not in continued and "add_generation_prompt" not in continued
    assert plain["messages"][-1]["role"] == "user"
    assert "continue_final_message" not in plain


async def test_a_plain_request_keeps_a_clients_continue_final_message(
    make_provider: MakeProvider, mock_upstream: TestServer
) -> None:
    """Outside a continuation the names are the client's, passed on as sent."""
    fields = {"add_generation_prompt": msgspec.Raw(b"true")}
    provider = make_provider("openai", continuation="continue_final_message")
    await collect(provider, passthrough=Passthrough("openai", fields))
    assert (await recorded(mock_upstream))[-1]["body"]["add_generation_prompt"] is True


async def test_anthropic_sends_the_prefill_without_trailing_whitespace(
    make_provider: MakeProvider, mock_upstream: TestServer
) -> None:
    text = await uninterrupted()
    prefill = text[: text.index(" ", 10) + 1] + "\n"  # ends in whitespace twice over
    items = await collect(make_provider("anthropic"), prefill)
    body = (await recorded(mock_upstream))[-1]["body"]
    assert body["messages"][-1] == {
        "role": "assistant",
        "content": [{"type": "text", "text": prefill.rstrip()}],
    }
    # The model starts again with the one space it left off at; the stored "\n" stays.
    assert text_of(items) == text[len(prefill) - 1 :]


async def test_a_whitespace_only_prefill_sends_no_assistant_message(
    make_provider: MakeProvider, mock_upstream: TestServer
) -> None:
    await collect(make_provider("anthropic"), "  ")
    body = (await recorded(mock_upstream))[-1]["body"]
    assert body["messages"][-1]["role"] == "user"


async def test_which_upstreams_continue() -> None:
    built: list[Provider] = []

    def continues(kind: str, **settings: Any) -> bool:
        base_url = "" if kind == "mock" else "http://127.0.0.1:9"
        upstream = UpstreamSettings(name="u", kind=kind, base_url=base_url, **settings)
        built.append(build_provider(upstream))
        return built[-1].supports_continuation("a-model")

    assert not continues("openai")  # api.openai.com cannot: the default is none
    assert continues("openai", continuation="continue_final_message")
    assert continues("openai", continuation="assistant_prefill")
    assert continues("anthropic")
    assert not continues("anthropic", continuation="none")  # Claude 4.6 and later
    assert continues("mock")
    assert not continues("mock", continuation="none")  # to test a restart with the mock
    for provider in built:
        await provider.close()


async def test_a_prefill_to_an_upstream_that_cannot_continue_is_a_bug_not_a_request(
    make_provider: MakeProvider, mock_upstream: TestServer
) -> None:
    provider = make_provider("openai")
    with pytest.raises(ValueError, match="does not continue answers"):
        await collect(provider, "some text")
    assert await recorded(mock_upstream) == []


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_a_clients_own_prefill_and_the_answer_so_far_are_one_message(
    make_provider: MakeProvider, mock_upstream: TestServer, kind: str
) -> None:
    """The client's request ended with an assistant message (its prefill), which the answer
    continues: the continuation request ends with that text and the answer's, as one."""
    provider = make_provider(kind, continuation="assistant_prefill")
    messages = [*MESSAGES, Message(role="assistant", content="Here:")]
    request = GenerationRequest(MODEL, messages, prefill=" the answer")
    _ = [item async for item in provider.stream(request)]
    body = (await recorded(mock_upstream))[-1]["body"]
    last = body["messages"][-1]
    assert last["role"] == "assistant" and body["messages"][-2]["role"] == "user"
    text = last["content"] if kind == "openai" else last["content"][0]["text"]
    assert text == "Here: the answer"


async def test_the_mock_made_not_to_continue_refuses_a_prefill() -> None:
    provider = MockProvider(continues=False)
    with pytest.raises(ValueError, match="does not continue answers"):
        await collect(provider, "some text")
    assert text_of(await collect(provider)) == await uninterrupted()


@pytest.mark.parametrize(
    ("kind", "continuation"),
    [("openai", "continue_final_message"), ("anthropic", "assistant_prefill")],
)
async def test_every_split_of_a_short_answer_continues_exactly(
    make_provider: MakeProvider, kind: str, continuation: str
) -> None:
    """Over the wire, at every character: inside words, before and after their spaces."""
    model = "mock:tokens=6,tps=0,ttft_ms=0,seed=9"
    request = GenerationRequest(model, MESSAGES)
    text = text_of([item async for item in MockProvider().stream(request)])
    provider = make_provider(kind, continuation=continuation)
    for cut in range(len(text) + 1):
        continued = GenerationRequest(model, MESSAGES, prefill=text[:cut])
        items = [item async for item in provider.stream(continued)]
        assert text[:cut] + text_of(items) == text, cut
