"""The built-in `mock` model: deterministic words at a chosen pace, with failure modes.

`mock:tokens=200,tps=80,ttft_ms=50` — the options are in CONTRACT.md. Output depends
only on the options and the messages, so two runs can be compared byte for byte.
Each token is one word; the first has no leading space, the others one.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import random
from collections.abc import AsyncGenerator, AsyncIterator, Sequence

import msgspec

from relay.errors import UpstreamError
from relay.providers.base import (
    Finish,
    Provider,
    ProviderItem,
    TextDelta,
    ToolCall,
    UsageReport,
)
from relay.vocabulary import GenerationRequest, Message

MOCK_MODEL = "mock"

WORDS = tuple(
    (
        "the quick brown fox jumps over a lazy dog while streams of tokens flow through "
        "relay to every reader who waits patiently for light rain falling on quiet "
        "hills where rivers bend and old stone bridges carry travellers home before "
        "night comes softly across fields of golden wheat and silver barley under a "
        "wide open sky bright morning clouds drift slowly east as birds sing songs of "
        "distant shores"
    ).split()
)


class MockOptions(msgspec.Struct, forbid_unknown_fields=True):
    tokens: int = 60
    tps: float = 40.0
    ttft_ms: float = 100.0
    fail_after: int | None = None
    hang_after: int | None = None
    tools: bool = False
    seed: int = 0


_OPTION_NAMES = tuple(MockOptions.__struct_fields__)


def parse_mock_model(model: str) -> MockOptions:
    """Options from `mock` or `mock:k=v,…`; ValueError names a bad option."""
    name, _, spec = model.partition(":")
    if name != MOCK_MODEL:
        raise ValueError(f"model {model!r} is not a mock model; use 'mock' or 'mock:OPTIONS'")
    values = dict(_parse_option(part) for part in spec.split(",") if part.strip())
    options = msgspec.convert(values, MockOptions)
    _check_ranges(options)
    return options


def _parse_option(part: str) -> tuple[str, int | float | bool]:
    key, sep, raw = part.partition("=")
    key = key.strip()
    if key not in _OPTION_NAMES:
        raise ValueError(f"unknown mock option {key!r}; allowed: {', '.join(_OPTION_NAMES)}")
    if key == "tools":
        return key, _parse_bool(raw.strip()) if sep else True
    try:
        return key, float(raw) if key in ("tps", "ttft_ms") else int(raw)
    except ValueError:
        raise ValueError(f"mock option {key} must be a number, got {raw!r}") from None


def _parse_bool(raw: str) -> bool:
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"mock option tools must be true or false, got {raw!r}")


def _check_ranges(options: MockOptions) -> None:
    for key in ("tokens", "tps", "ttft_ms", "fail_after", "hang_after"):
        value = getattr(options, key)
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise ValueError(f"mock option {key} must be a finite number >= 0, got {value}")


def count_words(messages: Sequence[Message]) -> int:
    """The mock's input token count: words in all messages."""
    return sum(len(message.text().split()) for message in messages)


def mock_words(options: MockOptions, messages: Sequence[Message], count: int) -> list[str]:
    """`count` words, a pure function of the seed and the messages."""
    material = json.dumps([options.seed, [m.role + ":" + m.text() for m in messages]])
    rng = random.Random(hashlib.sha256(material.encode()).digest())
    return [rng.choice(WORDS) for _ in range(count)]


def mock_tool_call(words: list[str]) -> ToolCall:
    arguments = json.dumps({"query": " ".join(words), "limit": len(words)})
    call_id = "call_" + hashlib.sha256(arguments.encode()).hexdigest()[:24]
    return ToolCall(index=0, id=call_id, name="search", arguments=arguments)


class MockPlan(msgspec.Struct):
    """What one mock generation will do, decided before any token is sent."""

    options: MockOptions
    words: list[str]
    input_tokens: int
    finish_reason: str


def plan_generation(request: GenerationRequest) -> MockPlan:
    options = parse_mock_model(request.model)
    count = options.tokens
    finish = "tool_calls" if options.tools else "stop"
    if request.max_tokens is not None and request.max_tokens < count:
        count, finish = request.max_tokens, "length"
    words = mock_words(options, request.messages, count)
    return MockPlan(options, words, count_words(request.messages), finish)


async def pace_tokens(options: MockOptions, count: int) -> AsyncIterator[int]:
    """Yield 0 … count-1 on the mock's schedule, honouring fail_after and hang_after.

    Token i is due at ttft + i / tps from the start, so a slow consumer does not make
    the mock drift. Shared by the in-process provider and the standalone mock upstream.
    """
    loop = asyncio.get_running_loop()
    start = loop.time() + options.ttft_ms / 1000
    await asyncio.sleep(options.ttft_ms / 1000)
    for index in range(count):
        if options.fail_after is not None and index >= options.fail_after:
            raise UpstreamError(
                "upstream_error", f"mock failure after {index} tokens", retryable=True
            )
        if options.hang_after is not None and index >= options.hang_after:
            await asyncio.Future()  # silent forever, until cancelled
        await _sleep_until(loop, start + index / options.tps if options.tps else None, index)
        yield index


async def _sleep_until(loop: asyncio.AbstractEventLoop, due: float | None, index: int) -> None:
    if due is not None:
        await asyncio.sleep(max(0.0, due - loop.time()))
    elif index % 64 == 0:
        await asyncio.sleep(0)  # as fast as possible, but let other tasks run


class MockProvider(Provider):
    def check_model(self, model: str) -> None:
        parse_mock_model(model)

    async def stream(self, request: GenerationRequest) -> AsyncGenerator[ProviderItem, None]:
        plan = plan_generation(request)
        if plan.options.tools:
            async for _ in pace_tokens(plan.options, 1 if plan.words else 0):
                pass
            yield mock_tool_call(plan.words)
        else:
            async for index in pace_tokens(plan.options, len(plan.words)):
                yield TextDelta(plan.words[index] if index == 0 else " " + plan.words[index])
        yield UsageReport(input_tokens=plan.input_tokens, output_tokens=len(plan.words))
        yield Finish(plan.finish_reason)
