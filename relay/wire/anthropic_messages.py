"""The Anthropic Messages wire format: stream events and bodies. Pure code, no I/O.

Builders return plain dicts shaped exactly as Anthropic sends them (and as the official
SDK's `RawMessageStreamEvent` / `Message` types parse them); `event_frame` turns one into
SSE bytes with its `event:` line. A stream is `message_start`, then per content block
`content_block_start`, deltas, `content_block_stop`, then `message_delta` (stop reason
and cumulative usage) and `message_stop`; `ping` and `error` may come at any point.
Requests are `relay.wire.messages_request`'s.
"""

from __future__ import annotations

import secrets
from typing import Any

import msgspec

from relay import sse
from relay.wire.partial_json import parse_partial

# The error `type` Anthropic sends for each HTTP status.
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def new_message_id() -> str:
    return "msg_" + secrets.token_urlsafe(18)


def error_type_for_status(status: int) -> str:
    return _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")


# Stream events.


def message_start(message_id: str, model: str, input_tokens: int) -> dict[str, Any]:
    """The opening event: an empty assistant message with the input usage."""
    message = _message_shell(message_id, model, [], None, input_tokens, 0)
    return {"type": "message_start", "message": message}


def content_block_start_text(index: int) -> dict[str, Any]:
    return _block_start(index, {"type": "text", "text": ""})


def content_block_start_thinking(index: int) -> dict[str, Any]:
    return _block_start(index, {"type": "thinking", "thinking": "", "signature": ""})


def content_block_start_tool_use(index: int, tool_id: str, name: str) -> dict[str, Any]:
    return _block_start(index, {"type": "tool_use", "id": tool_id, "name": name, "input": {}})


def _block_start(index: int, block: dict[str, Any]) -> dict[str, Any]:
    return {"type": "content_block_start", "index": index, "content_block": block}


def text_delta(index: int, text: str) -> dict[str, Any]:
    return _block_delta(index, {"type": "text_delta", "text": text})


def thinking_delta(index: int, thinking: str) -> dict[str, Any]:
    return _block_delta(index, {"type": "thinking_delta", "thinking": thinking})


def signature_delta(index: int, signature: str) -> dict[str, Any]:
    """Closes a thinking block's content, just before its `content_block_stop`."""
    return _block_delta(index, {"type": "signature_delta", "signature": signature})


def input_json_delta(index: int, partial_json: str) -> dict[str, Any]:
    return _block_delta(index, {"type": "input_json_delta", "partial_json": partial_json})


def _block_delta(index: int, delta: dict[str, Any]) -> dict[str, Any]:
    return {"type": "content_block_delta", "index": index, "delta": delta}


def content_block_stop(index: int) -> dict[str, Any]:
    return {"type": "content_block_stop", "index": index}


def message_delta(
    stop_reason: str,
    output_tokens: int,
    input_tokens: int | None = None,
    *,
    stop_sequence: str | None = None,
) -> dict[str, Any]:
    """The stop reason (Anthropic's vocabulary) and usage; the counts are cumulative."""
    usage: dict[str, int] = {"output_tokens": output_tokens}
    if input_tokens is not None:
        usage["input_tokens"] = input_tokens
    delta = {"stop_reason": stop_reason, "stop_sequence": stop_sequence}
    return {"type": "message_delta", "delta": delta, "usage": usage}


def message_stop() -> dict[str, Any]:
    return {"type": "message_stop"}


def ping() -> dict[str, Any]:
    return {"type": "ping"}


def error_event(error_type: str, message: str) -> dict[str, Any]:
    """A mid-stream failure; the stream ends after it."""
    return error_body(error_type, message)


# Whole bodies.


def text_block(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def thinking_block(thinking: str, signature: str) -> dict[str, Any]:
    return {"type": "thinking", "thinking": thinking, "signature": signature}


def tool_use_block(tool_id: str, name: str, input: dict[str, Any]) -> dict[str, Any]:
    return {"type": "tool_use", "id": tool_id, "name": name, "input": input}


def tool_input(arguments: str) -> dict[str, Any]:
    """A tool call's JSON arguments as a `tool_use` block's `input`.

    Arguments cut by `max_tokens` are not JSON. Anthropic itself, stopped by `max_tokens`
    inside a tool_use block, still returns the block, with the input parsed as far as it
    goes (a cut string keeps what it has, a key without its value is left out); relay
    does the same, and answers `{}` for what is not an object, as `input` must be one.
    """
    parsed = parse_partial(arguments)
    return parsed if isinstance(parsed, dict) else {}


def message(
    message_id: str,
    model: str,
    content: list[dict[str, Any]],
    stop_reason: str,
    input_tokens: int,
    output_tokens: int,
) -> dict[str, Any]:
    """A non-streamed answer; `stop_reason` is in Anthropic's vocabulary."""
    return _message_shell(message_id, model, content, stop_reason, input_tokens, output_tokens)


def _message_shell(
    message_id: str,
    model: str,
    content: list[dict[str, Any]],
    stop_reason: str | None,
    input_tokens: int,
    output_tokens: int,
) -> dict[str, Any]:
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
    }


def error_body(error_type: str, message: str) -> dict[str, Any]:
    """Anthropic's error shape, both as an HTTP body and as the `error` stream event."""
    return {"type": "error", "error": {"type": error_type, "message": message}}


# Framing.

_encode = msgspec.json.Encoder().encode


def event_frame(event: dict[str, Any], event_id: int | None = None) -> bytes:
    """One SSE frame: optional `id:`, `event: <type>` (Anthropic names every event), data."""
    return sse.data_frame(_encode(event), event_id, str(event["type"]))
