from __future__ import annotations

import itertools
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
from relay.providers.mock import (
    MockOptions,
    MockProvider,
    mock_words,
    parse_mock_model,
    words_in,
    words_seed,
)
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


async def test_the_words_are_pinned_byte_for_byte() -> None:
    """The words made as they are sent are those the mock always made: runs compare."""
    items = await generate("mock:tokens=9,tps=0,ttft_ms=0,seed=4")
    assert text_of(items) == "stone as silver home comes waits reader on carry"
    items = await generate("mock:tokens=12,tps=0,ttft_ms=0,tools")
    query = "bend barley falling rain reader drift songs shores relay quiet clouds over"
    arguments = json.dumps({"query": query, "limit": 12})
    assert items[0] == ToolCall(0, "call_42d98fe375a1be41367558b0", "search", arguments)


def test_tokens_are_capped_and_the_error_names_the_option_and_the_cap() -> None:
    assert parse_mock_model("mock:tokens=100000").tokens == 100_000
    with pytest.raises(ValueError, match=r"tokens must be at most 100000 \(mock_max_tokens\)"):
        parse_mock_model("mock:tokens=40000000")
    capped = MockProvider(max_tokens=50)
    capped.check_model("mock:tokens=50")
    with pytest.raises(ValueError, match=r"at most 50 .*got 51"):
        capped.check_model("mock:tokens=51")


async def test_words_are_made_as_they_are_sent() -> None:
    """The first of the most tokens allowed comes before the others are made: the
    mock holds one word at a time, not the cap's worth."""
    request = GenerationRequest(model="mock:tokens=100000,tps=0,ttft_ms=0", messages=MESSAGES)
    stream = MockProvider().stream(request)
    first = await anext(stream)
    await stream.aclose()
    assert first == TextDelta("bend")


async def test_a_large_prompt_is_planned_off_the_loop_with_the_same_words() -> None:
    many = [Message(role="user", content="hi")] * 2000 + MESSAGES
    request = GenerationRequest(model="mock:tokens=5,tps=0,ttft_ms=0", messages=many)
    items = [item async for item in MockProvider().stream(request)]
    assert items[-2] == UsageReport(input_tokens=2004, output_tokens=5)
    words = itertools.islice(mock_words(words_seed(0, many)), 5)
    assert text_of(items) == " ".join(words)


@pytest.mark.parametrize("cut", [1, 2, 3, 5, 64])
def test_words_are_counted_a_piece_at_a_time_as_in_one_split(
    cut: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("relay.providers.mock.SPLIT_CHARS", cut)
    for text in ("", " ", "one", "two words", "  spaced\tout\n words  ", "a b\u3000c", "abcdef"):
        assert words_in(text) == len(text.split()), (text, cut)
