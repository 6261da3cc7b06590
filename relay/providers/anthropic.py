"""The Anthropic Messages format.

`MessagesFormat` is what `UpstreamProvider` needs of it: a streamed request to
`{base_url}/v1/messages`, each SSE message decoded into an `Event` (only the fields relay
reads), and `EventAssembler`, which turns the events into provider items, with stop
reasons in relay's (OpenAI's) vocabulary. Requests are converted from relay's
(OpenAI-shaped) messages: `system`/`developer` messages become the `system` parameter,
assistant `tool_calls` become `tool_use` blocks, `tool` messages become `tool_result`
blocks, and consecutive messages of one role are merged; blocks already in Anthropic's
shape pass through. Chat's `tool_choice` and `parallel_tool_calls` become Anthropic's
`tool_choice`; passthrough fields are sent only from an Anthropic-format request. A
prefill (the answer so far) goes as the final assistant message, which Anthropic
continues (models before Claude 4.6, without extended thinking). All of it is pure
code; `AnthropicProvider` is the format bound to `UpstreamProvider`, which does the I/O.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, Literal

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
    continued_messages,
)
from relay.providers.failures import incomplete_stream, stream_error_failure
from relay.providers.passthrough import encode_body
from relay.providers.upstream import UpstreamProvider
from relay.vocabulary import GenerationRequest, Message, NamedToolChoice, finish_from_anthropic

API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096  # Anthropic requires max_tokens; relay's requests may omit it

SYSTEM_ROLES = ("system", "developer")

Block = dict[str, Any]


class ToolChoiceParam(msgspec.Struct, omit_defaults=True, kw_only=True):
    """Anthropic's `tool_choice`: `auto`, `any` (some tool), `tool` (the one named), `none`."""

    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


class MessagesRequest(msgspec.Struct, omit_defaults=True, kw_only=True):
    """A streamed Messages API request; absent parameters are not sent."""

    model: str
    messages: list[dict[str, Any]]
    max_tokens: int
    stream: bool
    system: str | list[Block] | None = None
    stop_sequences: list[str] | None = None
    tools: list[dict[str, Any]] | None = None
    temperature: float | None = None
    tool_choice: ToolChoiceParam | None = None


def messages_request(request: GenerationRequest) -> MessagesRequest:
    return MessagesRequest(
        model=request.model,
        messages=anthropic_messages(prefilled(request.messages, request.prefill)),
        max_tokens=request.max_tokens or DEFAULT_MAX_TOKENS,
        stream=True,
        system=system_prompt(request.messages),
        stop_sequences=request.stop or None,
        tools=anthropic_tools(request.tools) if request.tools else None,
        temperature=request.temperature,
        tool_choice=anthropic_tool_choice(request) if request.tools else None,
    )


def anthropic_tool_choice(request: GenerationRequest) -> ToolChoiceParam | None:
    """Chat's `tool_choice` and `parallel_tool_calls` as Anthropic's `tool_choice`; None
    when both are unset. Turning parallel calls off needs a choice: `auto` by default."""
    single = True if request.parallel_tool_calls is False else None
    choice = request.tool_choice
    if isinstance(choice, NamedToolChoice):
        name = choice.function.name
        return ToolChoiceParam(type="tool", name=name, disable_parallel_tool_use=single)
    if choice == "none":  # Anthropic's `none` takes no parallel setting: no tool is called
        return ToolChoiceParam(type="none")
    if choice is None and single is None:
        return None
    kind: Literal["auto", "any"] = "any" if choice == "required" else "auto"
    return ToolChoiceParam(type=kind, disable_parallel_tool_use=single)


# --- relay's messages → Anthropic's -------------------------------------------------------


def prefilled(messages: list[Message], prefill: str) -> list[Message]:
    """The messages with the answer so far as the final assistant message that Anthropic
    continues, without its trailing whitespace, which the API refuses (`EventAssembler`
    drops it from the continuation's start instead); none when nothing else is left."""
    sent = prefill.rstrip()
    return continued_messages(messages, sent) if sent else messages


def unsent_whitespace(prefill: str) -> str:
    """What `prefilled` leaves out: the prefill's trailing whitespace."""
    return prefill[len(prefill.rstrip()) :]


def system_prompt(messages: Iterable[Message]) -> str | list[Block] | None:
    """The `system` parameter from every system and developer message, in order: one
    string, or the text blocks themselves when they carry more (e.g. `cache_control`)."""
    blocks = [b for m in messages if m.role in SYSTEM_ROLES for b in _blocks(m.content)]
    if not blocks:
        return None
    if all(block.keys() == {"type", "text"} for block in blocks):
        return "\n\n".join(str(block["text"]) for block in blocks)
    return blocks


