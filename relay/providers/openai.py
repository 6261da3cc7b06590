"""The OpenAI Chat Completions format, for any OpenAI-compatible upstream.

`ChatCompletionsFormat` is what `UpstreamProvider` needs of it: a streamed request to
`{base_url}/chat/completions` with usage included (the output limit under the name the
upstream's `max_tokens_field` says; `tool_choice` and `parallel_tool_calls` as Chat takes
them; passthrough fields only from an OpenAI-format request), each SSE message decoded
into a `Chunk` (only the fields relay reads; `[DONE]` ends the stream), and
`ChunkAssembler`, which turns the chunks into provider items: content → text, the
`reasoning_content`/`reasoning` extensions (vLLM, DeepSeek, OpenRouter) → reasoning, a
refusal → text, tool-call fragments → complete tool calls, usage, and the finish reason
(relay speaks OpenAI's vocabulary). All of it is pure code; `OpenAIProvider` is the
format bound to `UpstreamProvider`, which does the I/O.
"""

from __future__ import annotations

from typing import Any

import msgspec

from relay.config import ContinuationStyle, UpstreamSettings
from relay.errors import UpstreamError
from relay.providers.base import (
    Finish,
    ProviderItem,
    ReasoningDelta,
    TextDelta,
    ToolCall,
    UsageReport,
    continued_messages,
)
from relay.providers.failures import incomplete_stream, stream_error_failure
from relay.providers.passthrough import encode_body
from relay.providers.upstream import UpstreamProvider
from relay.vocabulary import GenerationRequest, Message, ToolChoice

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
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None


class ContinuationChatRequest(ChatRequest, omit_defaults=True, kw_only=True):
    """A request to continue its final (assistant) message, in vLLM's words, which SGLang
    and llama.cpp's server also take: without them vLLM would start a new message. No
    defaults, so that both are always sent (vLLM's `add_generation_prompt` is true)."""

    continue_final_message: bool
    add_generation_prompt: bool
    # Never sent: declared so that a client's `echo` (vLLM: repeat the final message
    # first) is not passed on, which would repeat the answer so far.
    echo: bool | None = None


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


class ChatCompletionsFormat:
    """The Chat Completions API as `UpstreamProvider` speaks it."""

    endpoint = "/chat/completions"

    def __init__(
        self, max_tokens_field: str, continuation: ContinuationStyle = "continue_final_message"
    ) -> None:
        self._max_tokens_field = max_tokens_field
        self._continuation = continuation

    def headers(self, api_key: str | None) -> dict[str, str]:
        return {"authorization": f"Bearer {api_key}"} if api_key else {}

    def encode_request(self, request: GenerationRequest) -> bytes:
        return encode_body(self._body(request), request.passthrough, "openai")

    def _body(self, request: GenerationRequest) -> ChatRequest:
        """The request; with a prefill, the answer so far as the final assistant message,
        flagged as one to continue when this server takes vLLM's flags. `encode_body`
        then drops a client's passthrough fields of those names: relay's values win."""
        chat = self._chat_request(request)
        if not request.prefill:
            return chat
        messages = continued_messages(request.messages, request.prefill)
        if self._continuation != "continue_final_message":
            return msgspec.structs.replace(chat, messages=messages)
        fields = msgspec.structs.asdict(chat) | {"messages": messages}
        return ContinuationChatRequest(
            **fields, continue_final_message=True, add_generation_prompt=False
        )

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
            tool_choice=request.tool_choice,
            parallel_tool_calls=request.parallel_tool_calls,
        )

    def _output_limit(self, field: str, request: GenerationRequest) -> int | None:
        """The limit under the one name this upstream takes (`max_tokens_field`)."""
        return request.max_tokens if field == self._max_tokens_field else None

    def decode_event(self, data: str) -> Chunk | None:
        return None if data == DONE else CHUNK.decode(data)

    def new_assembler(self, request: GenerationRequest) -> ChunkAssembler:
        return ChunkAssembler()


class OpenAIProvider(UpstreamProvider[Chunk]):
    """An OpenAI-compatible upstream: the Chat Completions format over HTTP."""

    def __init__(
        self, upstream: UpstreamSettings, api_key: str | None, *, proxy: str | None = None
    ) -> None:
        chat = ChatCompletionsFormat(upstream.max_tokens_field, upstream.continuation_style)
        super().__init__(chat, upstream, api_key, proxy=proxy)


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
        text = _only_text(chunk)
        if text:  # the usual chunk, once per token: one piece of text and nothing else
            return [TextDelta(text)]
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


def _only_text(chunk: Chunk) -> str | None:
    """The content of a chunk that holds nothing else (what `feed` would make of it is
    one `TextDelta`), else None."""
    choices = chunk.choices
    if chunk.usage is not None or choices is None or len(choices) != 1:
        return None
    choice = choices[0]
    delta = choice.delta
    if choice.index or choice.finish_reason or delta is None:
        return None
    if delta.tool_calls or delta.refusal:
        return None
    if delta.reasoning_content is not None or delta.reasoning is not None:
        return None
    return delta.content


def _reasoning(delta: Delta) -> str:
    for value in (delta.reasoning_content, delta.reasoning):
        if isinstance(value, str) and value:
            return value
    return ""


def _stream_error(error: StreamError | str) -> UpstreamError:
    if isinstance(error, str):
        return stream_error_failure(None, error).error
    return stream_error_failure(error.type, error.message).error
