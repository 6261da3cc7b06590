"""`AnthropicProvider`: the Anthropic Messages API, via the official SDK's raw event stream.

One `AsyncAnthropic` client (one connection pool) per upstream. Requests are converted
from relay's (OpenAI-shaped) messages: `system`/`developer` messages become the
`system` parameter, assistant `tool_calls` become `tool_use` blocks, `tool` messages
become `tool_result` blocks, and consecutive messages of one role are merged; blocks
already in Anthropic's shape pass through. `EventAssembler` turns the events into
provider items, with stop reasons in relay's (OpenAI's) vocabulary. Retries and
deadlines are `retry.py`'s.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Iterable
from typing import Any, cast

import anthropic
import msgspec
from anthropic.types import MessageParam, RawMessageStreamEvent, TextBlockParam, ToolUnionParam

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

DEFAULT_MAX_TOKENS = 4096  # Anthropic requires max_tokens; relay's requests may omit it

# Sent when the upstream needs no key (a local gateway): the SDK must never fall back to
# ANTHROPIC_API_KEY or a credentials profile found on this machine.
NO_API_KEY = "none"

SYSTEM_ROLES = ("system", "developer")

STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

Block = dict[str, Any]


class AnthropicProvider(RetryingProvider):
    def __init__(self, upstream: UpstreamSettings, api_key: str | None) -> None:
        super().__init__(upstream, api_key)
        self._client = anthropic.AsyncAnthropic(
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
        system = system_prompt(request.messages)
        events = await self._client.messages.create(
            model=request.model,
            messages=anthropic_messages(request.messages),
            max_tokens=request.max_tokens or DEFAULT_MAX_TOKENS,
            stream=True,
            system=system if system is not None else anthropic.omit,
            stop_sequences=request.stop if request.stop else anthropic.omit,
            tools=anthropic_tools(request.tools) if request.tools else anthropic.omit,
            # This SDK's signature has no `temperature`; the API still takes it.
            extra_body=_extra_body(request),
        )
        async with events:  # closes the HTTP response, also on cancel: the upstream stops
            assembler = EventAssembler()
            async for event in events:
                for item in assembler.feed(event):
                    yield item
            for item in assembler.finish():
                yield item


def translate_error(exc: Exception) -> Failure | None:
    """The SDK's exceptions (and the transport's, which escape it mid-stream)."""
    if isinstance(exc, anthropic.APIStatusError):
        if exc.status_code < 400:  # an `error` event inside the 200 stream
            return stream_error_failure(exc.type, exc.api_message)
        return status_failure(exc.status_code, exc.body, exc.response.headers)
    if isinstance(exc, anthropic.APITimeoutError):
        return timeout_failure()
    if isinstance(exc, anthropic.APIConnectionError):
        return connection_failure(exc.__cause__)
    return transport_failure(exc)


def _extra_body(request: GenerationRequest) -> dict[str, Any] | None:
    return None if request.temperature is None else {"temperature": request.temperature}


# --- relay's messages → Anthropic's -------------------------------------------------------


def system_prompt(messages: Iterable[Message]) -> str | list[TextBlockParam] | None:
    """The `system` parameter from every system and developer message, in order: one
    string, or the text blocks themselves when they carry more (e.g. `cache_control`)."""
    blocks = [b for m in messages if m.role in SYSTEM_ROLES for b in _blocks(m.content)]
    if not blocks:
        return None
    if all(block.keys() == {"type", "text"} for block in blocks):
        return "\n\n".join(str(block["text"]) for block in blocks)
    return cast("list[TextBlockParam]", blocks)


def anthropic_messages(messages: Iterable[Message]) -> list[MessageParam]:
    merged: list[dict[str, Any]] = []
    for message in messages:
        if message.role in SYSTEM_ROLES:
            continue
        role, blocks = _converted(message)
        if merged and merged[-1]["role"] == role:
            merged[-1]["content"] += blocks  # Anthropic wants user and assistant to alternate
        else:
            merged.append({"role": role, "content": blocks})
    return cast("list[MessageParam]", merged)


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


def anthropic_tools(tools: list[dict[str, Any]]) -> list[ToolUnionParam]:
    return cast("list[ToolUnionParam]", [_tool(tool) for tool in tools])


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

    Unknown event, block and delta types are ignored (the API adds them over time);
    `ping` never reaches here (the SDK drops it), nor `error` (the SDK raises it).
    """

    def __init__(self) -> None:
        self._tool_uses: dict[int, PartialToolUse] = {}  # by content block index
        self._tool_count = 0
        self._input_tokens = 0
        self._stop_reason: str | None = None

    def feed(self, event: RawMessageStreamEvent) -> list[ProviderItem]:
        kind = str(event.type)
        # Read loosely: the SDK builds events without validation, so fields may be None,
        # and an unknown type arrives dressed as some other event class.
        data = cast(Any, event)
        if kind == "message_start":
            self._input_tokens = _input_tokens(data.message.usage if data.message else None)
        elif kind == "content_block_start":
            return self._block_start(data.index, data.content_block)
        elif kind == "content_block_delta":
            return self._block_delta(data.index, data.delta)
        elif kind == "content_block_stop":
            return self._block_stop(data.index)
        elif kind == "message_delta":
            return self._message_delta(data.delta, data.usage)
        return []

    def finish(self) -> list[ProviderItem]:
        """The items the end of the stream releases; raises when it ended unfinished."""
        if self._stop_reason is None:
            raise incomplete_stream()
        return [Finish(STOP_REASONS.get(self._stop_reason, self._stop_reason))]

    def _block_start(self, index: int, block: Any) -> list[ProviderItem]:
        kind = getattr(block, "type", None)
        if kind == "tool_use":
            self._tool_uses[index] = PartialToolUse(
                self._tool_count, block.id or "", block.name or "", block.input
            )
            self._tool_count += 1
        elif kind == "text" and block.text:
            return [TextDelta(block.text)]
        elif kind == "thinking" and block.thinking:
            return [ReasoningDelta(block.thinking)]
        return []

    def _block_delta(self, index: int, delta: Any) -> list[ProviderItem]:
        kind = getattr(delta, "type", None)
        if kind == "text_delta" and delta.text:
            return [TextDelta(delta.text)]
        if kind == "thinking_delta" and delta.thinking:
            return [ReasoningDelta(delta.thinking)]
        if kind == "input_json_delta" and index in self._tool_uses:
            self._tool_uses[index].fragments.append(delta.partial_json or "")
        return []

    def _block_stop(self, index: int) -> list[ProviderItem]:
        tool_use = self._tool_uses.pop(index, None)
        return [] if tool_use is None else [tool_use.complete()]

    def _message_delta(self, delta: Any, usage: Any) -> list[ProviderItem]:
        if delta is not None and delta.stop_reason:
            self._stop_reason = str(delta.stop_reason)
        if usage is None:
            return []
        if usage.input_tokens is not None:  # newer servers repeat the (final) input count
            self._input_tokens = _input_tokens(usage)
        return [UsageReport(self._input_tokens, usage.output_tokens or 0)]


def _input_tokens(usage: Any) -> int:
    """Anthropic counts cached input apart; relay, like OpenAI, reports all input."""
    if usage is None:
        return 0
    return sum(
        getattr(usage, field, None) or 0
        for field in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    )
