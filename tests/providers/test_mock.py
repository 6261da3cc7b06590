from __future__ import annotations

import json

import pytest

from relay.errors import UpstreamError
from relay.providers.base import (
    Finish,
    ProviderItem,
    TextDelta,
    ToolCall,
    UsageReport,
)
from relay.providers.mock import MockOptions, MockProvider, parse_mock_model
from relay.vocabulary import GenerationRequest, Message

MESSAGES = [Message(role="system", content="be brief"), Message(role="user", content="hello there")]


async def generate(model: str, max_tokens: int | None = None) -> list[ProviderItem]:
    request = GenerationRequest(model=model, messages=MESSAGES, max_tokens=max_tokens)
    return [item async for item in MockProvider().stream(request)]


def text_of(items: list[ProviderItem]) -> str:
    return "".join(item.text for item in items if isinstance(item, TextDelta))


def test_options_parse_with_defaults() -> None:
    assert parse_mock_model("mock") == MockOptions()
    options = parse_mock_model("mock:tokens=200,tps=80,ttft_ms=50,tools,seed=3")
    assert (options.tokens, options.tps, options.ttft_ms, options.tools, options.seed) == (
        200,
        80.0,
        50.0,
        True,
        3,
    )


@pytest.mark.parametrize(
    ("model", "problem"),
    [
        ("mock:bogus=1", "unknown mock option 'bogus'"),
        ("mock:tokens=many", "tokens must be a number"),
        ("mock:tps=-5", "tps must be a finite number >= 0"),
        ("mock:ttft_ms=nan", "ttft_ms must be a finite number >= 0"),
        ("mock:tools=maybe", "tools must be true or false"),
        ("mockery", "not a mock model"),
    ],
)
def test_bad_options_name_the_problem(model: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_mock_model(model)


async def test_output_is_words_and_deterministic() -> None:
    first = await generate("mock:tokens=25,tps=0,ttft_ms=0")
    second = await generate("mock:tokens=25,tps=0,ttft_ms=0")
    assert first == second
    words = text_of(first).split(" ")
    assert len(words) == 25 and all(words)
    assert first[-2] == UsageReport(input_tokens=4, output_tokens=25)
    assert first[-1] == Finish("stop")


async def test_seed_and_messages_vary_the_text() -> None:
    base = text_of(await generate("mock:tokens=20,tps=0,ttft_ms=0"))
    seeded = text_of(await generate("mock:tokens=20,tps=0,ttft_ms=0,seed=9"))
    assert base != seeded


async def test_max_tokens_cuts_with_finish_reason_length() -> None:
    items = await generate("mock:tokens=50,tps=0,ttft_ms=0", max_tokens=7)
    assert len(text_of(items).split(" ")) == 7
    assert items[-2] == UsageReport(input_tokens=4, output_tokens=7)
    assert items[-1] == Finish("length")


async def test_tools_emit_one_complete_tool_call() -> None:
    items = await generate("mock:tokens=5,tps=0,ttft_ms=0,tools")
    calls = [item for item in items if isinstance(item, ToolCall)]
    assert len(calls) == 1 and calls[0].name == "search"
    assert json.loads(calls[0].arguments)["limit"] == 5
    assert items[-1] == Finish("tool_calls")


async def test_fail_after_raises_a_retryable_upstream_error() -> None:
    request = GenerationRequest(
        model="mock:tokens=10,tps=0,ttft_ms=0,fail_after=3", messages=MESSAGES
    )
    seen: list[ProviderItem] = []
    with pytest.raises(UpstreamError) as failure:
        async for item in MockProvider().stream(request):
            seen.append(item)
    assert len(seen) == 3 and failure.value.retryable
