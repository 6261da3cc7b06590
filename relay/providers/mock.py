"""The built-in `mock` model: deterministic words at a chosen pace, with failure modes.

`mock:tokens=200,tps=80,ttft_ms=50` — the options are in CONTRACT.md. Output depends
only on the options and the messages, so two runs can be compared byte for byte.
Each token is one word; the first has no leading space, the others one.

Words are made as they are sent, never all before the first, and `tokens` is capped
(`TokenCap`, an upstream's `mock_max_tokens`): what one request makes relay do between
two awaits does not grow with the number it asks for.

A request with a `prefill` (the answer so far) gets the rest of the answer the same
request makes uninterrupted (`Resume`), so prefill + continuation is that text byte for
byte; docs/api.md ("The mock model") says what a continuation counts and when it fails.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import itertools
import json
import math
import random
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Sequence
from typing import Any

import msgspec

from relay.config import MOCK_MAX_TOKENS
from relay.errors import UpstreamError
from relay.off_loop import MANY_MESSAGES, off_loop
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

# Words made between two awaits when a whole answer is needed at once (a tool call).
WORDS_PER_SLICE = 4096
# A prompt this long is planned (its words counted, it is hashed) off the event loop,
# and its text split into words a piece of this many characters at a time.
LARGE_PROMPT_CHARS = 256 * 1024
SPLIT_CHARS = 64 * 1024


class TokenCap(msgspec.Struct, frozen=True):
    """The most words one mock generation may make, and the setting that says so."""

    limit: int = MOCK_MAX_TOKENS
    setting: str = "mock_max_tokens"

    def check(self, option: str, value: int) -> None:
        """A ValueError naming the option, its value and the cap when it is over it."""
        if value > self.limit:
            raise ValueError(
                f"mock option {option} must be at most {self.limit} ({self.setting}), got {value}"
            )


DEFAULT_CAP = TokenCap()


def parse_mock_model(model: str, cap: TokenCap = DEFAULT_CAP) -> MockOptions:
    """Options from `mock` or `mock:k=v,…`; ValueError names a bad option."""
    name, _, spec = model.partition(":")
    if name != MOCK_MODEL:
        raise ValueError(f"model {model!r} is not a mock model; use 'mock' or 'mock:OPTIONS'")
    values = dict(_parse_option(part) for part in spec.split(",") if part.strip())
    options = msgspec.convert(values, MockOptions)
    _check_ranges(options)
    cap.check("tokens", options.tokens)
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
    return sum(words_in(message.text()) for message in messages)


def words_in(text: str) -> int:
    """`len(text.split())`, a piece at a time: splitting a long text at once is one C
    call that no other thread (the event loop's) can interrupt."""
    count = 0
    for start in range(0, len(text), SPLIT_CHARS):
        piece = text[start : start + SPLIT_CHARS]
        count += len(piece.split())
        if start and not text[start - 1].isspace() and not piece[0].isspace():
            count -= 1  # a word across the cut, counted in both pieces
    return count


def words_seed(seed: int, messages: Sequence[Message]) -> bytes:
    """What the mock's words are a pure function of: the seed and the messages."""
    material = json.dumps([seed, [m.role + ":" + m.text() for m in messages]])
    return hashlib.sha256(material.encode()).digest()


def mock_words(seed: bytes, state: RandomState | None = None) -> Iterator[str]:
    """The mock's words from `words_seed`, without end, made as they are taken; from
    where `state` (of a generator of the same seed, `Resume.state`) had got to."""
    rng = random.Random(seed)
    if state is not None:
        rng.setstate(state)
    while True:
        yield rng.choice(WORDS)


def large_prompt(messages: Sequence[Message], prefill: str = "") -> bool:
    """Whether counting and hashing the messages (and walking the prefill) is worth a
    worker thread."""
    if len(messages) > MANY_MESSAGES:
        return True
    chars = len(prefill) + sum(len(message.text()) for message in messages)
    return chars > LARGE_PROMPT_CHARS


def spaced(words: Iterator[str], first: str = "") -> Iterator[str]:
    """The words as tokens: each after a space, but the first after `first` (none)."""
    for index, word in enumerate(words):
        yield (first if index == 0 else " ") + word


RandomState = tuple[Any, ...]  # `random.Random.getstate()`


class Resume(msgspec.Struct, frozen=True):
    """Where a continuation starts in the mock's answer, from the prefill it is handed.

    A prefill that is a prefix of the answer (at any character) resumes right after it:
    the rest of a word it ends inside (`head`), then the words after. Any other prefill
    resumes at its own word count (as far as the answer goes), each word after a space
    but the first when the prefill ends in one. Never the answer's words again."""

    words: int  # the answer's words the prefill holds, whole or in part
    state: RandomState  # the word generator's, after those words
    head: str = ""  # the rest of the word the prefill ends inside, sent first
    first: str = " "  # what goes before the first word after the head

    @property
    def start(self) -> int:
        """The answer's word the continuation's first token belongs to."""
        return self.words - 1 if self.head else self.words


def resume_point(seed: bytes, prefill: str, total: int) -> Resume:
    """Where the answer of `total` words from `seed` continues after `prefill`."""
    return _prefix_resume(seed, prefill, total) or _counted_resume(seed, prefill, total)


def _prefix_resume(seed: bytes, prefill: str, total: int) -> Resume | None:
    """The resume point when `prefill` is a prefix of the answer, else None."""
    rng, position = random.Random(seed), 0
    for index in range(total + 1):
        remaining = len(prefill) - position
        if remaining == 0:
            return Resume(index, rng.getstate())
        if index == total:
            return None
        token = (" " if index else "") + rng.choice(WORDS)
        if prefill.startswith(token, position):
            position += len(token)
        elif remaining < len(token) and token.startswith(prefill[position:]):
            return Resume(index + 1, rng.getstate(), head=token[remaining:])
        else:
            return None
    return None


def _counted_resume(seed: bytes, prefill: str, total: int) -> Resume:
    """The resume point of a prefill that is not the answer's: at its word count."""
    words = min(words_in(prefill), total)
    rng = random.Random(seed)
    for _ in range(words):
        rng.choice(WORDS)
    first = "" if not prefill or prefill[-1].isspace() else " "
    return Resume(words, rng.getstate(), first=first)


def fault_index(after: int | None, resume: Resume | None) -> int | None:
    """Where among a response's tokens the fault at the answer's word `after` falls
    (`fail_after`, `hang_after`); None when there is none. A continuation starting at
    or past `after` does not meet it again: it happened to the answer it continues."""
    if after is None:
        return None
    if resume is None:
        return after
    return after - resume.start if after > resume.start else None


async def take_words(words: Iterator[str], count: int) -> list[str]:
    """The next `count` words, a slice at a time, letting other tasks run in between."""
    taken: list[str] = []
    while len(taken) < count:
        taken += itertools.islice(words, min(WORDS_PER_SLICE, count - len(taken)))
        await asyncio.sleep(0)
    return taken


def mock_tool_call(words: list[str]) -> ToolCall:
    arguments = json.dumps({"query": " ".join(words), "limit": len(words)})
    call_id = "call_" + hashlib.sha256(arguments.encode()).hexdigest()[:24]
    return ToolCall(index=0, id=call_id, name="search", arguments=arguments)


class MockPlan(msgspec.Struct):
    """What one mock generation will do, decided before any token is sent (its words
    are made as they are sent)."""

    options: MockOptions
    seed: bytes  # of its words (`words_seed`)
    count: int  # the tokens it sends (of a continuation: after the prefill)
    input_tokens: int
    finish_reason: str
    resume: Resume | None = None  # where it continues the answer; None: from the start

    def words(self) -> Iterator[str]:
        """Its words from the first it sends (the resume point's, if any)."""
        return mock_words(self.seed, self.resume.state if self.resume else None)

    def tokens(self) -> Iterator[str]:
        """What it sends, a token at a time: the first `count` of these."""
        resume = self.resume
        if resume is None:
            return spaced(self.words())
        tail = spaced(self.words(), resume.first)
        return itertools.chain([resume.head], tail) if resume.head else tail

    async def tool_call(self) -> ToolCall:
        """The tool call it makes instead of text (`tools`), all its words in one."""
        return mock_tool_call(await take_words(self.words(), self.count))


def plan_generation(request: GenerationRequest, cap: TokenCap = DEFAULT_CAP) -> MockPlan:
    options = parse_mock_model(request.model, cap)
    seed = words_seed(options.seed, request.messages)
    input_tokens = count_words(request.messages) + words_in(request.prefill)
    # A tool call is whole or not at all: a continuation (of stored text) makes it anew.
    resume = None
    if request.prefill and not options.tools:
        resume = resume_point(seed, request.prefill, options.tokens)
    count = options.tokens - resume.start if resume else options.tokens
    finish = "tool_calls" if options.tools else "stop"
    if request.max_tokens is not None and request.max_tokens < count:
        count, finish = request.max_tokens, "length"
    return MockPlan(options, seed, count, input_tokens, finish, resume)


async def pace_tokens(
    options: MockOptions, count: int, resume: Resume | None = None
) -> AsyncIterator[int]:
    """Yield 0 … count-1 on the mock's schedule, honouring fail_after and hang_after
    (words of the answer, which a continuation from `resume` may be past: `fault_index`).

    Token i is due at ttft + i / tps from the start, so a slow consumer does not make
    the mock drift. Shared by the in-process provider and the standalone mock upstream.
    """
    loop = asyncio.get_running_loop()
    start = loop.time() + options.ttft_ms / 1000
    fail_at = fault_index(options.fail_after, resume)
    hang_at = fault_index(options.hang_after, resume)
    await asyncio.sleep(options.ttft_ms / 1000)
    for index in range(count):
        if fail_at is not None and index >= fail_at:
            raise UpstreamError(
                "upstream_error", f"mock failure after {index} tokens", retryable=True
            )
        if hang_at is not None and index >= hang_at:
            await asyncio.Future()  # silent forever, until cancelled
        await _sleep_until(loop, start + index / options.tps if options.tps else None, index)
        yield index


async def _sleep_until(loop: asyncio.AbstractEventLoop, due: float | None, index: int) -> None:
    if due is not None:
        await asyncio.sleep(max(0.0, due - loop.time()))
    elif index % 64 == 0:
        await asyncio.sleep(0)  # as fast as possible, but let other tasks run


class MockProvider(Provider):
    def __init__(self, max_tokens: int = MOCK_MAX_TOKENS, *, continues: bool = True) -> None:
        """`continues`: whether it continues a prefill (an upstream's `continuation`)."""
        self._cap = TokenCap(max_tokens)
        self._continues = continues

    def check_model(self, model: str) -> None:
        parse_mock_model(model, self._cap)

    def supports_continuation(self, model: str) -> bool:
        return self._continues

    def tokens_in(self, text: str) -> int:
        return words_in(text)  # the mock's tokens are words

    async def stream(self, request: GenerationRequest) -> AsyncGenerator[ProviderItem, None]:
        if request.prefill and not self._continues:
            raise ValueError("this upstream does not continue answers (its continuation is none)")
        plan = await off_loop(
            functools.partial(plan_generation, request, self._cap),
            large=large_prompt(request.messages, request.prefill),
        )
        if plan.options.tools:
            async for _ in pace_tokens(plan.options, 1 if plan.count else 0):
                pass
            yield await plan.tool_call()
        else:
            tokens = plan.tokens()
            async for _ in pace_tokens(plan.options, plan.count, plan.resume):
                yield TextDelta(next(tokens))
        yield UsageReport(input_tokens=plan.input_tokens, output_tokens=plan.count)
        yield Finish(plan.finish_reason)
