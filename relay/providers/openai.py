"""`OpenAIProvider`: any OpenAI-compatible Chat Completions upstream, over HTTP.

One `SSEClient` (one connection pool) per upstream, reused by every generation. A
generation POSTs `{base_url}/chat/completions` with `stream` and usage included, decodes
each SSE message into a `Chunk` (only the fields relay reads; `[DONE]` ends the stream),
and `ChunkAssembler` turns the chunks into provider items: content → text, the
`reasoning_content`/`reasoning` extensions (vLLM, DeepSeek, OpenRouter) → reasoning, a
refusal → text, tool-call fragments → complete tool calls, usage, and the finish reason
(relay speaks OpenAI's vocabulary). The output limit goes under the name the upstream's
`max_tokens_field` says. Retries and deadlines are `retry.py`'s.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator
from typing import Any

import msgspec

from relay.config import UpstreamSettings
from relay.errors import UpstreamError
from relay.providers.base import (
    Finish,
    ProviderItem,
    ReasoningDelta,
    TextDelta,
    ToolCall,
    UsageReport,
)
from relay.providers.failures import incomplete_stream, stream_error_failure
from relay.providers.retry import RetryingProvider
from relay.providers.sse_client import SSEClient, read_json
from relay.vocabulary import GenerationRequest, Message

DONE = "[DONE]"


class ChatRequest(msgspec.Struct, omit_defaults=True, kw_only=True):
    """A streamed Chat Completions request; absent parameters are not sent."""

    model: str
    messages: list[Message]
    stream: bool
    stream_options: dict[str, bool]
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float | None = None
    stop: list[str] | None = None
    tools: list[dict[str, Any]] | None = None


# A chunk, as far as relay reads it. Every field may be absent or null: compatible
# servers send `choices: null`, omit indexes, and add fields of their own.


class FunctionFragment(msgspec.Struct):
    name: str | None = None
    arguments: str | None = None


class ToolCallFragment(msgspec.Struct):
    index: int | None = None
    id: str | None = None
    function: FunctionFragment | None = None


class Delta(msgspec.Struct):
    content: str | None = None
    refusal: str | None = None
    # Extensions, not in OpenAI's schema: anything but a string is not reasoning text.
    reasoning_content: Any = None
    reasoning: Any = None
    tool_calls: list[ToolCallFragment] | None = None


class Choice(msgspec.Struct):
    index: int | None = None
    delta: Delta | None = None
    finish_reason: str | None = None


class Usage(msgspec.Struct):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class StreamError(msgspec.Struct):
    message: str | None = None
    type: str | None = None


class Chunk(msgspec.Struct):
    choices: list[Choice] | None = None
    usage: Usage | None = None
    error: StreamError | str | None = None  # what a server sends when the stream breaks


CHUNK = msgspec.json.Decoder(Chunk)
ENCODER = msgspec.json.Encoder()


class OpenAIProvider(RetryingProvider):
    def __init__(
        self, upstream: UpstreamSettings, api_key: str | None, *, proxy: str | None = None
    ) -> None:
        super().__init__(upstream, api_key)
        self._max_tokens_field = upstream.max_tokens_field
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = SSEClient(
            upstream, chat_completions_url(upstream.base_url), headers, proxy=proxy
        )

    async def close(self) -> None:
        await self._client.close()

    async def _attempt(self, request: GenerationRequest) -> AsyncGenerator[ProviderItem, None]:
        assembler = ChunkAssembler()
        ended = False  # after [DONE] the body is read to its end (the connection is reused)
        body = ENCODER.encode(self._chat_request(request))
        async with contextlib.aclosing(self._client.messages(body)) as batches:
            async for messages in batches:
                for message in messages:
                    ended = ended or message.data == DONE
                    if not ended:
                        for item in assembler.feed(read_json(CHUNK, message.data)):
                            yield item
        for item in assembler.finish():
            yield item

    def _chat_request(self, request: GenerationRequest) -> ChatRequest:
        return ChatRequest(
            model=request.model,
            messages=request.messages,
            stream=True,
            stream_options={"include_usage": True},
            max_tokens=self._output_limit("max_tokens", request),
            max_completion_tokens=self._output_limit("max_completion_tokens", request),
            temperature=request.temperature,
            stop=request.stop,
            tools=request.tools,
        )

    def _output_limit(self, field: str, request: GenerationRequest) -> int | None:
        """The limit under the one name this upstream takes (`max_tokens_field`)."""
        return request.max_tokens if field == self._max_tokens_field else None


def chat_completions_url(base_url: str | None) -> str:
    """As the SDK joins them: `https://api.openai.com/v1` → `…/v1/chat/completions`."""
    return f"{(base_url or '').rstrip('/')}/chat/completions"


class PartialToolCall(msgspec.Struct):
    index: int
    id: str = ""
    name: str = ""
    arguments: list[str] = msgspec.field(default_factory=list)

    def add(self, fragment: ToolCallFragment) -> None:
        self.id = self.id or fragment.id or ""
        function = fragment.function
        if function is not None:
            self.name = self.name or function.name or ""
            self.arguments.append(function.arguments or "")

    def complete(self) -> ToolCall:
        call_id = self.id or f"call_{self.index}"
        return ToolCall(self.index, call_id, self.name, "".join(self.arguments) or "{}")


class ChunkAssembler:
    """Chat Completions chunks → provider items. Pure: no I/O.

    Tolerates what compatible servers send: `choices` null or empty (the usage chunk),
    unknown fields, missing indexes. Tool calls go out whole when the finish reason
    arrives; `Finish` goes out last, once the stream has ended, after the usage. An
    `error` in a chunk raises it.
    """

    def __init__(self) -> None:
        self._calls: dict[int, PartialToolCall] = {}
        self._finish_reason: str | None = None

    def feed(self, chunk: Chunk) -> list[ProviderItem]:
        if chunk.error:
            raise _stream_error(chunk.error)
        items: list[ProviderItem] = []
        for choice in chunk.choices or []:
            if not choice.index:  # relay asks for one choice; its index is 0 (or absent)
                items += self._delta(choice.delta)
                if choice.finish_reason:
                    self._finish_reason = choice.finish_reason
                    items += self._complete_calls()
        usage = chunk.usage
        if usage is not None:
            items.append(UsageReport(usage.prompt_tokens or 0, usage.completion_tokens or 0))
        return items

    def finish(self) -> list[ProviderItem]:
        """The items the end of the stream releases; raises when it ended unfinished."""
        if self._finish_reason is None:
            raise incomplete_stream()
        return [*self._complete_calls(), Finish(self._finish_reason)]

    def _delta(self, delta: Delta | None) -> list[ProviderItem]:
        if delta is None:
            return []
        items: list[ProviderItem] = []
        reasoning = _reasoning(delta)
        if reasoning:
            items.append(ReasoningDelta(reasoning))
        if delta.content:
            items.append(TextDelta(delta.content))
        if delta.refusal:  # the model's answer when it declines: show it, don't drop it
            items.append(TextDelta(delta.refusal))
        for fragment in delta.tool_calls or []:
            index = fragment.index or 0
            self._calls.setdefault(index, PartialToolCall(index)).add(fragment)
        return items

    def _complete_calls(self) -> list[ProviderItem]:
        calls = [call.complete() for _, call in sorted(self._calls.items())]
        self._calls.clear()
        return list[ProviderItem](calls)


def _reasoning(delta: Delta) -> str:
    for value in (delta.reasoning_content, delta.reasoning):
        if isinstance(value, str) and value:
            return value
    return ""


def _stream_error(error: StreamError | str) -> UpstreamError:
    if isinstance(error, str):
        return stream_error_failure(None, error).error
    return stream_error_failure(error.type, error.message).error
