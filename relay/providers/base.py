"""The `Provider` boundary: what the runner asks of any model upstream.

A provider turns a `GenerationRequest` into an async stream of `ProviderItem`s (its
output, and `StatusReport`s while it waits for it: queued, connecting, retrying) and
raises `UpstreamError` for every failure; HTTP and transport exceptions never cross this
boundary. Closing the stream (`aclose`) must close the upstream request, so that a
cancelled generation stops being generated and billed.
"""

from __future__ import annotations

import abc
import math
from collections.abc import AsyncGenerator

import msgspec

from relay.vocabulary import GenerationRequest, Message

# What a provider yields.


class TextDelta(msgspec.Struct):
    text: str


class ReasoningDelta(msgspec.Struct):
    text: str


class ToolCall(msgspec.Struct):
    """A complete tool call: `arguments` is the whole JSON string."""

    index: int
    id: str
    name: str
    arguments: str


class UsageReport(msgspec.Struct):
    """Token totals so far; the last one is final."""

    input_tokens: int
    output_tokens: int


class Finish(msgspec.Struct):
    """Why the model stopped, in relay's vocabulary: stop, length, tool_calls, …"""

    reason: str


# How the request is getting on, before its first output: the runner writes each as a
# `status` event. One at a change of state, never per token.


class Queued(msgspec.Struct):
    """The request waits for a free connection: the upstream's pool (`max_connections`)
    is full."""


class Connecting(msgspec.Struct):
    """A queued request got its connection and goes out now."""


class Retrying(msgspec.Struct):
    """An attempt failed before its first output and is retried after `delay_s`."""

    attempt: int  # which retry, from 1
    delay_s: float
    code: str  # the failure's error code: `upstream_unavailable`, `upstream_timeout`, …


StatusReport = Queued | Connecting | Retrying

ProviderItem = TextDelta | ReasoningDelta | ToolCall | UsageReport | Finish | StatusReport


class Provider(abc.ABC):
    """One configured upstream."""

    @abc.abstractmethod
    def check_model(self, model: str) -> None:
        """Raise ValueError, naming the problem, when `model` cannot be served."""

    @abc.abstractmethod
    def stream(self, request: GenerationRequest) -> AsyncGenerator[ProviderItem, None]:
        """Generate. Raises `UpstreamError`; `aclose()` ends the upstream request.

        With a `request.prefill` (only when `supports_continuation(request.model)`), the
        upstream is asked to continue that answer, and only the continuation is yielded."""

    def supports_continuation(self, model: str) -> bool:
        """Whether `stream` can continue an answer (`GenerationRequest.prefill`) for `model`.
        When it cannot, a prefill must not be sent: the caller restarts or fails instead."""
        return False

    def tokens_in(self, text: str) -> int:
        """About how many of the upstream's tokens `text` is (four characters each): what
        a continuation's `max_tokens` subtracts for the answer so far when the lost call
        had reported no usage."""
        return math.ceil(len(text) / 4)

    async def close(self) -> None:
        """Release connection pools."""
        return None


def continued_messages(messages: list[Message], prefill: str) -> list[Message]:
    """The conversation that asks an upstream to continue `prefill`: it ends with the
    answer so far as an assistant message. When the client's own request ended with one
    (its prefill, which the answer continues), the answer so far is that text and then
    the prefill, in the one message: two assistant turns would read as two answers."""
    last = messages[-1] if messages else None
    if last is None or last.role != "assistant" or last.tool_calls:
        return [*messages, Message(role="assistant", content=prefill)]
    if not isinstance(last.content, str):  # parts (images, cache marks): kept as they are
        return [*messages, Message(role="assistant", content=prefill)]
    return [*messages[:-1], Message(role="assistant", content=last.content + prefill)]
