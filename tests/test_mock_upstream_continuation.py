"""`relay mock-upstream` continuing an answer, asked by the official SDKs over a real socket:
an Anthropic assistant prefill, and OpenAI's final assistant message with vLLM's
`continue_final_message`. The continuation must equal the in-process mock's, and the
server must record what it was asked (`GET /_mock/requests`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anthropic
import openai
import pytest
from aiohttp.test_utils import TestServer

from relay.mock_upstream import RECORDED_REQUESTS
from relay.providers.base import TextDelta, UsageReport
from relay.providers.mock import MockProvider, count_words, words_in
from relay.vocabulary import GenerationRequest, Message
from tests.mock_upstream_server import mock_upstream_server

MODEL = "mock:tokens=16,tps=0,ttft_ms=0,seed=5"
QUESTION = "tell me about foxes"
RELAY_MESSAGES = [Message(role="user", content=QUESTION)]
CONTINUE = {"continue_final_message": True, "add_generation_prompt": False}


@pytest.fixture
async def server() -> AsyncIterator[TestServer]:
    server = mock_upstream_server()
    await server.start_server()
    yield server
    await server.close()


@pytest.fixture
async def openai_client(server: TestServer) -> AsyncIterator[openai.AsyncOpenAI]:
    url = str(server.make_url("/v1"))
    async with openai.AsyncOpenAI(base_url=url, api_key="x", max_retries=0) as client:
        yield client


@pytest.fixture
async def anthropic_client(server: TestServer) -> AsyncIterator[anthropic.AsyncAnthropic]:
    url = str(server.make_url("")).rstrip("/")
    async with anthropic.AsyncAnthropic(base_url=url, api_key="x", max_retries=0) as client:
        yield client


async def in_process(model: str = MODEL, prefill: str = "") -> tuple[str, UsageReport]:
    request = GenerationRequest(model, RELAY_MESSAGES, prefill=prefill)
    items = [item async for item in MockProvider().stream(request)]
    text = "".join(item.text for item in items if isinstance(item, TextDelta))
    return text, next(item for item in items if isinstance(item, UsageReport))


async def recorded(server: TestServer) -> list[dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(server.make_url("/_mock/requests")) as response,
    ):
        requests: list[dict[str, Any]] = (await response.json())["requests"]
        return requests


def conversation(prefill: str) -> list[Any]:
    return [{"role": "user", "content": QUESTION}, {"role": "assistant", "content": prefill}]


async def test_openai_sdk_continues_the_final_assistant_message(
    server: TestServer, openai_client: openai.AsyncOpenAI
) -> None:
    text, _ = await in_process()
    prefill = text[: len(text) // 2]
    stream = await openai_client.chat.completions.create(
        model=MODEL,
        messages=conversation(prefill),
        stream=True,
        stream_options={"include_usage": True},
        extra_body=CONTINUE,
    )
    chunks = [chunk async for chunk in stream]
    pieces = [chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices]
    assert prefill + "".join(pieces) == text
    _, usage = await in_process(prefill=prefill)
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (
        usage.input_tokens,
        usage.output_tokens,
    )
    assert usage.input_tokens == count_words(RELAY_MESSAGES) + words_in(prefill)
    [asked] = await recorded(server)
    assert asked["path"] == "/v1/chat/completions"
    assert asked["body"]["messages"][-1] == {"role": "assistant", "content": prefill}
    assert asked["body"]["continue_final_message"] is True


async def test_openai_sdk_without_stream_continues_too(openai_client: openai.AsyncOpenAI) -> None:
    text, _ = await in_process()
    prefill = text[:7]
    completion = await openai_client.chat.completions.create(
        model=MODEL, messages=conversation(prefill), extra_body=CONTINUE
    )
    assert prefill + (completion.choices[0].message.content or "") == text


async def test_openai_without_the_flag_a_final_assistant_message_is_a_message(
    openai_client: openai.AsyncOpenAI,
) -> None:
    """As vLLM does by default: a new answer, to a conversation that holds that message."""
    completion = await openai_client.chat.completions.create(
        model=MODEL, messages=conversation("an earlier answer")
    )
    request = GenerationRequest(
        MODEL, [*RELAY_MESSAGES, Message(role="assistant", content="an earlier answer")]
    )
    items = [item async for item in MockProvider().stream(request)]
    expected = "".join(item.text for item in items if isinstance(item, TextDelta))
    assert completion.choices[0].message.content == expected


@pytest.mark.parametrize(
    ("messages", "flags", "problem"),
    [
        (conversation("the"), {"continue_final_message": True}, "add_generation_prompt"),
        ([{"role": "user", "content": QUESTION}], CONTINUE, "final message to be an assistant"),
    ],
)
async def test_openai_continuations_vllm_refuses_are_refused(
    openai_client: openai.AsyncOpenAI, messages: list[Any], flags: dict[str, Any], problem: str
) -> None:
    with pytest.raises(openai.BadRequestError, match=problem):
        await openai_client.chat.completions.create(
            model=MODEL, messages=messages, extra_body=flags
        )


async def test_anthropic_sdk_continues_an_assistant_prefill(
    server: TestServer, anthropic_client: anthropic.AsyncAnthropic
) -> None:
    text, _ = await in_process()
    prefill = text[: text.index(" ", 5)]  # Anthropic refuses one that ends in whitespace
    async with anthropic_client.messages.stream(
        model=MODEL, max_tokens=100, messages=conversation(prefill)
    ) as stream:
        continuation = "".join([piece async for piece in stream.text_stream])
        message = await stream.get_final_message()
    assert prefill + continuation == text
    _, usage = await in_process(prefill=prefill)
    assert (message.usage.input_tokens, message.usage.output_tokens) == (
        usage.input_tokens,
        usage.output_tokens,
    )
    [asked] = await recorded(server)
    assert asked["path"] == "/v1/messages"
    assert asked["body"]["messages"][-1] == {"role": "assistant", "content": prefill}


async def test_anthropic_sdk_without_stream_continues_too(
    anthropic_client: anthropic.AsyncAnthropic,
) -> None:
    text, _ = await in_process()
    prefill = text[:4]
    message = await anthropic_client.messages.create(
        model=MODEL, max_tokens=100, messages=conversation(prefill)
    )
    [block] = message.content
    assert block.type == "text" and prefill + block.text == text


async def test_anthropic_refuses_a_prefill_ending_in_whitespace(
    anthropic_client: anthropic.AsyncAnthropic,
) -> None:
    with pytest.raises(anthropic.BadRequestError, match="trailing whitespace"):
        await anthropic_client.messages.create(
            model=MODEL, max_tokens=100, messages=conversation("the quick ")
        )


async def test_a_continuation_has_no_reasoning(anthropic_client: anthropic.AsyncAnthropic) -> None:
    """Reasoning comes before an answer; a continuation goes on with the answer."""
    model = MODEL + ",reasoning=4"
    text, _ = await in_process(MODEL)
    message = await anthropic_client.messages.create(
        model=model, max_tokens=100, messages=conversation(text[:9])
    )
    assert [block.type for block in message.content] == ["text"]


async def test_the_record_keeps_the_last_requests_and_reset_forgets_them(
    server: TestServer, openai_client: openai.AsyncOpenAI
) -> None:
    for index in range(RECORDED_REQUESTS + 3):
        await openai_client.chat.completions.create(
            model=f"mock:tokens=1,tps=0,ttft_ms=0,seed={index}",
            messages=[{"role": "user", "content": "hi"}],
        )
    requests = await recorded(server)
    assert len(requests) == RECORDED_REQUESTS
    assert requests[-1]["body"]["model"].endswith(f"seed={RECORDED_REQUESTS + 2}")
    assert requests[0]["body"]["model"].endswith("seed=3")
    async with (
        aiohttp.ClientSession() as http,
        http.post(server.make_url("/_mock/reset")) as response,
    ):
        assert response.status == 204
    assert await recorded(server) == []