def anthropic_messages(messages: Iterable[Message]) -> list[dict[str, Any]]:
    merged: list[dict[str, Any]] = []
    for message in messages:
        if message.role in SYSTEM_ROLES:
            continue
        role, blocks = _converted(message)
        if merged and merged[-1]["role"] == role:
            merged[-1]["content"] += blocks  # Anthropic wants user and assistant to alternate
        else:
            merged.append({"role": role, "content": blocks})
    return merged


def _converted(message: Message) -> tuple[str, list[Block]]:
    if message.role == "tool":
        return "user", [_tool_result(message)]
    calls = [_tool_use(call) for call in message.tool_calls or []]
    return message.role, _blocks(message.content) + calls


def _blocks(content: str | list[dict[str, Any]] | None) -> list[Block]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    return [_block(part) for part in content or []]


def _block(part: dict[str, Any]) -> Block:
    """An OpenAI content part as an Anthropic block; anything else passes through."""
    if part.get("type") != "image_url":
        return part
    image = part.get("image_url")
    url = str(image.get("url", "") if isinstance(image, dict) else image or "")
    header, comma, data = url.partition(",")
    if url.startswith("data:") and comma and header.endswith(";base64"):
        media_type = header.removeprefix("data:").removesuffix(";base64")
        return {
            "type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": data},
        }
    return {"type": "image", "source": {"type": "url", "url": url}}


def _tool_use(call: dict[str, Any]) -> Block:
    function = call.get("function") or {}
    return {
        "type": "tool_use",
        "id": call.get("id", ""),
        "name": function.get("name", ""),
        "input": _tool_input(function.get("arguments")),
    }


def _tool_input(arguments: object) -> dict[str, Any]:
    """Anthropic wants an object; OpenAI sends a JSON string (that may be anything)."""
    if isinstance(arguments, dict):
        return arguments
    if not arguments:
        return {}
    try:
        parsed = json.loads(str(arguments))
    except ValueError:
        return {"arguments": arguments}
    return parsed if isinstance(parsed, dict) else {"arguments": parsed}


def _tool_result(message: Message) -> Block:
    content = message.content if isinstance(message.content, str) else _blocks(message.content)
    return {"type": "tool_result", "tool_use_id": message.tool_call_id or "", "content": content}


def anthropic_tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [_tool(tool) for tool in tools]


