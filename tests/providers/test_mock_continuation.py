"""The mock model continuing an answer from a prefill (`GenerationRequest.prefill`).

The property every takeover test leans on: for any split of the mock's uninterrupted text,
prefill + continuation is that text byte for byte, and the continuation's usage counts only
what it sent.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.errors import UpstreamError
from relay.providers.base import Finish, ProviderItem, TextDelta, ToolCall, UsageReport
from relay.providers.mock import MockProvider, count_words, plan_generation, words_in
from relay.vocabulary import GenerationRequest, Message

MESSAGES = [Message(role="system", content="be brief"), Message(role="user", content="hello there")]
FAST = "tps=0,ttft_ms=0"


def request(model: str, prefill: str = "", max_tokens: int | None = None) -> GenerationRequest:
    return GenerationRequest(model, MESSAGES, max_tokens=max_tokens, prefill=prefill)


def planned_tokens(model: str, prefill: str = "", max_tokens: int | None = None) -> list[str]:
    """What the mock sends for the request, token by token, without pacing (pure)."""
    plan = plan_generation(request(model, prefill, max_tokens))
    return list(itertools.islice(plan.tokens(), plan.count))


def whole_tokens(tokens: list[str], prefill: str) -> int:
    """How many of the uninterrupted answer's tokens `prefill` (a prefix of it) holds whole."""
    lengths = itertools.accumulate(len(token) for token in tokens)
    return sum(1 for length in lengths if length <= len(prefill))


async def generate(
    model: str, prefill: str = "", max_tokens: int | None = None
) -> list[ProviderItem]:
    return [item async for item in MockProvider().stream(request(model, prefill, max_tokens))]


def text_of(items: list[ProviderItem]) -> str:
    return "".join(item.text for item in items if isinstance(item, TextDelta))


def usage_of(items: list[ProviderItem]) -> UsageReport:
    return next(item for item in items if isinstance(item, UsageReport))


@settings(max_examples=150, deadline=None)
@given(
    tokens=st.integers(0, 60),
    seed=st.integers(-3, 3),
    cut=st.floats(0, 1),
    limit=st.one_of(st.none(), st.integers(0, 70)),
)
def test_prefill_and_continuation_are_the_uninterrupted_text(
    tokens: int, seed: int, cut: float, limit: int | None
) -> None:
    model = f"mock:tokens={tokens},seed={seed}"
    whole = planned_tokens(model, max_tokens=limit)
    text = "".join(whole)
    prefill = text[: round(cut * len(text))]
    sent = whole_tokens(whole, prefill)
    # A real upstream's max_tokens caps what it adds; the caller passes what is left.
    left = None if limit is None else limit - sent
    continuation = planned_tokens(model, prefill, left)
    assert prefill + "".join(continuation) == text
    assert len(continuation) == len(whole) - sent  # the word cut in two counts once more
    if not prefill:
        assert continuation == whole


@pytest.mark.parametrize(
    "model",
    [
        f"mock:tokens=12,{FAST}",
        f"mock:tokens=40,seed=7,{FAST}",
        "mock:tokens=25,tps=500,ttft_ms=5",
        f"mock:tokens=1,{FAST}",
    ],
)
@pytest.mark.parametrize("fraction", [0.0, 0.01, 0.3, 0.5, 0.99, 1.0])
async def test_the_provider_streams_the_rest_with_usage_of_the_continuation(
    model: str, fraction: float
) -> None:
    uninterrupted = await generate(model)
    text = text_of(uninterrupted)
    prefill = text[: round(fraction * len(text))]
    items = await generate(model, prefill)
    deltas = [item for item in items if isinstance(item, TextDelta)]
    assert prefill + text_of(items) == text
    usage = usage_of(items)
    assert usage.output_tokens == len(deltas)
    assert usage.input_tokens == count_words(MESSAGES) + words_in(prefill)
    assert items[-1] == Finish("stop")


async def test_a_continuation_cut_by_max_tokens_finishes_with_length() -> None:
    model = f"mock:tokens=30,{FAST}"
    text = text_of(await generate(model, max_tokens=20))
    prefill = " ".join(text.split()[:8])
    items = await generate(model, prefill, max_tokens=12)
    assert prefill + text_of(items) == text
    assert usage_of(items).output_tokens == 12
    assert items[-1] == Finish("length")


async def test_a_prefill_that_is_not_the_answer_continues_from_its_word_count() -> None:
    model = f"mock:tokens=10,{FAST}"
    words = text_of(await generate(model)).split()
    items = await generate(model, "an answer of six words here")
    assert text_of(items) == "".join(" " + word for word in words[6:])
    assert usage_of(items).output_tokens == 4
    ending_in_space = await generate(model, "an answer of six words here\n")
    assert text_of(ending_in_space) == " ".join(words[6:])  # no second space


async def test_a_prefill_longer_than_the_answer_gets_nothing_more() -> None:
    model = f"mock:tokens=5,{FAST}"
    text = text_of(await generate(model))
    items = await generate(model, text + " and then some more words")
    assert text_of(items) == ""
    assert usage_of(items).output_tokens == 0
    assert items[-1] == Finish("stop")


async def test_the_seed_does_not_change_with_the_prefill() -> None:
    """The prefill is not one of the messages: the answer it continues stays the same."""
    text = text_of(await generate(f"mock:tokens=20,{FAST}"))
    first = text.split()[0]
    assert text_of(await generate(f"mock:tokens=20,{FAST}", first)) == text[len(first) :]


async def test_tools_mode_makes_the_same_tool_call_from_a_prefill() -> None:
    model = f"mock:tokens=6,tools,{FAST}"
    uninterrupted = await generate(model)
    items = await generate(model, "some stored text")
    calls = [item for item in items if isinstance(item, ToolCall)]
    assert calls == [item for item in uninterrupted if isinstance(item, ToolCall)]
    assert text_of(items) == ""
    assert usage_of(items).input_tokens == count_words(MESSAGES) + 3
    assert items[-1] == Finish("tool_calls")


def words_prefill(text: str, count: int) -> str:
    return " ".join(text.split()[:count])


async def test_a_fault_the_answer_already_met_is_not_met_again() -> None:
    """`fail_after=N` is at the answer's word N: a continuation from word N or later is
    past it (the interrupted call met it), one from before it meets it at word N."""
    model = f"mock:tokens=12,fail_after=6,{FAST}"
    text = text_of(await generate(f"mock:tokens=12,{FAST}"))
    for sent in (6, 9):
        prefill = words_prefill(text, sent)
        assert prefill + text_of(await generate(model, prefill)) == text
    with pytest.raises(UpstreamError, match="after 2 tokens"):
        await generate(model, words_prefill(text, 4))


async def test_a_hang_the_answer_already_met_does_not_hang_the_continuation() -> None:
    """The takeover test's pattern: instance A hangs at word 5 (and is killed there); the
    continuation from those 5 words runs to the end."""
    text = text_of(await generate(f"mock:tokens=12,{FAST}"))
    prefill = words_prefill(text, 5)
    items = await generate(f"mock:tokens=12,hang_after=5,{FAST}", prefill)
    assert prefill + text_of(items) == text


def test_the_continuation_is_planned_without_the_prefills_words_again() -> None:
    plan = plan_generation(request(f"mock:tokens=12,{FAST}", "x y z"))
    assert plan.resume is not None
    assert (plan.resume.words, plan.resume.start, plan.count) == (3, 3, 9)
