"""The OpenAI Chat Completions wire format: chunks and bodies. Pure code, no I/O.

Builders return plain dicts shaped exactly as OpenAI sends them (and as the official
SDK's `ChatCompletionChunk` / `ChatCompletion` types parse them); `chunk_frame` turns one
into SSE bytes. Reasoning text goes in `delta.reasoning_content`, the field that
OpenAI-compatible servers (vLLM, DeepSeek, …) use, since OpenAI itself streams none.
Requests are `relay.wire.chat_request`'s.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import msgspec

from relay import sse
from relay.vocabulary import openai_finish_reason

DONE_FRAME = b"data: [DONE]\n\n"

# The `type` OpenAI puts in an error body for each HTTP status.
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}
# Error codes of relay's own failures (the rest are the upstream's): a bug, and a log
# that vanished from relay's store.
RELAYS_OWN_FAILURES = frozenset({"internal_error", "session_lost"})


class ToolCallParts(Protocol):
    """An object holding a complete tool call (relay's `ToolCall`, `ToolCallData`)."""

    @property
    def id(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def arguments(self) -> str: ...


# A complete tool call: an object, or a `tool_call` event's data ({index, id, name, arguments}).
AnyToolCall = ToolCallParts | Mapping[str, Any]


def new_completion_id() -> str:
    return "chatcmpl-" + secrets.token_urlsafe(18)


def error_type_for_status(status: int) -> str:
    return _ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")


# Streaming chunks.


def _chunk(
    completion_id: str,
    created: int,
    model: str,
    delta: dict[str, Any],
    finish_reason: str | None = None,
) -> dict[str, Any]:
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
    return {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [choice],
    }


def role_chunk(
    completion_id: str, created: int, model: str, *, content: str | None = ""
) -> dict[str, Any]:
    """The opening chunk; OpenAI sends `content: null` here when tool calls follow."""
    return _chunk(completion_id, created, model, {"role": "assistant", "content": content})


def text_chunk(
    completion_id: str, created: int, model: str, text: str, *, role: bool = False
) -> dict[str, Any]:
    delta: dict[str, Any] = {"role": "assistant"} if role else {}
    delta["content"] = text
    return _chunk(completion_id, created, model, delta)


def reasoning_chunk(
    completion_id: str, created: int, model: str, text: str, *, role: bool = False
) -> dict[str, Any]:
    delta: dict[str, Any] = {"role": "assistant"} if role else {}
    delta["reasoning_content"] = text
    return _chunk(completion_id, created, model, delta)


def tool_call_chunk(
    completion_id: str,
    created: int,
    model: str,
    index: int,
    *,
    call_id: str | None = None,
    name: str | None = None,
    arguments: str = "",
) -> dict[str, Any]:
    """One fragment of tool call `index`: the first names it (`call_id`, `name`)."""
    fragment: dict[str, Any] = {"index": index}
    function: dict[str, Any] = {}
    if call_id is not None:
        fragment.update(id=call_id, type="function")
    if name is not None:
        function["name"] = name
    function["arguments"] = arguments
    fragment["function"] = function
    return _chunk(completion_id, created, model, {"tool_calls": [fragment]})


def finish_chunk(
    completion_id: str, created: int, model: str, finish_reason: str
) -> dict[str, Any]:
    return _chunk(completion_id, created, model, {}, openai_finish_reason(finish_reason))


def usage_chunk(
    completion_id: str, created: int, model: str, prompt_tokens: int, completion_tokens: int
) -> dict[str, Any]:
    """The last chunk under `stream_options.include_usage`: no choices, only usage."""
    return {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [],
        "usage": usage(prompt_tokens, completion_tokens),
    }


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


# Whole bodies.


def completion(
    completion_id: str,
    created: int,
    model: str,
    *,
    text: str,
    reasoning: str | None = None,
    tool_calls: Sequence[AnyToolCall],
    finish_reason: str,
    prompt_tokens: int,
    completion_tokens: int,
) -> dict[str, Any]:
    """A non-streamed answer (`stream: false`)."""
    choice = {
        "index": 0,
        "message": _message(text, reasoning, tool_calls),
        "logprobs": None,
        "finish_reason": openai_finish_reason(finish_reason),
    }
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [choice],
        "usage": usage(prompt_tokens, completion_tokens),
    }


def _message(text: str, reasoning: str | None, tool_calls: Sequence[AnyToolCall]) -> dict[str, Any]:
    # OpenAI answers `content: null`, not "", when the model only called tools.
    message: dict[str, Any] = {
        "role": "assistant",
        "content": None if tool_calls and not text else text,
        "refusal": None,
    }
    if reasoning is not None:
        message["reasoning_content"] = reasoning
    if tool_calls:
        message["tool_calls"] = [_tool_call(call) for call in tool_calls]
    return message


def _tool_call(call: AnyToolCall) -> dict[str, Any]:
    if isinstance(call, Mapping):
        call_id, name, arguments = call["id"], call["name"], call["arguments"]
    else:
        call_id, name, arguments = call.id, call.name, call.arguments
    return {
        "id": str(call_id),
        "type": "function",
        "function": {"name": str(name), "arguments": str(arguments)},
    }


def error_body(
    message: str, type: str, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    """OpenAI's error shape, both as an HTTP body and as a mid-stream `data:` chunk."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def error_event_body(status: int, data: Mapping[str, object]) -> dict[str, Any]:
    """A failed session's `error` event `data` as OpenAI's error body, for an answer with
    HTTP `status` (which OpenAI's body does not repeat) or a stream; relay's code is `code`,
    and `type` tells relay's own failures (`server_error`) from the upstream's."""
    code = str(data.get("code"))
    kind = "server_error" if code in RELAYS_OWN_FAILURES else "upstream_error"
    return error_body(str(data.get("message", "")), kind, code)


def model_list(model_ids: Sequence[str], created: int, owned_by: str = "relay") -> dict[str, Any]:
    """The body of `GET /v1/models`."""
    models = [
        {"id": model_id, "object": "model", "created": created, "owned_by": owned_by}
        for model_id in model_ids
    ]
    return {"object": "list", "data": models}


# Framing.

_encode = msgspec.json.Encoder().encode


def chunk_frame(chunk: dict[str, Any], event_id: int | None = None) -> bytes:
    """One SSE frame: an optional `id:` line (for resumable streams), then `data: <json>`."""
    return sse.data_frame(_encode(chunk), event_id)