def _tool(tool: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI function tool as an Anthropic tool; an Anthropic tool passes through."""
    function = tool.get("function")
    if tool.get("type") != "function" or not isinstance(function, dict):
        return tool
    converted = {
        "name": function.get("name", ""),
        "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
    }
    if function.get("description"):
        converted["description"] = function["description"]
    return converted


# --- Anthropic's events → provider items -----------------------------------------------

# An event, as far as relay reads it: one shape for every event type (unknown types and
# fields are ignored, as the API adds them over time), every field optional or nullable.


class Usage(msgspec.Struct):
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None


class MessageStart(msgspec.Struct):  # `message_start`'s message
    usage: Usage | None = None


class ContentBlock(msgspec.Struct):  # `content_block_start`'s block
    type: str | None = None
    text: str | None = None
    thinking: str | None = None
    id: str | None = None
    name: str | None = None
    input: Any = None


class EventDelta(msgspec.Struct):  # `content_block_delta`'s and `message_delta`'s delta
    type: str | None = None
    text: str | None = None
    thinking: str | None = None
    partial_json: str | None = None
    stop_reason: str | None = None


class ErrorDetail(msgspec.Struct):
    type: str | None = None
    message: str | None = None


class Event(msgspec.Struct):
    type: str | None = None
    index: int | None = None
    message: MessageStart | None = None
    content_block: ContentBlock | None = None
    delta: EventDelta | None = None
    usage: Usage | None = None
    error: ErrorDetail | None = None


EVENT = msgspec.json.Decoder(Event)


class PartialToolUse(msgspec.Struct):
    index: int  # among this answer's tool calls, not among its content blocks
    id: str
    name: str
    initial_input: Any = None  # what `content_block_start` carried
    fragments: list[str] = msgspec.field(default_factory=list)

    def complete(self) -> ToolCall:
        arguments = "".join(self.fragments)
        if not arguments and self.initial_input:
            arguments = json.dumps(self.initial_input)
        return ToolCall(self.index, self.id, self.name, arguments or "{}")


class EventAssembler:
    """Messages API stream events → provider items. Pure: no I/O.

    Unknown event, block and delta types are ignored (the API adds them over time), as is
    `ping`; an `error` event raises it. `stored_whitespace`: what a continued prefill
    ended with but was sent without (`unsent_whitespace`); the model writes it again at
    the start of its text, where it is dropped, since the prefill's owner has it already.
    """

    def __init__(self, stored_whitespace: str = "") -> None:
        self._tool_uses: dict[int, PartialToolUse] = {}  # by content block index
        self._tool_count = 0
        self._input_tokens = 0
        self._stop_reason: str | None = None
        self._stored_whitespace = stored_whitespace

    def feed(self, event: Event) -> list[ProviderItem]:
        kind = event.type
        index = event.index or 0
        if kind == "content_block_delta":  # the common case first
            return self._block_delta(index, event.delta)
        if kind == "message_start":
            self._input_tokens = _input_tokens(event.message.usage if event.message else None)
        elif kind == "content_block_start":
            return self._block_start(index, event.content_block)
        elif kind == "content_block_stop":
            return self._block_stop(index)
        elif kind == "message_delta":
            return self._message_delta(event.delta, event.usage)
        elif kind == "error":
            raise _stream_error(event.error)
        return []

    def finish(self) -> list[ProviderItem]:
        """The items the end of the stream releases; raises when it ended unfinished."""
        if self._stop_reason is None:
            raise incomplete_stream()
        return [Finish(finish_from_anthropic(self._stop_reason))]

    def _block_start(self, index: int, block: ContentBlock | None) -> list[ProviderItem]:
        if block is None:
            return []
        kind = block.type
        if kind == "tool_use":
            self._tool_uses[index] = PartialToolUse(
                self._tool_count, block.id or "", block.name or "", block.input
            )
            self._tool_count += 1
        elif kind == "text" and block.text:
            return self._text(block.text)
        elif kind == "thinking" and block.thinking:
            return [ReasoningDelta(block.thinking)]
        return []

    def _block_delta(self, index: int, delta: EventDelta | None) -> list[ProviderItem]:
        if delta is None:
            return []
        kind = delta.type
        if kind == "text_delta" and delta.text:
            return self._text(delta.text)
        if kind == "thinking_delta" and delta.thinking:
            return [ReasoningDelta(delta.thinking)]
        if kind == "input_json_delta" and index in self._tool_uses:
            self._tool_uses[index].fragments.append(delta.partial_json or "")
        return []

    def _text(self, text: str) -> list[ProviderItem]:
        stored = self._stored_whitespace
        if stored:
            same = _shared_prefix(text, stored)
            text = text[same:]
            self._stored_whitespace = "" if text else stored[same:]
        return [TextDelta(text)] if text else []

    def _block_stop(self, index: int) -> list[ProviderItem]:
        tool_use = self._tool_uses.pop(index, None)
        return [] if tool_use is None else [tool_use.complete()]

    def _message_delta(self, delta: EventDelta | None, usage: Usage | None) -> list[ProviderItem]:
        if delta is not None and delta.stop_reason:
            self._stop_reason = delta.stop_reason
        if usage is None:
            return []
        if usage.input_tokens is not None:  # newer servers repeat the (final) input count
            self._input_tokens = _input_tokens(usage)
        return [UsageReport(self._input_tokens, usage.output_tokens or 0)]


def _shared_prefix(text: str, other: str) -> int:
    """How many characters `text` and `other` start with alike."""
    same = 0
    for mine, theirs in zip(text, other, strict=False):
        if mine != theirs:
            break
        same += 1
    return same


def _input_tokens(usage: Usage | None) -> int:
    """Anthropic counts cached input apart; relay, like OpenAI, reports all input."""
    if usage is None:
        return 0
    return (
        (usage.input_tokens or 0)
        + (usage.cache_creation_input_tokens or 0)
        + (usage.cache_read_input_tokens or 0)
    )


def _stream_error(error: ErrorDetail | None) -> UpstreamError:
    if error is None:
        return stream_error_failure(None, None).error
    return stream_error_failure(error.type, error.message).error


# --- the format, and its provider ---------------------------------------------------


class MessagesFormat:
    """The Messages API as `UpstreamProvider` speaks it."""

    endpoint = "/v1/messages"

    def headers(self, api_key: str | None) -> dict[str, str]:
        headers = {"anthropic-version": API_VERSION}
        if api_key:
            headers["x-api-key"] = api_key
        return headers

    def encode_request(self, request: GenerationRequest) -> bytes:
        return encode_body(messages_request(request), request.passthrough, "anthropic")

    def decode_event(self, data: str) -> Event:
        return EVENT.decode(data)

    def new_assembler(self, request: GenerationRequest) -> EventAssembler:
        return EventAssembler(unsent_whitespace(request.prefill))


class AnthropicProvider(UpstreamProvider[Event]):
    """An Anthropic upstream: the Messages format over HTTP."""

    def __init__(
        self, upstream: UpstreamSettings, api_key: str | None, *, proxy: str | None = None
    ) -> None:
        super().__init__(MessagesFormat(), upstream, api_key, proxy=proxy)
