"""`OpenAIProvider`: any OpenAI-compatible Chat Completions upstream, via the official SDK.

One `AsyncOpenAI` client (one connection pool) per upstream, reused by every
generation. A generation streams `chat.completions.create(stream=True)` with usage
included, and `ChunkAssembler` turns the chunks into provider items: content → text,
the `reasoning_content`/`reasoning` extensions (vLLM, DeepSeek, OpenRouter) →
reasoning, a refusal → text, tool-call fragments → complete tool calls, usage, and the
finish reason (relay speaks OpenAI's vocabulary). The output limit goes under the name the
upstream's `max_tokens_field` says. Retries and deadlines are `retry.py`'s.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any, TypeVar, cast

import msgspec
import openai
from openai.types.chat import (
    ChatCompletionChunk,
    ChatCompletionMessageParam,
    ChatCompletionToolUnionParam,
)
from openai.types.chat.chat_completion_chunk import ChoiceDelta, ChoiceDeltaToolCall

from relay.config import UpstreamSettings
from relay.providers.base import (
    Finish,
    GenerationRequest,
    Message,
    ProviderItem,
    ReasoningDelta,
    TextDelta,
    ToolCall,
    UsageReport,
)
from relay.providers.failures import (
    Failure,
    connection_failure,
    incomplete_stream,
    status_failure,
    stream_error_failure,
    timeout_failure,
    transport_failure,
)
from relay.providers.retry import RetryingProvider, http_client, http_timeout

T = TypeVar("T")

# Sent when the upstream needs no key (a local vLLM, Ollama): the SDK insists on one, and
# must never fall back to reading OPENAI_API_KEY from the environment itself.
NO_API_KEY = "none"

REASONING_FIELDS = ("reasoning_content", "reasoning")


class OpenAIProvider(RetryingProvider):
    def __init__(self, upstream: UpstreamSettings, api_key: str | None) -> None:
        super().__init__(upstream, api_key)
        self._max_tokens_field = upstream.max_tokens_field
        self._client = openai.AsyncOpenAI(
            base_url=upstream.base_url,
            api_key=api_key or NO_API_KEY,
            max_retries=0,  # retry.py retries, and only before the first item
            timeout=http_timeout(upstream),
            http_client=http_client(upstream),
        )

    def _translate_error(self, exc: Exception) -> Failure | None:
        return translate_error(exc)

    async def close(self) -> None:
        await self._client.close()

    async def _attempt(self, request: GenerationRequest) -> AsyncGenerator[ProviderItem, None]:
        chunks = await self._client.chat.completions.create(
            model=request.model,
            messages=chat_messages(request.messages),
            stream=True,
            stream_options={"include_usage": True},
            max_tokens=self._output_limit("max_tokens", request),
            max_completion_tokens=self._output_limit("max_completion_tokens", request),
            temperature=_given(request.temperature),
            stop=_given(request.stop),
            tools=_given(cast("list[ChatCompletionToolUnionParam] | None", request.tools)),
        )
        async with chunks:  # closes the HTTP response, also on cancel: the upstream stops
            assembler = ChunkAssembler()
            async for chunk in chunks:
                for item in assembler.feed(chunk):
                    yield item
            for item in assembler.finish():
                yield item

    def _output_limit(self, field: str, request: GenerationRequest) -> int | openai.Omit:
        """The limit under the one name this upstream takes (`max_tokens_field`)."""
        return _given(request.max_tokens if field == self._max_tokens_field else None)


def chat_messages(messages: list[Message]) -> list[ChatCompletionMessageParam]:
    """relay's messages as Chat Completions messages: as given, absent fields omitted."""
    return cast("list[ChatCompletionMessageParam]", [msgspec.to_builtins(m) for m in messages])


def _given(value: T | None) -> T | openai.Omit:
    return openai.omit if value is None else value


def translate_error(exc: Exception) -> Failure | None:
    """The SDK's exceptions (and the transport's, which escape it mid-stream)."""
    if isinstance(exc, openai.APIStatusError):
        return status_failure(exc.status_code, exc.body, exc.response.headers)
    if isinstance(exc, openai.APITimeoutError):
        return timeout_failure()
    if isinstance(exc, openai.APIConnectionError):
        return connection_failure(exc.__cause__)
    if isinstance(exc, openai.APIError):  # an `{"error": …}` object inside the stream
        return stream_error_failure(exc.type, exc.message)
    return transport_failure(exc)


class PartialToolCall(msgspec.Struct):
    index: int
    id: str = ""
    name: str = ""
    arguments: list[str] = msgspec.field(default_factory=list)

    def add(self, fragment: ChoiceDeltaToolCall) -> None:
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
    arrives; `Finish` goes out last, once the stream has ended, after the usage.
    """

    def __init__(self) -> None:
        self._calls: dict[int, PartialToolCall] = {}
        self._finish_reason: str | None = None

    def feed(self, chunk: ChatCompletionChunk) -> list[ProviderItem]:
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

    def _delta(self, delta: ChoiceDelta | None) -> list[ProviderItem]:
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


def _reasoning(delta: ChoiceDelta) -> str:
    extra: dict[str, Any] = delta.model_extra or {}
    for field in REASONING_FIELDS:
        value = extra.get(field)
        if isinstance(value, str) and value:
            return value
    return ""
